"""Classifier guidance on the 25 Gaussians: a small DDPM, a noise-aware classifier, samples per guidance scale.

The grid's five rows are the classes. A DDPM (an MLP predicting the noise, on
:class:`~diffaug_noise.guidance.AncestralChain`) learns the whole grid; a classifier with AdaGN
layers (:class:`~diffaug_noise.AdaGroupNorm`, conditioned on ``t``) learns the row from noised
points with :func:`~diffaug_noise.guidance.noisy_classifier_loss`. Guided ancestral sampling for
class ``y`` at scale ``s`` shifts each step's mean by ``s Σ ∇ log p(y | x_t)``; with ``s = 0`` about
a fifth of the samples land in row ``y``, with larger ``s`` nearly all do, spread over its five modes.

Per scale: *class precision* (share of all samples that are high-quality and in row ``y``),
*within-class coverage* (modes of row ``y`` with at least ``min_count`` high-quality samples) and
*HQ share* (high-quality samples, any row), with the toy's high-quality radius (3 stds).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...conditioning import AdaGroupNorm, TimestepEmbedding
from ...guidance import AncestralChain, classifier_gradient, condition_mean, noisy_classifier_loss
from ...knobs import check_knobs, knob
from ...settings import setting
from ..grid import grid_means, sample_grid

CLASSES = 5  # the grid's rows
METRICS = ("class_precision", "within_class_coverage", "hq_share")


@dataclasses.dataclass
class GuidanceSettings:
    """Settings of the guidance demo; defaults are the ones docs/guidance.md reports."""

    seeds: tuple = knob((0,), "Seeds (0..N-1): one DDPM and one classifier each.", kind="count")
    scales: tuple = knob((0.0, 0.5, 1.0, 2.0, 4.0, 8.0), "Guidance scales s, comma-separated.", kind="numbers",
                         minimum=0.0)
    target_class: int = knob(0, "The grid row (class) the samples are guided to (0 = bottom .. 4 = top).", kind=int,
                             minimum=0, maximum=CLASSES - 1, aliases=("--class",))
    ddpm_iterations: int = knob(8000, "Training iterations of the DDPM's noise predictor.", kind=int, minimum=1,
                                aliases=("--ddpm-iters",))
    classifier_iterations: int = knob(1000, "Training iterations of the noise-aware classifier.", kind=int, minimum=1,
                                      aliases=("--classifier-iters",))
    batch_size: int = knob(512, "Points per training iteration.", kind=int, minimum=1)
    hidden: int = knob(128, "Width of the MLPs.", kind=int, minimum=1)
    lr: float = knob(2e-3, "Adam learning rate.", kind=float, minimum=0.0, exclusive_minimum=True)
    schedule: str = setting("schedule", "cosine", note="Here the DDPM's.")
    T: int = knob(100, "DDPM steps (network calls per sample).", kind=int, minimum=1)
    data_scale: float = knob(1.0, "The networks see the grid times this (0.25, ±1, left the DDPM blurry: "
                                  "docs/guidance.md).", kind=float, minimum=0.0, exclusive_minimum=True)
    std: float = knob(0.05, "Each mode's std (the toy's).", kind=float, minimum=0.0, exclusive_minimum=True)
    eval_samples: int = knob(2500, "Guided samples per scale.", kind=int, minimum=1)
    hq_stds: float = knob(3.0, "High-quality radius, in mode stds.", kind=float, minimum=0.0, exclusive_minimum=True)
    min_count: int = knob(20, "High-quality samples for a mode to count as covered.", kind=int, minimum=1)
    threads: int = knob(2, "torch CPU threads (recorded).", kind=int, minimum=1)
    device: str = knob("cpu", "Where to train.", kind=str, choices=("cpu", "cuda"))

    def __post_init__(self):
        check_knobs(self)


class NoisePredictor(nn.Module):
    """``eps_hat(x_t, t)``: an MLP on ``[x_t, e(t)]``."""

    def __init__(self, hidden: int, T: int):
        super().__init__()
        self.embed = TimestepEmbedding(32, max_period=4.0 * T)
        self.net = nn.Sequential(nn.Linear(2 + 32, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x, t):
        return self.net(torch.cat([x, self.embed(t)], dim=1))


class NoisyClassifier(nn.Module):
    """``logits(x_t, t)``: two hidden layers, each ``SiLU(AdaGN(W h, e(t)))``, then 5 logits."""

    def __init__(self, hidden: int, T: int):
        super().__init__()
        self.embed = TimestepEmbedding(32, max_period=4.0 * T)
        self.layers = nn.ModuleList([nn.Linear(2, hidden), nn.Linear(hidden, hidden)])
        self.norms = nn.ModuleList([AdaGroupNorm(8, hidden, 32) for _ in self.layers])
        self.out = nn.Linear(hidden, CLASSES)

    def forward(self, x, t):
        e, h = self.embed(t), x
        for layer, norm in zip(self.layers, self.norms):
            h = F.silu(norm(layer(h), e))
        return self.out(h)


def mode_rows(means: torch.Tensor) -> torch.Tensor:
    """The class of each mode: its row, i.e. the rank of its second coordinate (0 = bottom)."""
    return torch.unique(means[:, 1], return_inverse=True)[1]


def row_of(points: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Class (grid row) of each point's nearest mode."""
    return mode_rows(means)[torch.cdist(points.float(), means.float()).argmin(dim=1)]


