"""Plain GAN vs fixed instance noise vs Diffusion-GAN (vs Denoising Diffusion GAN) on the 25-Gaussians grid.

Every (method, seed) pair of the one-step GANs is one member of a batched ensemble, so all of
them train in one pass over the iterations: same networks, same initial weights and same data for
one seed, whatever the method. ``ddgan`` runs (:mod:`.ddgan`) have other networks (G and D see
pairs and ``t``) and train as a second ensemble in the same pass, on the same data.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ...checkpoint import json_safe, load_training_state, pairs, remove_stale_temps, restoring, save_checkpoint
from ...conditioning import TimestepEmbedding
from ...controller import AdaptiveController
from ...noise import DiffusionNoise
from .ddgan import DdganEnsemble
from ..ensemble import EnsembleMLP
from ..grid import grid_means, mode_metrics, sample_grid
from ..training import member_inputs, summarize

METHODS = ("plain", "fixed", "diffusion", "ddgan")
METRICS = ("modes_covered", "modes_hit", "hq_share", "reverse_kl")  # per-run numbers from mode_metrics
STATE_KEYS = ("iteration", "wall_seconds", "G", "D", "opt_g", "opt_d", "data_gens", "noise_gens", "noises",
              "controllers", "history", "ddgan")  # what a checkpoint holds besides the config


@dataclasses.dataclass
class ToyConfig:
    """Settings of the toy run; defaults are the ones docs/toy.md reports."""

    iters: int = 6000  # training iterations (one D and one G step each); ~50 s for 2 runs on 2 cores
    seeds: tuple = (0,)  # one run per seed and method
    methods: tuple = ("plain", "diffusion")  # any of plain, fixed, diffusion, ddgan
    batch_size: int = 256  # real and fake samples per step
    hidden: int = 128  # width of the 3 hidden layers of G and D
    z_dim: int = 2  # latent dimension
    lr: float = 1e-3  # Adam learning rate (G and D)
    adam_betas: tuple = (0.5, 0.999)  # Adam betas
    grid_size: int = 5  # modes per side
    spacing: float = 2.0  # distance between neighbouring modes
    std: float = 0.05  # standard deviation of each mode
    fixed_sigma: float = 0.2  # std of the fixed instance noise ("fixed")
    sigma: float = 2.0  # diffusion noise std, in data units ("diffusion")
    clean_prob: float = 0.1  # share of D's inputs left clean ("diffusion"); see docs/toy.md
    t_min: int = 10  # diffusion T at p = 0
    t_max: int = 1000  # diffusion T at p = 1
    target: float = 0.6  # controller target for r_d
    interval: int = 4  # controller interval (steps)
    kimg: float = 100  # controller speed
    embed_dim: int = 16  # sinusoidal features of t fed to D
    ddgan_steps: int = 4  # denoising steps T of "ddgan" (generator calls per sample)
    r1_gamma: float = 0.05  # R1 weight of "ddgan" on real pairs (the official CIFAR-10 setting)
    eval_samples: int = 2500  # generated samples for the metrics
    hq_stds: float = 3.0  # HQ radius, in mode stds
    min_count: int = 20  # HQ samples for a mode to count as covered
    threads: int = 2  # torch CPU threads (results depend on it)
    device: str = "cpu"  # where G, D and the noise live
    log_every: int = 25  # history resolution (iterations)

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown or no methods {list(self.methods)}; choose from {', '.join(METHODS)}")
        if self.iters < 1 or not self.seeds:
            raise ValueError(f"need iters >= 1 and at least one seed; got iters={self.iters}, seeds={list(self.seeds)}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1; got {self.threads}")


def train_toy(
    config: ToyConfig,  # what to train
    on_step: Callable[[int], None] | None = None,  # called after each iteration (a progress bar hooks in here)
    checkpoint: str | None = None,  # file to save the whole training state to (atomically)
    checkpoint_every: int = 500,  # iterations between checkpoints (and one at the end)
    resume: bool = False,  # continue from `checkpoint` if it exists
) -> dict:
    """Train every (method, seed) of ``config``; return metrics, history and samples.

    With ``checkpoint``, the state (networks, optimizers, every generator's RNG state, noise and
    controller state, history, iteration) is saved every ``checkpoint_every`` iterations and at the
    end; ``resume=True`` continues from it bit-exactly, as if never interrupted (the checkpoint's
    config must equal ``config``). Checkpoints load with ``weights_only=True``.
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


def _train(config: ToyConfig, on_step, checkpoint, checkpoint_every, resume) -> dict:
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
            noise = DiffusionNoise(sigma=config.sigma, clean_prob=config.clean_prob, t_min=config.t_min, t_max=config.t_max).to(device)
            ctrl = AdaptiveController(noise, target=config.target, interval=config.interval, kimg=config.kimg, batch_size=B)
        noises.append(noise)
        controllers.append(ctrl)

    def discriminate(x):
        ys, ts = zip(*(member_inputs(x[k], noises[k], config.fixed_sigma if m == "fixed" else 0.0, noise_gens[k])
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
            G.load_state_dict(saved["G"])
            D.load_state_dict(saved["D"])
            opt_g.load_state_dict(saved["opt_g"])
            opt_d.load_state_dict(saved["opt_d"])
            for g, s in pairs(data_gens + noise_gens, saved["data_gens"] + saved["noise_gens"]):
                g.set_state(s.cpu() if g.device.type == "cpu" else s)
            for obj, s in pairs(noises + controllers, saved["noises"] + saved["controllers"]):
                if obj is not None:
                    obj.load_state_dict(s)
            history = dict(saved["history"])
            if ddgan is not None:
                ddgan.load_state_dict(saved["ddgan"])
            first, wall_before = int(saved["iteration"]) + 1, float(saved["wall_seconds"])
        if on_step is not None:
            for i in range(1, first):
                on_step(i)
    start = time.perf_counter()
    for it in range(first, config.iters + 1):
        per_seed = [(sample_grid(B, means, config.std, g), torch.randn(B, config.z_dim, generator=g)) for g in data_gens]
        if members:
            _one_step_gan_iteration(per_seed)
        if ddgan is not None:  # the same reals; its two latents drawn after the one-step GANs' draws
            ddgan_start = time.perf_counter()
            ddgan.step(torch.stack([r for r, _ in per_seed]).to(device),
                       *(torch.stack([torch.randn(B, config.z_dim, generator=g) for g in data_gens]).to(device) for _ in "dg"))
            history["ddgan_seconds"] += time.perf_counter() - ddgan_start

        if it % config.log_every == 0 or it == config.iters:
            history["iteration"].append(it)
            for k in history["T"]:
                history["T"][k].append(noises[k].T)
                history["r_d"][k].append(controllers[k].r_d)
        if checkpoint is not None and (it % checkpoint_every == 0 or it == config.iters):
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
    }
