"""The law of the diffusion timestep ``t`` over ``0..T``."""
from __future__ import annotations

import torch

T_DISTS = ("priority", "uniform")
CLEAN_RULES = ("fixed", "projected_gan")

# The official projected-gan fork keeps a pool of 64 timesteps of which min(round(64 p), 48)
# are drawn from 1..T and the rest are 0 (pg_modules/diffusion.py, Diffusion.update_T).
_PG_POOL = 64
_PG_MAX_NOISED = 48


def projected_gan_clean_prob(p: float) -> float:
    r"""Share of samples the official projected-gan fork leaves clean at strength ``p``.

    ``P(t = 0) = 1 - min(round(64 p), 48) / 64`` (Python's round: half to even).

    Example:
        >>> projected_gan_clean_prob(0.0), projected_gan_clean_prob(0.5), projected_gan_clean_prob(1.0)
        (1.0, 0.5, 0.25)
    """
    return 1.0 - min(round(_PG_POOL * float(p)), _PG_MAX_NOISED) / _PG_POOL


def timestep_law(
    T: int,  # current maximum timestep, >= 1
    t_dist: str = "priority",  # "priority" (P(t) proportional to t - priority_offset) or "uniform"
    clean_prob: float = 0.0,  # P(t = 0), in [0, 1]
    priority_offset: int = 0,  # 0: the paper's P(t) ∝ t; 1: the official code's weights t - 1
) -> torch.Tensor:
    r"""Return the float64 law of ``t`` over ``0..T`` (length ``T+1``).

    .. math::
        P(0) = c, \qquad P(k) = (1 - c)\, \frac{w_k}{\sum_{j=1}^{T} w_j},\quad k = 1..T,

    with ``w_k = k - priority_offset`` for ``priority`` and ``w_k = 1`` for ``uniform``.

    Example:
        >>> timestep_law(3, "priority", clean_prob=0.5).tolist()
        [0.5, 0.08333333333333333, 0.16666666666666666, 0.25]
    """
    if t_dist not in T_DISTS:
        raise ValueError(f"unknown t_dist {t_dist!r}; choose one of {', '.join(T_DISTS)}")
    if not (0.0 <= float(clean_prob) <= 1.0):
        raise ValueError(f"clean_prob must lie in [0, 1]; got {clean_prob!r}")
    if priority_offset not in (0, 1):
        raise ValueError(f"priority_offset must be 0 (paper) or 1 (official code); got {priority_offset!r}")
    if t_dist == "priority" and T - priority_offset < 1:
        raise ValueError(
            f"priority weights t - {priority_offset} are all zero for T = {T}; use t_min >= {priority_offset + 1}"
        )
    k = torch.arange(1, T + 1, dtype=torch.float64)
    weights = k - priority_offset if t_dist == "priority" else torch.ones_like(k)
    law = torch.empty(T + 1, dtype=torch.float64)
    law[0] = float(clean_prob)
    law[1:] = (1.0 - float(clean_prob)) * weights / weights.sum()
    return law
