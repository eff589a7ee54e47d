"""Plain GAN vs Gaussian instance noise vs Diffusion-GAN (vs Denoising Diffusion GAN) on the 25-Gaussians grid.

Every (method, seed) pair of the one-step GANs is one member of a batched ensemble, so all of
them train in one pass over the iterations: same networks, same initial weights and same data for
one seed, whatever the method. ``ddgan`` runs (:mod:`.ddgan`) have other networks (G and D see
pairs and ``t``) and train as a second ensemble in the same pass, on the same data.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ...checkpoint import json_safe, load_training_state, remove_stale_temps, restoring, save_checkpoint
from ...conditioning import TimestepEmbedding
from ...controller import AdaptiveController
from ...knobs import check_knobs, knob
from ...noise import DiffusionNoise
from ...settings import setting
from .. import checkpoint_fields as fields
from ..ensemble import EnsembleMLP
from ..grid import grid_means, mode_metrics, sample_grid
from ..training import member_inputs, restore_members, summarize
from .ddgan import DdganEnsemble

METHODS = ("plain", "instance", "diffusion", "ddgan")
METRICS = ("modes_covered", "modes_hit", "hq_share", "reverse_kl")  # per-run numbers from mode_metrics
STATE_KEYS = ("iteration", "wall_seconds", "G", "D", "opt_g", "opt_d", "data_gens", "noise_gens", "noises",
              "controllers", "history", "ddgan")  # what a checkpoint holds besides the config


@dataclasses.dataclass
class ToySettings:
    """Settings of the toy run; defaults are the ones docs/toy.md reports."""

    iterations: int = knob(None, "Training iterations (one D and one G step each).  [default: 6000; 12000 with "
                                 "ddgan among the methods, which needs them (docs/toy.md)]", kind=int, minimum=1)
    seeds: tuple = knob((0,), "Seeds: every method trains once per seed (0..N-1).", kind="count")
    methods: tuple = knob(("plain", "diffusion"), "Comma-separated: plain, instance (Gaussian instance noise, std "
                                                  "--instance-sigma), diffusion, ddgan (Denoising Diffusion GAN, "
                                                  "--ddgan-steps denoising steps, docs/ddgan.md).", kind="list",
                          choices=METHODS)
    batch_size: int = knob(256, "Real and fake samples per step.", kind=int, minimum=1)
    hidden: int = knob(128, "Width of the 3 hidden layers of G and D.", kind=int, minimum=1)
    z_dim: int = knob(2, "Latent dimension.", kind=int, minimum=1)
    lr: float = knob(1e-3, "Adam learning rate (G and D).", kind=float, minimum=0.0, exclusive_minimum=True)
    adam_betas: tuple = (0.5, 0.999)  # Adam betas
    grid_size: int = knob(5, "Modes per side of the grid.", kind=int, minimum=1)
    spacing: float = knob(2.0, "Distance between neighbouring modes.", kind=float, minimum=0.0, exclusive_minimum=True)
    std: float = knob(0.05, "Standard deviation of each mode.", kind=float, minimum=0.0, exclusive_minimum=True)
    instance_sigma: float = knob(0.2, "Std of the Gaussian instance noise of 'instance'.", kind=float, minimum=0.0,
                                 exclusive_minimum=True)
    sigma: float = setting("sigma", 2.0, note="Here in data units: the grid spans ±4.")
    clean_prob: float = setting("clean_prob", 0.1, note="(docs/toy.md)")
    t_min: int = setting("t_min")
    t_max: int = setting("t_max")
    target: float = setting("target", 0.6)
    interval: int = setting("interval")
    kimg: float = setting("kimg")
    embed_dim: int = knob(16, "Sinusoidal features of t fed to D (even).", kind=int, minimum=2)
    ddgan_steps: int = knob(4, "Denoising steps T of 'ddgan' (generator calls per sample).", kind=int, minimum=1)
    r1_gamma: float = knob(0.05, "R1 weight of 'ddgan' on real pairs (the official CIFAR-10 setting).", kind=float,
                           minimum=0.0)
    ddgan_lr_g: float = knob(None, "Adam learning rate of the 'ddgan' G (the official CIFAR-10 setting: 1.6e-4).  "
                                   "[default: --lr]", kind=float, minimum=0.0, exclusive_minimum=True)
    ddgan_lr_d: float = knob(None, "Adam learning rate of the 'ddgan' D (official: 1.25e-4).  [default: --lr]",
                             kind=float, minimum=0.0, exclusive_minimum=True)
    ddgan_beta2: float = knob(0.999, "Adam's beta2 for 'ddgan' (official: 0.9; beta1 is 0.5 as for every method).",
                              kind=float, minimum=0.0, maximum=1.0)
    ddgan_ema: float = knob(0.0, "Decay of an exponential moving average of the 'ddgan' G's weights, which then "
                                 "samples (official: 0.9999 over 400k+ iterations); 0: none.", kind=float, minimum=0.0,
                            maximum=1.0)
    ddgan_lr_schedule: str = knob("cosine", "Learning rates of the 'ddgan' G and D over training: constant, or a "
                                            "cosine decay to 1e-5 by the last iteration (the official code's).",
                                  kind=str, choices=("constant", "cosine"))
    eval_samples: int = knob(2500, "Generated samples for the metrics.", kind=int, minimum=1)
    hq_stds: float = knob(3.0, "High-quality radius, in mode stds.", kind=float, minimum=0.0, exclusive_minimum=True)
    min_count: int = knob(20, "High-quality samples for a mode to count as covered.", kind=int, minimum=1)
    threads: int = knob(2, "torch CPU threads; results depend on it, so it is fixed and recorded.", kind=int, minimum=1)
    device: str = knob("cpu", "Where to train; the toy is small enough for a laptop CPU.", kind=str,
                       choices=("cpu", "cuda"))
    log_every: int = knob(25, "History resolution (iterations).", kind=int, minimum=1)

    def __post_init__(self):
        check_knobs(self)
        if self.iterations is None:
            self.iterations = 12000 if "ddgan" in self.methods else 6000
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim must be even (cosines and sines of t); got {self.embed_dim}")


def train_toy(
    config: ToySettings,  # what to train
    on_step: Callable[[int], None] | None = None,  # called after each iteration (a progress bar hooks in here)
    checkpoint: str | None = None,  # file to save the whole training state to (atomically)
    checkpoint_every: int = 500,  # iterations between checkpoints (and one at the end)
    resume: bool = False,  # continue from `checkpoint` if it exists
) -> dict:
    """Train every (method, seed) of ``config``; return metrics, history and samples.

    With ``checkpoint``, the state (networks, optimizers, every generator's RNG state, noise and
    controller state, history, iteration) is saved every ``checkpoint_every`` iterations and at the
    end; ``resume=True`` continues from it bit-exactly, as if never interrupted (the checkpoint's
    config must equal ``config``, and every field is checked first). Checkpoints load with
    ``weights_only=True``. ``already_complete`` in the result says the checkpoint was the last one
    (nothing was trained: the result is recomputed from it).
    """
    if checkpoint is None and resume:
        raise ValueError("resume=True needs a checkpoint path")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1; got {checkpoint_every}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, on_step, checkpoint, checkpoint_every, resume)
    finally:
        torch.set_num_threads(previous_threads)


def _check_saved(saved: dict, config: ToySettings, G, D, opt_g, opt_d, generators, noises, history, ddgan) -> None:
    """Every field of a checkpoint against its type, its range and this run; ``ValueError`` naming the first that
    lies (:mod:`~diffaug_noise.demos.checkpoint_fields`)."""
    iteration = fields.check_count("iteration", saved["iteration"], 1, config.iterations)
    fields.check_number("wall_seconds", saved["wall_seconds"], 0.0)
    fields.check_members(saved, G, D, opt_g, opt_d, generators)
    saved_history = saved["history"]
    fields.check_keys("history", saved_history, history)
    steps = fields.logged_steps(config.log_every, iteration, config.iterations)
    if saved_history["iteration"] != steps:
        raise ValueError(f"history.iteration must list the {len(steps)} logged steps up to iteration {iteration}; got "
                         f"{saved_history['iteration']!r:.80}")
    for key in ("T", "r_d"):
        fields.check_keys(f"history.{key}", saved_history[key], history[key])
    for k in history["T"]:
        fields.check_series(f"history.T[{k}]", saved_history["T"][k], len(steps), noises[k].t_min, noises[k].t_max,
                            whole=True)
        fields.check_series(f"history.r_d[{k}]", saved_history["r_d"][k], len(steps), -1.0, 1.0, nan=True)
    fields.check_number("history.ddgan_seconds", saved_history["ddgan_seconds"], 0.0)
    if ddgan is None:
        fields.check_like("ddgan", saved["ddgan"], None)
    else:
        fields.check_keys("ddgan", saved["ddgan"], ddgan.state_dict())
        for key, module in (("G", ddgan.G), ("D", ddgan.D), ("G_ema", ddgan.G_ema)):
            fields.check_like(f"ddgan.{key}", saved["ddgan"][key], None if module is None else module.state_dict())
        fields.check_optimizer("ddgan.opt_g", saved["ddgan"]["opt_g"], ddgan.opt_g)
        fields.check_optimizer("ddgan.opt_d", saved["ddgan"]["opt_d"], ddgan.opt_d)
        fields.check_like("ddgan.gens", saved["ddgan"]["gens"], [g.get_state() for g in ddgan.gens])


def _train(config: ToySettings, on_step, checkpoint, checkpoint_every, resume) -> dict:
    members = [(m, s) for m in config.methods if m != "ddgan" for s in config.seeds]
    ddgan_seeds = list(config.seeds) if "ddgan" in config.methods else []
    K, B = len(members), config.batch_size
    seed_index = torch.tensor([config.seeds.index(s) for _, s in members], dtype=torch.int64)
    device = torch.device(config.device)
    ddgan = DdganEnsemble(ddgan_seeds, config, device) if ddgan_seeds else None
    means = grid_means(config.grid_size, config.spacing)
    G = EnsembleMLP([s for _, s in members], [config.z_dim] + [config.hidden] * 3 + [2]).to(device)
    D = EnsembleMLP([s + 10_000 for _, s in members], [2 + config.embed_dim] + [config.hidden] * 3 + [1]).to(device)
    # D sees sinusoids of log(1 + t) scaled to [0, pi]: smooth in t and still distinct for small t
    # (sinusoids of raw t oscillate at 1 rad per step, a jagged input for a small MLP).
    embed = TimestepEmbedding(config.embed_dim, max_period=10.0, mlp=False).to(device)
    t_scale = math.pi / math.log1p(config.t_max)
    opt_g = torch.optim.Adam(G.parameters(), config.lr, betas=config.adam_betas, foreach=True)
    opt_d = torch.optim.Adam(D.parameters(), config.lr, betas=config.adam_betas, foreach=True)
    data_gens = [torch.Generator().manual_seed(s + 20_000) for s in config.seeds]
    noise_gens = [torch.Generator(device).manual_seed(s + 30_000) for _, s in members]
    noises, controllers = [], []  # None for the baselines
    for method, _ in members:
        noise = ctrl = None
        if method == "diffusion":
            noise = DiffusionNoise(sigma=config.sigma, clean_prob=config.clean_prob, t_min=config.t_min,
                                   t_max=config.t_max).to(device)
            ctrl = AdaptiveController(noise, target=config.target, interval=config.interval, kimg=config.kimg,
                                      batch_size=B)
        noises.append(noise)
        controllers.append(ctrl)

    def discriminate(x):
        ys, ts = zip(*(member_inputs(x[k], noises[k], config.instance_sigma if m == "instance" else 0.0, noise_gens[k])
                       for k, (m, _) in enumerate(members)))
        return D(torch.cat([torch.stack(ys), embed(torch.log1p(torch.stack(ts).float()) * t_scale)], dim=2))

    history = {"iteration": [], "T": {k: [] for k, (m, _) in enumerate(members) if m == "diffusion"},
               "r_d": {k: [] for k, (m, _) in enumerate(members) if m == "diffusion"},
               "ddgan_seconds": 0.0}  # the ddgan ensemble's share of the wall time

    def state(it: int, wall: float) -> dict:
        return {
            "config": json_safe(dataclasses.asdict(config)), "iteration": it, "wall_seconds": wall,
            "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "data_gens": [g.get_state() for g in data_gens], "noise_gens": [g.get_state() for g in noise_gens],
            "noises": [None if n is None else n.state_dict() for n in noises],
            "controllers": [None if c is None else c.state_dict() for c in controllers],
            "history": history, "ddgan": None if ddgan is None else ddgan.state_dict(),
        }

    def _one_step_gan_iteration(per_seed):
        real = torch.stack([r for r, _ in per_seed])[seed_index].to(device)
        z = torch.stack([z for _, z in per_seed])[seed_index].to(device)
        fake = G(z)

        # Real and fake through D in one batched call: the same loss as two calls, one pass fewer.
        real_logits, fake_logits = discriminate(torch.cat([real, fake.detach()], dim=1)).split(B, dim=1)
        loss_d = (F.softplus(-real_logits).mean(dim=(1, 2)) + F.softplus(fake_logits).mean(dim=(1, 2))).sum()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        for k, ctrl in enumerate(controllers):
            if ctrl is not None:
                ctrl.observe(real_logits[k])
                ctrl.update()

        D.requires_grad_(False)  # the G step needs gradients through D, not D's own
        loss_g = F.softplus(-discriminate(fake)).mean(dim=(1, 2)).sum()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)

    first, wall_before = 1, 0.0
    if checkpoint is not None:
        remove_stale_temps(checkpoint)  # of a run killed while it wrote; this run owns the folder
    if resume and os.path.exists(checkpoint):
        saved = load_training_state(checkpoint, dataclasses.asdict(config), STATE_KEYS, map_location=device)
        with restoring(checkpoint):
            _check_saved(saved, config, G, D, opt_g, opt_d, data_gens + noise_gens, noises, history, ddgan)
            restore_members(saved, G, D, opt_g, opt_d, data_gens + noise_gens, noises + controllers)
            history = dict(saved["history"])
            if ddgan is not None:
                ddgan.load_state_dict(saved["ddgan"])
            first, wall_before = int(saved["iteration"]) + 1, float(saved["wall_seconds"])
        if on_step is not None:
            for i in range(1, first):
                on_step(i)
    start = time.perf_counter()
    for it in range(first, config.iterations + 1):
        per_seed = [(sample_grid(B, means, config.std, g), torch.randn(B, config.z_dim, generator=g))
                    for g in data_gens]
        if members:
            _one_step_gan_iteration(per_seed)
        if ddgan is not None:  # the same reals; its two latents drawn after the one-step GANs' draws
            ddgan_start = time.perf_counter()
            ddgan.step(torch.stack([r for r, _ in per_seed]).to(device),
                       *(torch.stack([torch.randn(B, config.z_dim, generator=g) for g in data_gens]).to(device)
                         for _ in "dg"), progress=(it - 1) / config.iterations)
            history["ddgan_seconds"] += time.perf_counter() - ddgan_start

        if it % config.log_every == 0 or it == config.iterations:
            history["iteration"].append(it)
            for k in history["T"]:
                history["T"][k].append(noises[k].T)
                history["r_d"][k].append(controllers[k].r_d)
        if checkpoint is not None and (it % checkpoint_every == 0 or it == config.iterations):
            save_checkpoint(state(it, wall_before + time.perf_counter() - start), checkpoint)
        if on_step is not None:
            on_step(it)
    wall = wall_before + time.perf_counter() - start

    with torch.no_grad():
        eval_gen = torch.Generator().manual_seed(40_000)
        z = torch.randn(config.eval_samples, config.z_dim, generator=eval_gen).expand(K, -1, -1)
        samples = list(G(z.to(device)).cpu())
    if ddgan is not None:
        samples += list(ddgan.sample(config.eval_samples, torch.Generator().manual_seed(40_001)))
        members = members + [("ddgan", s) for s in ddgan_seeds]
    one_step_seconds = wall - history["ddgan_seconds"]
    runs = []
    for k, (method, seed) in enumerate(members):
        metrics = mode_metrics(samples[k], means, config.std, config.hq_stds, config.min_count)
        runs.append({
            "method": method,
            "seed": seed,
            **{key: metrics[key] for key in METRICS},
            "final_T": noises[k].T if method == "diffusion" else None,
            "final_p": noises[k].p if method == "diffusion" else None,
            "nfe": config.ddgan_steps if method == "ddgan" else 1,  # generator calls per sample
            # this run's share of the batched pass that trains its ensemble
            "wall_seconds": history["ddgan_seconds"] / len(ddgan_seeds) if method == "ddgan" else one_step_seconds / K,
        })
    return {
        "config": dataclasses.asdict(config),
        "wall_seconds": wall,
        "runs": runs,
        "summary": summarize(runs, config.methods, METRICS),
        "history": {"iteration": history["iteration"],
                    "T": {f"{members[k][0]}/seed{members[k][1]}": v for k, v in history["T"].items()},
                    "r_d": {f"{members[k][0]}/seed{members[k][1]}": v for k, v in history["r_d"].items()}},
        "samples": {f"{m}/seed{s}": samples[k] for k, (m, s) in enumerate(members)},
        "real": sample_grid(config.eval_samples, means, config.std, torch.Generator().manual_seed(50_000)),
        "already_complete": first > config.iterations,  # resumed from the last checkpoint: nothing was trained
    }
