"""Conditioning a discriminator on the diffusion timestep: ``D(y, t)``.

Three ways, from least to most invasive for an existing D:

- :class:`TimestepLabel`: append an embedding of ``t`` to D's class-label input (for Ds that
  already take a label, like StyleGAN2's, widen ``c_dim`` by ``embedding.dim``).
- :class:`TimestepProjectionHead`: a projection-discriminator term (Miyato & Koyama, 2018)
  ``logit = w·h + b + <V e(t), h>`` on D's penultimate features ``h``.
- :class:`TimestepConditionedDiscriminator`: wrap a feature extractor (D without its last
  layer) into a complete ``D(y, t)`` with that head.
- :class:`AdaGroupNorm`: inside D's (or a classifier's) layers, a GroupNorm whose scale and shift
  come from the embedding of ``t`` (ADM's AdaGN).

:data:`CONDITIONINGS` names them (``embedding``, ``raw``, ``label``, ``projection``, ``film``): the
adapters and the demos pick a method by name from there.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .registry import Registry


class TimestepEmbedding(nn.Module):
    r"""Sinusoidal embedding of ``t`` followed by a two-layer MLP.

    .. math::
        \omega_j = \text{max\_period}^{-j/h},\ j = 0..h-1,\ h = \text{dim}/2, \qquad
        e(t) = \mathrm{MLP}\big([\cos(t\omega), \sin(t\omega)]\big)

    Args:
        dim: embedding width, even, >= 2.
        max_period: longest period of the sinusoids (in timesteps).
        mlp: follow the sinusoids by ``Linear(dim, dim) → SiLU → Linear(dim, dim)``.

    Example:
        >>> emb = TimestepEmbedding(dim=16)
        >>> emb(torch.tensor([0, 10, 999])).shape
        torch.Size([3, 16])
    """

    def __init__(
        self,
        dim: int = 128,
        max_period: float = 10000.0,
        mlp: bool = True,
    ):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2; got {dim!r}")
        if not (max_period > 1):
            raise ValueError(f"max_period must be > 1; got {max_period!r}")
        self.dim = dim
        half = dim // 2
        frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("frequencies", frequencies)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim)) if mlp else nn.Identity()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` of any shape ``[*]`` (int or float) into ``[*, dim]``."""
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"t must be a torch.Tensor; got {type(t).__name__}")
        angles = t.to(self.frequencies.dtype).unsqueeze(-1) * self.frequencies
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class RawTimestep(nn.Module):
    """``t`` itself as a ``[B, 1]`` float, for a label input (the official Diffusion-GAN fork's ``t_dim = 1``).

    Example:
        >>> RawTimestep()(torch.tensor([0, 7])).tolist()
        [[0.0], [7.0]]
    """

    dim = 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.float().view(-1, 1)


