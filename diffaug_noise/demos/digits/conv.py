"""Convolutional G and t-conditioned D for the digits job (``run digits --net conv``), as ensembles.

The digits are upsampled bilinearly from 8x8 to ``resolution`` (16 or 32) px. Both networks are
DCGAN-style (Radford et al. 2016) with ``width`` channels at the largest resolution:

- G: ``z`` → transposed 4x4 convolutions 4 → 8 → ... → ``resolution``, BatchNorm (batch statistics
  only) and ReLU between them, tanh at the end;
- D: strided 4x4 convolutions ``resolution`` → ... → 4 with LeakyReLU 0.2, no batch norm, then
  ``t`` through the library's conditioning, picked by name from
  :data:`~diffaug_noise.conditioning.CONDITIONINGS`: ``projection`` (a
  :class:`~diffaug_noise.TimestepProjectionHead` on the 4x4 features: their linear logit plus
  ``<V e(t), h>``), ``film`` (an :class:`~diffaug_noise.AdaGroupNorm` after every convolution,
  driven by a :class:`~diffaug_noise.TimestepEmbedding` of ``t``, and the projection head) or
  ``none`` (D blind to ``t``: the ablation).

One network is one run; :class:`~diffaug_noise.demos.ensemble.StackedEnsemble` trains the (method,
seed) runs of a job in one vmapped pass (``[K, B, 1, R, R]`` images), each member initialised from
its own seed.

Example:
    >>> G = conv_generator([0, 1], z_dim=8, resolution=16, width=4)
    >>> D = conv_discriminator([0, 1], resolution=16, width=4, conditioning="film")
    >>> images = G(torch.randn(2, 3, 8))
    >>> images.shape, D(images, torch.zeros(2, 3, dtype=torch.long)).shape
    (torch.Size([2, 3, 1, 16, 16]), torch.Size([2, 3, 1]))
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...conditioning import CONDITIONINGS, TimestepEmbedding
from ..ensemble import StackedEnsemble

CONV_CONDITIONINGS = ("projection", "film", "none")  # names of CONDITIONINGS, and none: D blind to t
RESOLUTIONS = (16, 32)
EMBED_DIM = 32  # width of D's timestep embedding


def upsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """``[N, 1, 8, 8]`` digits at ``resolution`` px, bilinear (what the conv job trains on)."""
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


def to_digit_pixels(images: torch.Tensor) -> torch.Tensor:
    """Generated ``[..., 1, R, R]`` images back on the 8x8 grid the FD_digits classifier reads: ``[..., 64]``.

    The least-squares inverse of :func:`upsample` (its pseudo-inverse, a fixed linear map): an
    upsampled digit comes back exactly, and anything else as the digit whose upsampling is nearest.
    """
    lead, R = images.shape[:-3], images.shape[-1]
    return images.reshape(*lead, R * R) @ _downsampling(R, images.dtype, images.device)


@functools.lru_cache(maxsize=4)
def _downsampling(resolution: int, dtype, device) -> torch.Tensor:
    # row i: the upsampled image of a digit that is 1 at pixel i, 0 elsewhere
    up = upsample(torch.eye(64, dtype=torch.float64).view(64, 1, 8, 8), resolution).view(64, -1)
    return torch.linalg.pinv(up).to(dtype=dtype, device=device)  # [R*R, 64]


def _stages(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}; got {resolution!r}")
    return int(math.log2(resolution // 4))  # 4x4 doubles to the resolution in this many steps


class ConvGenerator(nn.Module):
    """``z [B, z_dim] → images [B, 1, R, R]`` in [-1, 1]."""

    def __init__(self, z_dim: int, resolution: int, width: int):
        super().__init__()
        stages = _stages(resolution)
        channels = [width * 2 ** (stages - i) for i in range(stages)] + [1]  # 4 px: the most channels
        layers: list[nn.Module] = [nn.Unflatten(1, (z_dim, 1, 1)), nn.ConvTranspose2d(z_dim, channels[0], 4, 1, 0)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.BatchNorm2d(c_in, track_running_stats=False), nn.ReLU(),
                       nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)]
        self.net = nn.Sequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvDiscriminator(nn.Module):
    """``D(y [B, 1, R, R], t [B]) → logits [B, 1]``; ``conditioning`` as in the module docstring."""

    def __init__(self, resolution: int, width: int, conditioning: str = "projection"):
        super().__init__()
        if conditioning not in CONV_CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; choose one of {', '.join(CONV_CONDITIONINGS)}")
        stages = _stages(resolution)
        channels = [1] + [width * 2**i for i in range(stages)]
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 4, 2, 1) for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.conditioning = conditioning
        features = channels[-1] * 16  # 4x4 maps
        if conditioning == "film":
            self.embed = TimestepEmbedding(EMBED_DIM)
            self.norms = nn.ModuleList(CONDITIONINGS["film"](min(4, c), c, EMBED_DIM) for c in channels[1:])
        if conditioning == "none":
            self.head = nn.Linear(features, 1)
        else:
            self.head = CONDITIONINGS["projection"](features, EMBED_DIM)

    def forward(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.embed(t) if self.conditioning == "film" else None
        h = y
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if cond is not None:
                h = self.norms[i](h, cond)
            h = F.leaky_relu(h, 0.2)
        features = h.flatten(1)
        return self.head(features) if self.conditioning == "none" else self.head(features, t)


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init, from the member's own seed
        torch.manual_seed(seed)
        return build()


def conv_generator(seeds: list[int], z_dim: int, resolution: int, width: int) -> StackedEnsemble:
    """One :class:`ConvGenerator` per seed, stacked: ``z [K, B, z_dim] → [K, B, 1, R, R]``."""
    return StackedEnsemble([_seeded(s, lambda: ConvGenerator(z_dim, resolution, width)) for s in seeds])


def conv_discriminator(seeds: list[int], resolution: int, width: int,
                       conditioning: str = "projection") -> StackedEnsemble:
    """One :class:`ConvDiscriminator` per seed, stacked: ``(y [K, B, 1, R, R], t [K, B]) → [K, B, 1]``."""
    return StackedEnsemble([_seeded(s, lambda: ConvDiscriminator(resolution, width, conditioning)) for s in seeds])


__all__ = ["CONV_CONDITIONINGS", "RESOLUTIONS", "ConvDiscriminator", "ConvGenerator", "conv_discriminator",
           "conv_generator", "to_digit_pixels", "upsample"]