def scale_metrics(samples, means, y: int, config: GuidanceSettings) -> dict:
    """Class precision, within-class coverage and HQ share of samples guided to row ``y``."""
    distance, nearest = torch.cdist(samples.float(), means.float()).min(dim=1)
    hq = distance <= config.hq_stds * config.std
    rows = mode_rows(means)
    in_class = hq & (rows[nearest] == y)
    counts = torch.bincount(nearest[in_class], minlength=len(means))
    return {"class_precision": float(in_class.float().mean()),
            "within_class_coverage": int((counts[rows == y] >= config.min_count).sum()),
            "hq_share": float(hq.float().mean())}


@torch.no_grad()
def guided_samples(model, classifier, chain: AncestralChain, n: int, y: int, scale: float, generator) -> torch.Tensor:
    """Ancestral sampling from ``x_T ~ N(0, I)`` with the mean shifted by ``scale Σ ∇ log p(y | x_t)``."""
    x = torch.randn(n, 2, generator=generator)
    labels = torch.full((n,), y, dtype=torch.int64)
    for step in range(chain.T, 0, -1):
        t = torch.full((n,), step, dtype=torch.int64)
        mean, variance = chain.mean_variance(x, model(x, t), t)
        if scale:
            mean = condition_mean(mean, variance, classifier_gradient(classifier, x, t, labels, scale))
        x = mean + variance.sqrt() * torch.randn(x.shape, generator=generator)
    return x


def _train(net, loss_fn, iters: int, lr: float, on_step) -> None:
    opt = torch.optim.Adam(net.parameters(), lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        on_step()


def train_guidance(config: GuidanceSettings, on_step: Callable[[], None] | None = None) -> dict:
    """Train a DDPM and a noisy classifier per seed; sample at every scale; return metrics and samples."""
    on_step = on_step or (lambda: None)
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        means = grid_means(5, 2.0)
        chain = AncestralChain(config.schedule, config.T)
        runs, samples, seconds = [], {}, {}
        for seed in config.seeds:
            start = time.perf_counter()
            g = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)  # the networks' initial weights
            model, classifier = NoisePredictor(config.hidden, config.T), NoisyClassifier(config.hidden, config.T)

            def batch():
                x0 = sample_grid(config.batch_size, means, config.std, g)
                return x0 * config.data_scale, row_of(x0, means)

            def ddpm_loss():
                x0, _ = batch()
                t = torch.randint(1, config.T + 1, (config.batch_size,), generator=g)
                eps = torch.randn(x0.shape, generator=g)
                return F.mse_loss(model(chain.q_sample(x0, t, noise=eps), t), eps)

            def classifier_loss():
                x0, rows = batch()
                return noisy_classifier_loss(classifier, chain, x0, rows, generator=g)

            _train(model, ddpm_loss, config.ddpm_iterations, config.lr, on_step)
            _train(classifier, classifier_loss, config.classifier_iterations, config.lr, on_step)
            model.eval()
            classifier.eval()
            for scale in config.scales:
                points = guided_samples(model, classifier, chain, config.eval_samples, config.target_class, scale,
                                        torch.Generator().manual_seed(40_000 + seed)) / config.data_scale
                samples[f"s={scale:g}/seed{seed}"] = points
                runs.append({"seed": seed, "scale": scale, **scale_metrics(points, means, config.target_class, config)})
            seconds[seed] = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    for run in runs:
        run["seconds"] = seconds[run["seed"]]  # the seed's whole run: both trainings and all scales
    per_scale = [{"scale": scale,
                  **{key: statistics.median(r[key] for r in runs if r["scale"] == scale) for key in METRICS}}
                 for scale in config.scales]
    return {"config": dataclasses.asdict(config), "runs": runs, "per_scale": per_scale, "samples": samples,
            "wall_seconds": sum(seconds.values()), "nfe": config.T}
