"""Beta schedules of the forward diffusion and the tables derived from them.

All maths here is float64 on the host: tables are rebuilt only when ``T`` changes,
never per call, so precision costs nothing on the hot path.
"""
from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "quad", "const", "jsd", "sigmoid", "cosine", "continuous_t")

_COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal (2021), as in the official code
_COSINE_MAX_BETA = 0.999  # clip that keeps abar_T > 0 for the cosine schedule
_CONTINUOUS_B_MIN = 0.1  # b_min of the continuous-time VP schedule (official code)
_CONTINUOUS_B_MAX = 5.0  # b_max of the continuous-time VP schedule (official code)


def beta_schedule(
    name: str,  # one of SCHEDULES
    T: int,  # number of diffusion steps, >= 1
    beta_start: float = 1e-4,  # first beta (linear, quad, sigmoid)
    beta_end: float = 2e-2,  # last beta (linear, quad, sigmoid); the constant of "const"
) -> torch.Tensor:
    r"""Return the betas ``beta_1..beta_T`` of a named schedule as a float64 tensor of length ``T``.

    With ``i = 0..T-1`` and ``lin(a, b)`` the ``T`` evenly spaced points from ``a`` to ``b``:

    - ``linear``: ``lin(beta_start, beta_end)``
    - ``quad``: ``lin(sqrt(beta_start), sqrt(beta_end))**2``
    - ``const``: ``beta_end`` everywhere
    - ``jsd``: ``1 / lin(T, 1)``, i.e. ``1/T, 1/(T-1), ..., 1`` (so ``abar_T = 0``)
    - ``sigmoid``: ``sigmoid(lin(-6, 6)) * (beta_end - beta_start) + beta_start``
    - ``cosine``: ``f(k) = cos((k/T + s)/(1+s) * pi/2)**2``, ``abar_k = f(k)/f(0)`` for ``k = 0..T``,
      ``beta_k = 1 - abar_k/abar_{k-1}`` clipped to ``[0, 0.999]``, ``s = 0.008`` (Nichol & Dhariwal)
    - ``continuous_t``: ``beta_k = 1 - exp(-b_min/T - (b_max-b_min)(2k-1)/(2T^2))``, ``k = 1..T``,
      ``b_min = 0.1``, ``b_max = 5``; ignores ``beta_start``/``beta_end``

    Example:
        >>> beta_schedule("linear", 3, beta_start=0.1, beta_end=0.3).tolist()
        [0.1, 0.2, 0.3]
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1; got {T!r}")
    for label, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not (0.0 < float(value) < 1.0):
            raise ValueError(f"{label} must lie in the open interval (0, 1); got {value!r}")

    f64 = torch.float64
    if name == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=f64)
    if name == "quad":
        return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=f64) ** 2
    if name == "const":
        return torch.full((T,), float(beta_end), dtype=f64)
    if name == "jsd":
        return 1.0 / torch.linspace(T, 1, T, dtype=f64)
    if name == "sigmoid":
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=f64)) * (beta_end - beta_start) + beta_start
    if name == "cosine":
        steps = T + 1
        x = torch.linspace(0, steps, steps, dtype=f64)
        abar = torch.cos(((x / steps) + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi * 0.5) ** 2
        abar = abar / abar[0]
        return (1 - abar[1:] / abar[:-1]).clamp(0.0, _COSINE_MAX_BETA)
    k = torch.arange(1, T + 1, dtype=f64)  # continuous_t
    b_min, b_max = _CONTINUOUS_B_MIN, _CONTINUOUS_B_MAX
    return 1 - torch.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * k - 1) / T**2)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    r"""``abar_t = prod_{s<=t} (1 - beta_s)`` over ``t = 0..T`` (length ``T+1``, ``abar_0 = 1``), in float64.

    Example:
        >>> alphas_cumprod(torch.tensor([0.5, 0.5], dtype=torch.float64)).tolist()
        [1.0, 0.5, 0.25]
    """
    betas = betas.to(torch.float64)
    if betas.ndim != 1 or betas.numel() < 1:
        raise ValueError(f"betas must be a non-empty 1-D tensor; got shape {tuple(betas.shape)}")
    if not bool(((betas >= 0) & (betas <= 1)).all()):  # also NaN
        raise ValueError(f"betas must lie in [0, 1]; got values from {float(betas.min())} to {float(betas.max())}")
    return torch.cat([betas.new_ones(1), torch.cumprod(1.0 - betas, dim=0)])


def diffusion_tables(betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Return ``(sqrt(abar), sqrt(1 - abar))`` over ``t = 0..T`` (length ``T+1``, index 0 = clean).

    ``abar_0 = 1`` and ``abar_t = prod_{s<=t} (1 - beta_s)`` (:func:`alphas_cumprod`), in float64.

    Example:
        >>> a, b = diffusion_tables(torch.tensor([0.19], dtype=torch.float64))
        >>> [round(v, 6) for v in a.tolist()], [round(v, 6) for v in b.tolist()]
        ([1.0, 0.9], [0.0, 0.43589])
    """
    abar = alphas_cumprod(betas)
    return abar.sqrt(), (1.0 - abar).clamp_min(0.0).sqrt()


def posterior_variance(betas: torch.Tensor) -> torch.Tensor:
    r"""The variance of ``q(x_{t-1} | x_t, x_0)`` over ``t = 0..T``: ``beta_t (1 - abar_{t-1}) / (1 - abar_t)``, 0 at
    ``t = 0``.

    The reverse step's variance of DDPM (Ho et al. 2020) and of Denoising Diffusion GAN's posterior;
    0 at ``t = 1`` too, where ``x_0`` comes back exactly.

    Example:
        >>> [round(v, 6) for v in posterior_variance(torch.tensor([0.1, 0.2], dtype=torch.float64)).tolist()]
        [0.0, 0.0, 0.071429]
    """
    abar = alphas_cumprod(betas)
    betas = torch.cat([betas.new_zeros(1, dtype=torch.float64), betas.to(torch.float64)])
    one_minus = (1.0 - abar).clamp(min=torch.finfo(torch.float64).tiny)  # 0 at t = 0 only
    return torch.where(torch.arange(len(abar)) > 0, betas * (1.0 - torch.cat([abar[:1], abar[:-1]])) / one_minus, 0.0)
