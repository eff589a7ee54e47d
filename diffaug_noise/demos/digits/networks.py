"""G and a t-conditioned D for 8x8 digits, as ensembles: ``K`` independent runs in one batched pass.

Member ``k`` of every network is one (method, seed) run; inputs are ``[K, B, ...]``. ``D`` sees
``t`` through fixed sinusoids of ``log(1 + t)`` (smooth in ``t``, distinct at small ``t``; the toy
does the same) and one of two conditionings of its hidden layers:

- ``projection``: a projection-discriminator head (Miyato & Koyama 2018), as
  :class:`~diffaug_noise.TimestepProjectionHead`: ``D = w·h + b + <V e(t), h>``.
- ``film``: ADM's AdaGN idea on an MLP: every hidden layer becomes
  ``a(W x + c) * (1 + γ_l(t)) + β_l(t)`` with ``γ, β`` predicted from ``e(t)``, so each noise
  level gets its own feature scaling; plus the projection head.

Runs without diffusion feed ``t = 0`` to the same D, so every method trains the same network.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...conditioning import TimestepEmbedding
from ..ensemble import EnsembleMLP

CONDITIONINGS = ("projection", "film")  # the core's CONDITIONINGS names, batched over the ensemble's members here
_leaky = functools.partial(F.leaky_relu, negative_slope=0.2)


class EnsembleGenerator(nn.Module):
    """``z [K, B, z_dim] → images [K, B, 64]`` in [-1, 1]: ReLU MLP ``z_dim → 128 → 256 → 64``, then tanh."""

    def __init__(self, seeds: list[int], z_dim: int, pixels: int = 64):
        super().__init__()
        self.mlp = EnsembleMLP(seeds, [z_dim, 128, 256, pixels])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(z))


class EnsembleDiscriminator(nn.Module):
    """``D(y [K, B, 64], t [K, B]) → logits [K, B, 1]``: LeakyReLU MLP ``64 → 256 → 256`` conditioned on ``t``.

    Args:
        seeds: one initialisation seed per member.
        t_max: the largest ``t`` the noise can draw (scales the ``log(1 + t)`` features to [0, π]).
        conditioning: ``"projection"`` or ``"film"`` (see the module docstring).
        embed_dim: width of the timestep embedding.
        pixels: input width.
    """

    hidden = 256

    def __init__(self, seeds: list[int], t_max: int, conditioning: str = "projection", embed_dim: int = 32,
                 pixels: int = 64):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
        self.conditioning = conditioning
        self.t_scale = math.pi / math.log1p(t_max)
        self.sinusoids = TimestepEmbedding(embed_dim, max_period=10.0, mlp=False)
        self.embed = EnsembleMLP([s + 1 for s in seeds], [embed_dim, embed_dim, embed_dim], activation=F.silu)
        self.layers = nn.ModuleList([EnsembleMLP([s + 2 + i for s in seeds], [n_in, self.hidden])
                                     for i, n_in in enumerate((pixels, self.hidden))])
        if conditioning == "film":
            self.film = EnsembleMLP([s + 4 for s in seeds], [embed_dim, 2 * self.hidden * len(self.layers)])
        self.out = EnsembleMLP([s + 5 for s in seeds], [self.hidden, 1])
        self.projection = EnsembleMLP([s + 6 for s in seeds], [embed_dim, self.hidden])

    def forward(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.embed(self.sinusoids(torch.log1p(t.float()) * self.t_scale))
        if self.conditioning == "film":
            scales_shifts = self.film(F.silu(e)).chunk(2 * len(self.layers), dim=-1)
        h = y
        for i, layer in enumerate(self.layers):
            h = _leaky(layer(h))
            if self.conditioning == "film":
                h = h * (1 + scales_shifts[2 * i]) + scales_shifts[2 * i + 1]
        return self.out(h) + (self.projection(e) * h).sum(dim=-1, keepdim=True)
