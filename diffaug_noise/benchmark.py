"""Timing of the noise forward against the bounds measured in the same run.

Reported as ratios, never as pass/fail: ``ours / randn`` (drawing ``eps`` is the unavoidable
work), ``ours / copy`` (one read + one write of ``x``) and ``unfused / ours`` (a textbook
implementation that samples ``t`` on the host with numpy and moves the tables to the device
on every call, as the official code does).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch

from .noise import DiffusionNoise

DEFAULT_SHAPES = ((64, 3, 32, 32), (32, 3, 64, 64), (16, 3, 256, 256))


class UnfusedReferenceNoise:
    """A textbook forward diffusion with host-side sampling (the baseline, written for this benchmark).

    Per call: draws ``t`` with ``numpy.random.choice`` from the law, copies ``t`` and both tables
    to the device, draws ``eps`` and combines out of place.
    """

    def __init__(self, noise: DiffusionNoise):
        self.law = noise.t_distribution().numpy()
        self.sqrt_abar = noise.sqrt_abar[: noise.T + 1].cpu().float()
        self.sqrt_one_minus_abar = noise.sqrt_one_minus_abar[: noise.T + 1].cpu().float()
        self.sigma = noise.sigma
        self.rng = np.random.default_rng(0)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(self.rng.choice(len(self.law), size=x.shape[0], p=self.law)).to(x.device)
        view = (-1,) + (1,) * (x.ndim - 1)
        a = self.sqrt_abar.to(x.device)[t].view(view)
        b = self.sqrt_one_minus_abar.to(x.device)[t].view(view)
        eps = torch.randn_like(x) * self.sigma
        return a * x + b * eps, t


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    if device.type == "cuda":
        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
    else:
        def run(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return run


def bench_noise(
    shapes=DEFAULT_SHAPES,  # input shapes [B, ...]
    device: str = "cpu",  # "cpu" or "cuda"
    repeats: int = 50,  # timed calls per method (medians are reported)
    warmup: int = 5,  # untimed calls per method first
    p: float = 0.5,  # noise strength during the run
) -> list[dict]:
    """Median seconds per call of each method and the ratios, one dict per shape.

    Methods are interleaved call by call, so drift in machine load hits all of them alike.

    Example:
        >>> rows = bench_noise(shapes=[(4, 3, 8, 8)], repeats=3, warmup=1)
        >>> sorted(rows[0]["ratios"])
        ['ours/copy', 'ours/randn', 'unfused/ours']
    """
    device = torch.device(device)
    timer = _timer(device)
    noise = DiffusionNoise(p=p).to(device)
    unfused = UnfusedReferenceNoise(noise)
    rows = []
    for shape in shapes:
        x = torch.randn(shape, device=device)
        methods = {
            "ours": lambda: noise(x),
            "randn": lambda: torch.randn_like(x),
            "copy": lambda: x.clone(),
            "unfused": lambda: unfused(x),
        }
        times = {name: [] for name in methods}
        with torch.no_grad():
            for _ in range(warmup):
                for fn in methods.values():
                    fn()
            for _ in range(repeats):
                for name, fn in methods.items():
                    times[name].append(timer(fn))
        med = {name: statistics.median(ts) for name, ts in times.items()}
        rows.append({
            "shape": list(shape),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "median_s": med,
            "ratios": {
                "ours/randn": med["ours"] / med["randn"],
                "ours/copy": med["ours"] / med["copy"],
                "unfused/ours": med["unfused"] / med["ours"],
            },
        })
    return rows
