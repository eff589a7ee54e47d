"""Timing of the noise forward against the bounds measured in the same run.

Reported as ratios, never as pass/fail: ``ours / randn`` (drawing ``eps`` is the unavoidable
work), ``ours / copy`` (one read + one write of ``x``: the fused CUDA kernel's floor),
``unfused / ours`` (a textbook implementation that samples ``t`` on the host with numpy and
moves the tables to the device on every call, as the official code does) and
``ours / D step`` (the noise's share of a StyleGAN2-sized discriminator's forward + backward
at the same batch).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .knobs import check_knobs, knob
from .noise import DiffusionNoise


@dataclasses.dataclass(frozen=True)
class NoiseBench:
    """What :func:`bench_noise` times, and how often (``diffaug-noise bench``'s options)."""

    device: str = knob("cpu", "Device to time on.", kind=str, choices=("cpu", "cuda"))
    shapes: tuple = knob(((64, 3, 32, 32), (32, 3, 64, 64), (16, 3, 256, 256)),
                         "Input shapes [B, ...], comma-separated, dimensions joined by x.", kind="shapes")
    repeats: int = knob(50, "Timed calls per method (medians reported).", kind=int, minimum=3)
    warmup: int = knob(5, "Untimed calls per method first.", kind=int, minimum=0)
    p: float = knob(0.5, "Noise strength p during the run.", kind=float, minimum=0.0, maximum=1.0)
    d_step: bool = knob(True, "Also time forward+backward of a StyleGAN2-sized discriminator on image shapes "
                              "(slow on a CPU).", kind=bool)

    def __post_init__(self):
        check_knobs(self)


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


class ResNetDiscriminator(nn.Module):
    """A StyleGAN2-sized residual discriminator (for timing only; written for this benchmark).

    StyleGAN2's ``resnet`` layout and widths: a 1x1 from-RGB conv, then per resolution
    ``r = R, R/2, ..., 8`` a block of two 3x3 convs (the second halving ``r``) plus a 1x1 skip,
    ``min(channel_base / r, channel_max)`` channels, leaky ReLU 0.2; then a 3x3 conv, a dense
    layer on the 4x4 map and a scalar output. No equalized learning rate, mapping or minibatch
    std: the arithmetic, not the exact numbers, matters here.

    Example:
        >>> D = ResNetDiscriminator(resolution=16, channel_base=256, channel_max=32)
        >>> D(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        resolution: int,  # input height = width, a power of two >= 8
        in_channels: int = 3,  # image channels
        channel_base: int = 32768,  # StyleGAN2-ADA's default cbase
        channel_max: int = 512,  # StyleGAN2-ADA's default cmax
    ):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8; got {resolution}")
        width = lambda r: min(channel_base // r, channel_max)  # noqa: E731
        self.from_rgb = nn.Conv2d(in_channels, width(resolution), 1)
        self.blocks = nn.ModuleList()
        r = resolution
        while r > 4:
            c_in, c_out = width(r), width(r // 2)
            self.blocks.append(nn.ModuleDict({
                "conv0": nn.Conv2d(c_in, c_in, 3, padding=1),
                "conv1": nn.Conv2d(c_in, c_out, 3, padding=1),
                "skip": nn.Conv2d(c_in, c_out, 1, bias=False),
            }))
            r //= 2
        self.conv = nn.Conv2d(width(4), width(4), 3, padding=1)
        self.fc = nn.Linear(width(4) * 16, width(4))
        self.out = nn.Linear(width(4), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(x), 0.2)
        for block in self.blocks:
            skip = F.avg_pool2d(block["skip"](x), 2)
            x = F.leaky_relu(block["conv0"](x), 0.2)
            x = F.leaky_relu(F.avg_pool2d(block["conv1"](x), 2), 0.2)
            x = (x + skip) * 2 ** -0.5
        x = F.leaky_relu(self.conv(x), 0.2)
        return self.out(F.leaky_relu(self.fc(x.flatten(1)), 0.2))


def _d_step(shape, device) -> Callable[[torch.Tensor], object] | None:
    """Forward + backward of a StyleGAN2-sized D on a batch of ``shape``, or None if not an image shape."""
    if len(shape) != 4 or shape[2] != shape[3] or shape[2] < 8 or shape[2] & (shape[2] - 1):
        return None
    D = ResNetDiscriminator(shape[2], in_channels=shape[1]).to(device)

    def step(y):
        y = y.detach().requires_grad_()  # D's input gradient is computed, as in the G phase and R1
        D(y).sum().backward()
    return step


class Stopwatch:
    """Times calls on one device: CUDA event pairs on a GPU, the clock on a CPU; what both benches share.

    ``synced=True`` waits for each call to finish (the layer bench: a call's time includes its host
    work, as a training step feels it); ``synced=False`` adds no sync at all (the upstream bench times
    every noise forward inside a training loop it must not slow) and reads the events once, in
    :meth:`seconds`. Each record keeps the wall-clock time its call began.

    Example:
        >>> watch = Stopwatch(torch.device("cpu"))
        >>> watch(lambda: sum(range(1000)))
        499500
        >>> len(watch.seconds()), watch.seconds()[0] >= 0
        (1, True)
    """

    def __init__(self, device: torch.device, synced: bool = True):
        self.cuda, self.synced, self.records = device.type == "cuda", synced, []  # (began at, seconds or event pair)

    def __call__(self, fn: Callable[[], object]):
        began = time.time()
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            if self.synced:
                end.synchronize()
            self.records.append((began, (start, end)))
            return out
        clock = time.perf_counter()
        out = fn()
        self.records.append((began, time.perf_counter() - clock))
        return out

    def seconds(self, until: float | None = None) -> list[float]:
        """The calls' durations, of those begun at ``until`` (a ``time.time()``) or before (default: all)."""
        kept = [timing for began, timing in self.records if until is None or began <= until]
        if self.cuda and kept:
            torch.cuda.synchronize()
        return [timing[0].elapsed_time(timing[1]) / 1000.0 if self.cuda else timing for timing in kept]


def capture_cuda_graph(fn: Callable[[], object]) -> tuple[Callable[[], None], object]:
    """``fn`` captured once in a CUDA graph, after warm-up calls on a side stream.

    Returns ``(replay, output)``: each ``replay()`` reruns the captured kernels and rewrites
    ``output``, the tensors ``fn`` returned during the capture.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # Triton compiles, allocators settle: nothing of that may happen during capture
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = fn()
    return graph.replay, output


def bench_noise(settings: NoiseBench = NoiseBench()) -> list[dict]:
    """Median seconds per call of each method and the ratios, one dict per shape.

    Methods are interleaved call by call, so drift in machine load hits all of them alike. On
    CUDA, ``ours`` is the fused path, ``ours_grad`` the same on an ``x`` that needs a gradient (as
    the G phase's fakes and R1's reals do), ``ours_torch`` the same module with ``fused=False``,
    ``kernel`` the fused kernel alone (``t`` and seed drawn beforehand) and ``ours_graphed`` the
    fused forward replayed from a CUDA graph (new draws at every replay, no host work: what a
    graph-captured training step pays).

    Example:
        >>> rows = bench_noise(NoiseBench(shapes=((4, 3, 8, 8),), repeats=3, warmup=1))
        >>> sorted(rows[0]["ratios"])
        ['ours/D step', 'ours/copy', 'ours/randn', 'unfused/ours']
    """
    device, repeats = torch.device(settings.device), settings.repeats
    noise = DiffusionNoise(p=settings.p).to(device)
    torch_path = DiffusionNoise(p=settings.p, fused=False).to(device)
    unfused = UnfusedReferenceNoise(noise)
    rows = []
    for shape in settings.shapes:
        x = torch.randn(shape, device=device)
        methods = {
            "ours": lambda: noise(x),
            "randn": lambda: torch.randn_like(x),
            "copy": lambda: x.clone(),
            "unfused": lambda: unfused(x),
        }
        if device.type == "cuda":
            from . import fused  # imports Triton: only for CUDA runs

            # the loop runs under no_grad
            x_grad, noise_with_grad = x.detach().requires_grad_(), torch.enable_grad()(noise)
            methods["ours_grad"] = lambda: noise_with_grad(x_grad)
            methods["ours_torch"] = lambda: torch_path(x)
            if fused.supports(x):  # the kernel alone, t and seed drawn beforehand: its bytes vs a copy's
                t, seed = noise.sample_t(shape[0], device), torch.rand(2, dtype=torch.float64, device=device)
                methods["kernel"] = lambda: fused.launch(x, t, noise.coefficients32, x[0].numel(), seed)
            methods["ours_graphed"] = capture_cuda_graph(lambda: noise(x))[0]
        step = _d_step(shape, device) if settings.d_step else None
        with torch.no_grad():
            for _ in range(settings.warmup):
                for fn in methods.values():
                    fn()
            watches = {name: Stopwatch(device) for name in methods}
            for _ in range(repeats):
                for name, fn in methods.items():
                    watches[name](fn)
            times = {name: watch.seconds() for name, watch in watches.items()}
        if step is not None:  # fewer repeats: a D step is hundreds of noise calls
            for _ in range(2):
                step(x)
            watch = Stopwatch(device)
            for _ in range(max(3, repeats // 10)):
                watch(lambda: step(x))
            times["D step"] = watch.seconds()
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
                "ours/D step": med["ours"] / med["D step"] if "D step" in med else None,
                **({"ours_torch/ours": med["ours_torch"] / med["ours"]} if "ours_torch" in med else {}),
                **({"ours_grad/ours": med["ours_grad"] / med["ours"]} if "ours_grad" in med else {}),
                **({"kernel/copy": med["kernel"] / med["copy"]} if "kernel" in med else {}),
                **({"ours_graphed/randn": med["ours_graphed"] / med["randn"]} if "ours_graphed" in med else {}),
            },
        })
    return rows