class TimestepLabel(nn.Module):
    """Concatenate an embedding of ``t`` to a class label: ``c' = [c, e(t)]``.

    Args:
        embedding: the :class:`TimestepEmbedding` (or any module ``[B] -> [B, dim]`` with ``.dim``).

    Example:
        >>> label = TimestepLabel(TimestepEmbedding(dim=8))
        >>> label(torch.zeros(4, 10), torch.tensor([1, 2, 3, 4])).shape
        torch.Size([4, 18])
        >>> label(None, torch.tensor([1, 2])).shape   # unconditional D: the label is e(t) alone
        torch.Size([2, 8])
    """

    def __init__(self, embedding: nn.Module):
        super().__init__()
        self.embedding = embedding

    def forward(self, c: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
        e = self.embedding(t)
        if c is None or c.shape[-1] == 0:
            return e
        if c.shape[0] != e.shape[0]:
            raise ValueError(f"c and t must share the batch size; got c {tuple(c.shape)} and t {tuple(t.shape)}")
        return torch.cat([c.to(e.dtype), e], dim=1)


class TimestepProjectionHead(nn.Module):
    r"""Projection-discriminator output layer conditioned on ``t``.

    .. math::
        D(h, t) = w^\top h + b + \langle V e(t),\, h \rangle

    with ``h`` D's penultimate features ``[B, feature_dim]``, ``e`` a :class:`TimestepEmbedding`
    and ``V`` a learned ``feature_dim × embed_dim`` matrix.

    Args:
        feature_dim: width of ``h``.
        embed_dim: width of the timestep embedding.

    Example:
        >>> head = TimestepProjectionHead(feature_dim=32, embed_dim=16)
        >>> head(torch.randn(4, 32), torch.tensor([0, 5, 50, 500])).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        feature_dim: int,
        embed_dim: int = 128,
    ):
        super().__init__()
        self.embedding = TimestepEmbedding(embed_dim)
        self.linear = nn.Linear(feature_dim, 1)
        self.projection = nn.Linear(embed_dim, feature_dim, bias=False)

    def forward(self, features: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2:
            raise ValueError(f"features must have shape [B, feature_dim]; got {tuple(features.shape)}")
        if t.shape != features.shape[:1]:
            raise ValueError(f"t must have shape [B] = [{features.shape[0]}]; got {tuple(t.shape)}")
        return self.linear(features) + (self.projection(self.embedding(t)) * features).sum(dim=1, keepdim=True)


class TimestepConditionedDiscriminator(nn.Module):
    """``D(y, t) = head(backbone(y).flatten(1), t)``: an existing feature extractor made t-aware.

    ``t = None`` means clean samples (``t = 0``), as the adapters' discriminators read it (e.g. a
    network summary, or judging real images outside training).

    Args:
        backbone: D without its final linear layer; maps ``y`` to features of any shape ``[B, ...]``.
        feature_dim: number of backbone features per sample (after flattening).
        embed_dim: width of the timestep embedding.

    Example:
        >>> backbone = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2))
        >>> D = TimestepConditionedDiscriminator(backbone, feature_dim=64)
        >>> D(torch.randn(5, 2), torch.arange(5)).shape
        torch.Size([5, 1])
        >>> torch.equal(D(torch.ones(3, 2)), D(torch.ones(3, 2), torch.zeros(3, dtype=torch.int64)))  # clean
        True
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        embed_dim: int = 128,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = TimestepProjectionHead(feature_dim, embed_dim)

    def forward(self, y: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        features = self.backbone(y).flatten(1)
        if t is None:
            t = torch.zeros(features.shape[0], dtype=torch.int64, device=features.device)
        return self.head(features, t)


class AdaGroupNorm(nn.Module):
    r"""ADM's adaptive group normalisation (AdaGN): GroupNorm, then a scale and shift predicted from a condition.

    .. math::
        \mathrm{AdaGN}(h, c) = (1 + \gamma(c)) \odot \mathrm{GroupNorm}(h) + \beta(c), \qquad
        [\gamma, \beta] = W c + b

    with ``c`` a timestep (and class) embedding. ``W`` and ``b`` start at zero, so a fresh layer
    *is* GroupNorm, and each noise level learns its own feature scaling; usable in discriminators
    and noise-aware classifiers alike (Dhariwal & Nichol 2021, Sec. 3).

    Args:
        num_groups: GroupNorm's groups; must divide ``channels``.
        channels: feature channels of ``h`` (``[B, channels, ...]``).
        cond_dim: width of the condition ``c`` (``[B, cond_dim]``).

    Example:
        >>> norm = AdaGroupNorm(num_groups=4, channels=16, cond_dim=8)
        >>> h, c = torch.randn(2, 16, 5, 5), torch.randn(2, 8)
        >>> torch.allclose(norm(h, c), nn.functional.group_norm(h, 4), atol=1e-6)   # zero-initialised
        True
    """

    def __init__(self, num_groups: int, channels: int, cond_dim: int):
        super().__init__()
        if channels % num_groups:
            raise ValueError(f"num_groups must divide channels; got {num_groups} groups for {channels} channels")
        self.norm = nn.GroupNorm(num_groups, channels)
        self.modulation = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if cond.ndim != 2 or cond.shape[0] != h.shape[0]:
            raise ValueError(f"cond must have shape [B, cond_dim] with B = {h.shape[0]}; got {tuple(cond.shape)}")
        scale, shift = self.modulation(cond).view(h.shape[0], 2, h.shape[1], *([1] * (h.ndim - 2))).unbind(1)
        return self.norm(h) * (1 + scale) + shift


CONDITIONINGS = Registry("t-conditioning method", contract=nn.Module)  # name -> the module that makes D depend on t
for _name, _module in (("embedding", TimestepEmbedding), ("raw", RawTimestep), ("label", TimestepLabel),
                       ("projection", TimestepProjectionHead), ("film", AdaGroupNorm)):
    CONDITIONINGS.register(_name, _module)
