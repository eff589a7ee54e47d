"""Named settings: the paper's defaults and each official fork's behaviour.

Each preset holds the keyword arguments of :class:`~diffaug_noise.DiffusionNoise` (``noise``)
and of :class:`~diffaug_noise.AdaptiveController` (``controller``). The fork presets reproduce
the official code's *long-run* law of ``t`` exactly; docs/reference-quirks.md lists what each
reproduces and what it deliberately does not (e.g. the finite pool of 64 pre-drawn values).
"""
from __future__ import annotations

import copy

PRESETS: dict[str, dict[str, dict]] = {
    # The paper (arXiv 2206.02262, Sec. 3 and App. C): P(t) ∝ t over 1..T, every sample noised.
    "paper": {
        "noise": dict(
            schedule="linear", beta_start=1e-4, beta_end=2e-2, t_min=10, t_max=1000,
            sigma=0.05, t_dist="priority", clean_prob=0.0, priority_offset=0,
            clean_rule="fixed", per_channel=False,
        ),
        "controller": dict(target=0.6, interval=4, kimg=100),
    },
    # diffusion-stylegan2 (train.py defaults; training/diffusion.py): half the pool is t = 0,
    # priority weights k - 1 over 1..T.
    "stylegan2": {
        "noise": dict(
            schedule="linear", beta_start=1e-4, beta_end=2e-2, t_min=10, t_max=1000,
            sigma=0.05, t_dist="priority", clean_prob=0.5, priority_offset=1,
            clean_rule="fixed", per_channel=False,
        ),
        "controller": dict(target=0.6, interval=4, kimg=100),
    },
    # diffusion-projected-gan (pg_modules/projector.py, pg_modules/diffusion.py, train.py):
    # noise on feature maps, t per sample and channel, noised share min(round(64p), 48)/64.
    "projected_gan": {
        "noise": dict(
            schedule="linear", beta_start=1e-4, beta_end=1e-2, t_min=5, t_max=500,
            sigma=0.5, t_dist="priority", clean_prob=0.0, priority_offset=1,
            clean_rule="projected_gan", per_channel=True,
        ),
        "controller": dict(target=0.6, interval=4, kimg=100),
    },
}

# diffusion-insgen (training/augment.py) is stylegan2's noise with other train.py defaults:
# --t_max 500 --ts_dist uniform.
PRESETS["insgen"] = {
    "noise": {**PRESETS["stylegan2"]["noise"], "t_max": 500, "t_dist": "uniform"},
    "controller": dict(PRESETS["stylegan2"]["controller"]),
}


def preset_kwargs(name: str, part: str, **overrides) -> dict:
    """Preset ``name``'s keyword arguments for ``part`` ("noise" or "controller"), with ``overrides`` set over them.

    The one route from settings to a noise or a controller: :meth:`DiffusionNoise.preset`, the adapters' options and
    the demos all come through here. An override of ``None`` keeps the preset's value (a setting left unset); an
    override may be any argument of that part's class (``p``, ``signal``), which checks it.

    Example:
        >>> preset_kwargs("stylegan2", "noise")["clean_prob"]
        0.5
        >>> kwargs = preset_kwargs("stylegan2", "noise", clean_prob=0.0, sigma=None)
        >>> kwargs["clean_prob"], kwargs["sigma"]
        (0.0, 0.05)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return {**copy.deepcopy(PRESETS[name][part]), **chosen}
