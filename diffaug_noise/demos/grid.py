"""The 25-Gaussians grid and its mode-coverage metrics (PacGAN's 2D-grid protocol)."""
from __future__ import annotations

import math

import torch


def grid_means(size: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """Means of a ``size x size`` grid centred on 0, ``spacing`` apart: ``[size**2, 2]``.

    Example:
        >>> grid_means(5, 2.0)[[0, 12, 24]].tolist()
        [[-4.0, -4.0], [0.0, 0.0], [4.0, 4.0]]
    """
    axis = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * spacing
    return torch.cartesian_prod(axis, axis)


def sample_grid(n: int, means: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points from the equal-weight mixture of ``N(mean, std^2 I)``."""
    idx = torch.randint(len(means), (n,), generator=generator)
    return means[idx] + std * torch.randn(n, 2, generator=generator)


def mode_metrics(
    samples: torch.Tensor,  # generated points [N, 2]
    means: torch.Tensor,  # mode centres [M, 2]
    std: float,  # the modes' standard deviation
    hq_stds: float = 3.0,  # a sample is high-quality within this many stds of its nearest mode
    min_count: int = 20,  # a mode is covered with at least this many high-quality samples
) -> dict:
    r"""Modes covered, share of high-quality samples and reverse KL of the mode histogram.

    Each sample is assigned to its nearest mode; it is high-quality (HQ) if within
    ``hq_stds * std`` of it. With ``n_m`` the HQ samples of mode ``m`` and ``q_m = n_m / sum n``,

    .. math::
        \text{covered} = \#\{m : n_m \ge \text{min\_count}\}, \qquad
        \mathrm{KL}(q \,\|\, U) = \sum_{m: q_m > 0} q_m \log(M q_m).

    Example:
        >>> means = grid_means(5, 2.0)
        >>> out = mode_metrics(means.repeat(20, 1), means, std=0.05)
        >>> out["modes_covered"], out["hq_share"], out["reverse_kl"]
        (25, 1.0, 0.0)
    """
    if samples.ndim != 2 or samples.shape[1] != means.shape[1]:
        raise ValueError(f"samples must have shape [N, {means.shape[1]}]; got {tuple(samples.shape)}")
    samples = samples.float()
    distance, nearest = torch.cdist(samples, means.float()).min(dim=1)
    hq = distance <= hq_stds * std
    counts = torch.bincount(nearest[hq], minlength=len(means))
    total_hq = int(counts.sum())
    reverse_kl = math.inf
    if total_hq:
        q = counts[counts > 0].double() / total_hq
        reverse_kl = float((q * (q * len(means)).log()).sum())
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "modes_hit": int((counts > 0).sum()),
        "hq_share": total_hq / len(samples),
        "reverse_kl": reverse_kl,
        "counts": counts.tolist(),
    }
