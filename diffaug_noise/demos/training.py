"""What the demos' training loops share: what D sees per ensemble member, restoring a checkpoint, the spread over seeds.

Every demo trains its (method, seed) runs as members of one batched ensemble (:mod:`.ensemble`), so
one seed's runs share data, latents and initial weights whatever the method.
"""
from __future__ import annotations

import statistics

import torch

from ..checkpoint import pairs


def member_inputs(x, noise, instance_sigma: float, generator, augment=None):
    """What D sees for one member of the demos' ensembles: ``(y, t)``.

    With a :class:`~diffaug_noise.DiffusionNoise`, ``noise(x)``; without, ``t = 0`` and ``x`` plus
    Gaussian instance noise of std ``instance_sigma`` (0: the clean ``x``, the plain GAN). An
    ``augment`` (:class:`~diffaug_noise.augment.DiffAugment`) comes first, drawn from ``generator`` too;
    flat ``[N, 64]`` digits are augmented as the 8x8 images they are.
    """
    if augment is not None:
        x = augment(x.view(-1, 1, 8, 8), generator=generator).view(x.shape) if x.ndim == 2 else augment(x, generator)
    if noise is not None:
        return noise(x, generator=generator)
    t = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    if instance_sigma:
        return x + instance_sigma * torch.randn(x.shape, device=x.device, generator=generator), t
    return x, t


def summarize(runs: list[dict], methods, metrics) -> dict:
    """Median, min and max over seeds of each of ``metrics``, per method."""
    out = {}
    for method in methods:
        rows = [r for r in runs if r["method"] == method]
        out[method] = {
            key: {"median": statistics.median(r[key] for r in rows), "min": min(r[key] for r in rows),
                  "max": max(r[key] for r in rows)}
            for key in metrics
        }
    return out


def restore_members(saved: dict, G, D, opt_g, opt_d, generators: list, stateful: list) -> None:
    """Load what every demo's checkpoint holds alike; call inside :func:`~diffaug_noise.checkpoint.restoring`.

    ``saved["G"]``, ``["D"]``, ``["opt_g"]``, ``["opt_d"]`` go to the networks and optimizers;
    ``saved["data_gens"] + saved["noise_gens"]`` to ``generators`` (in that order), and
    ``saved["noises"] + saved["controllers"]`` to ``stateful`` (a ``None`` entry: a member without one).
    """
    G.load_state_dict(saved["G"])
    D.load_state_dict(saved["D"])
    opt_g.load_state_dict(saved["opt_g"])
    opt_d.load_state_dict(saved["opt_d"])
    for g, s in pairs(generators, saved["data_gens"] + saved["noise_gens"]):
        g.set_state(s.cpu() if g.device.type == "cpu" else s)
    for obj, s in pairs(stateful, saved["noises"] + saved["controllers"]):
        if obj is not None:
            obj.load_state_dict(s)
