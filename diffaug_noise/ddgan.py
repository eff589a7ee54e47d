r"""Denoising Diffusion GAN (Xiao, Kreis & Vahdat, ICLR 2022): the same forward chain, used to denoise.

Diffusion-GAN noises D's inputs to stabilise a one-step GAN; DDGAN instead models each of a few
large denoising steps with a conditional GAN. With ``T`` steps (4 in the paper) and
:math:`\bar\alpha_t = \prod_{s\le t}(1-\beta_s)`:

- forward: :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I)` and
  :math:`q(x_{t+1} \mid x_t) = \mathcal N(\sqrt{1-\beta_{t+1}}\,x_t,\ \beta_{t+1} I)`;
- posterior: :math:`q(x_{t-1} \mid x_t, x_0) = \mathcal N(c_1(t)\,x_0 + c_2(t)\,x_t,\ \tilde\beta_t I)` with
  :math:`c_1 = \beta_t\sqrt{\bar\alpha_{t-1}}/(1-\bar\alpha_t)`,
  :math:`c_2 = (1-\bar\alpha_{t-1})\sqrt{1-\beta_t}/(1-\bar\alpha_t)`,
  :math:`\tilde\beta_t = \beta_t(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)`;
- model: G(x_t, z, t) predicts :math:`x_0`, and :math:`x_{t-1} \sim q(x_{t-1} \mid x_t, \hat x_0)`;
  D(x_{t-1}, x_t, t) tells true pairs from generated ones (:class:`PairDiscriminator`).

The betas come from a continuous variance on :math:`s_k = \epsilon + (1-\epsilon)\,k/T`,
:math:`\epsilon = 10^{-3}`, :math:`k = 0..T`, as in the official code (NVlabs/denoising-diffusion-gan,
``train_ddgan.py``): ``vp``, :math:`\sigma^2(s) = 1 - e^{-\beta_{min} s - (\beta_{max}-\beta_{min}) s^2/2}`,
or ``geometric``, :math:`\sigma^2(s) = \beta_{min}(\beta_{max}/\beta_{min})^s`; then
:math:`\beta_k = 1 - (1-\sigma^2(s_k))/(1-\sigma^2(s_{k-1}))`, :math:`k = 1..T`. Here :math:`x_0` is the data,
:math:`\bar\alpha_0 = 1`, and ``t`` runs over ``1..T`` for the posterior and the generator
(the official code indexes the same steps ``0..T-1`` and prepends a dummy beta of 1e-8:
:meth:`DenoisingChain.reference_tables` returns its arrays under its names and indexing; the
quirks are listed in docs/ddgan.md). Tables are float64 buffers on the module's device; the
coefficients are gathered by ``t`` and cast to ``x``'s dtype, with no host round-trip.

Example:
    >>> chain = DenoisingChain(T=4)
    >>> x0 = torch.zeros(8, 3, 16, 16)
    >>> x_t, x_next = chain.q_sample_pairs(x0, torch.full((8,), 1))
    >>> x_prev = chain.sample_posterior(x0, x_next, torch.full((8,), 2))
    >>> x_prev.shape, round(float(chain.alphas_cumprod[4]), 6)
    (torch.Size([8, 3, 16, 16]), 4.3e-05)
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from torch import nn

from .conditioning import TimestepConditionedDiscriminator
from .schedules import alphas_cumprod, posterior_variance

# of the continuous variance the betas come from (the core's SCHEDULES are others)
VARIANCE_SCHEDULES = ("vp", "geometric")
EPS_SMALL = 1e-3  # the official code's smallest diffusion time
DUMMY_BETA = 1e-8  # the official code's extra first beta
LOG_VARIANCE_FLOOR = 1e-20  # the official clip of the posterior variance before its log


def continuous_variance(s: torch.Tensor, schedule: str, beta_min: float, beta_max: float) -> torch.Tensor:
    r"""The marginal variance :math:`\sigma^2(s)` of the continuous schedule at times ``s`` in [0, 1] (float64)."""
    s = s.double()
    if schedule == "vp":
        return 1.0 - torch.exp(-beta_min * s - 0.5 * (beta_max - beta_min) * s ** 2)
    return beta_min * (beta_max / beta_min) ** s


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


class DenoisingChain(nn.Module):
    """DDGAN's ``T``-step forward chain, its Gaussian posterior and the reverse sampling loop.

    Args:
        T: number of denoising steps (generator calls per sample), >= 1.
        beta_min: the continuous schedule's smallest rate (``vp``) or variance (``geometric``), > 0.
        beta_max: its largest, > ``beta_min`` (``geometric``: < 1, a variance).
        schedule: ``"vp"`` (the paper's) or ``"geometric"``.
    """

    def __init__(self, T: int = 4, beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "vp"):
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1 (denoising steps); got {T!r}")
        if schedule not in VARIANCE_SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(VARIANCE_SCHEDULES)}")
        for name, value in (("beta_min", beta_min), ("beta_max", beta_max)):
            if isinstance(value, bool) or not isinstance(value, Real) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        if not beta_min < beta_max:
            raise ValueError(f"beta_min must be < beta_max; got {beta_min} and {beta_max}")
        if schedule == "geometric" and beta_max >= 1:
            raise ValueError(f"geometric: beta_max is the largest variance and must be < 1; got {beta_max}")
        self.T, self.beta_min, self.beta_max, self.schedule = T, float(beta_min), float(beta_max), schedule

        s = EPS_SMALL + (1 - EPS_SMALL) * torch.arange(T + 1, dtype=torch.float64) / T
        keep = 1.0 - continuous_variance(s, schedule, beta_min, beta_max)
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), 1.0 - keep[1:] / keep[:-1]])  # betas[0]: no step
        if not bool(((betas[1:] > 0) & (betas[1:] < 1)).all()):
            raise ValueError(f"beta_min={beta_min}, beta_max={beta_max} give betas outside (0, 1) over {T} steps: "
                             f"{betas[1:].tolist()}; choose a schedule whose variance grows and stays below 1")
        abar = alphas_cumprod(betas[1:])  # the core's tables of the forward chain, t = 0..T
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        one_minus = (1.0 - abar).clamp(min=torch.finfo(torch.float64).tiny)  # index 0 only: 0 there
        step = torch.arange(T + 1) > 0
        tables = {
            "betas": betas,
            "alphas_cumprod": abar,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - abar).sqrt(),
            "sqrt_alphas": (1.0 - betas).sqrt(),
            "sqrt_betas": betas.sqrt(),
            "posterior_mean_coef1": torch.where(step, betas * abar_prev.sqrt() / one_minus, 0.0),
            "posterior_mean_coef2": torch.where(step, (1.0 - abar_prev) * (1.0 - betas).sqrt() / one_minus, 0.0),
            "posterior_variance": posterior_variance(betas[1:]),
        }
        tables["posterior_log_variance_clipped"] = tables["posterior_variance"].clamp(min=LOG_VARIANCE_FLOOR).log()
        for name, table in tables.items():
            self.register_buffer(name, table)

    def _check_t(self, t: torch.Tensor, x: torch.Tensor, low: int, high: int, what: str) -> None:
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"t must be an integer tensor; got {type(t).__name__} {getattr(t, 'dtype', '')}")
        if x.ndim == 0 or t.shape != x.shape[:1]:
            raise ValueError(f"t must have shape [B] = [{x.shape[0] if x.ndim else '?'}] for x of shape "
                             f"{tuple(x.shape)}; got {tuple(t.shape)}")
        # On the CPU the range check is free; on CUDA it would cost a host sync per call, and an index
        # outside the table fails in the gather kernel anyway.
        if t.device.type == "cpu" and t.numel() and (int(t.min()) < low or int(t.max()) > high):
            raise ValueError(f"{what} needs t in {low}..{high} (T = {self.T}); got values in "
                             f"{int(t.min())}..{int(t.max())}")

    def _at(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped to broadcast against ``x`` ``[B, ...]``, in ``x``'s dtype and device."""
        return table.to(x.device)[t.to(x.device)].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` for ``t`` in ``0..T`` (``t = 0`` returns ``x0``)."""
        self._check_t(t, x0, 0, self.T, "q_sample")
        noise = _randn_like(x0, generator)
        return (self._at(self.sqrt_alphas_cumprod, t, x0) * x0
                + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def q_sample_pairs(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None):
        """Draw ``(x_t, x_{t+1})`` for ``t`` in ``0..T-1``: ``x_t ~ q(x_t | x_0)``, then one forward step."""
        self._check_t(t, x0, 0, self.T - 1, "q_sample_pairs")
        x_t = self.q_sample(x0, t, generator)
        x_next = (self._at(self.sqrt_alphas, t + 1, x0) * x_t
                  + self._at(self.sqrt_betas, t + 1, x0) * _randn_like(x0, generator))
        return x_t, x_next

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)`` for ``t`` in ``1..T``."""
        self._check_t(t, x_t, 1, self.T, "q_posterior")
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x0 + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, self._at(self.posterior_variance, t, x_t), self._at(self.posterior_log_variance_clipped, t, x_t)

    def sample_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                         generator: torch.Generator | None = None):
        """Draw ``x_{t-1} ~ q(x_{t-1} | x_t, x_0)``; at ``t = 1`` the variance is 0 and ``x_0`` comes back exactly."""
        mean, variance, _ = self.q_posterior(x0, x_t, t)
        return mean + variance.sqrt() * _randn_like(x_t, generator)

    @torch.no_grad()
    def sample(self, model, x_T: torch.Tensor, z_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The reverse chain from ``x_T``: ``T`` calls ``x0_hat = model(x_t, z, t)``, ``z ~ N(0, I)`` of width
        ``z_dim``."""
        x = x_T
        for step in range(self.T, 0, -1):
            t = torch.full((x.shape[0],), step, dtype=torch.int64, device=x.device)
            z = torch.randn(x.shape[0], z_dim, device=x.device, dtype=x.dtype, generator=generator)
            x = self.sample_posterior(model(x, z, t), x, t, generator)
        return x

    def reference_tables(self) -> dict[str, np.ndarray]:
        """The official code's coefficient arrays (float32) under its names, with its indexing.

        ``a_s``, ``sigmas``, ``a_s_cum``, ``sigmas_cum`` have ``T + 1`` entries, the first for the dummy
        beta 1e-8 (``Diffusion_Coefficients``); the posterior arrays have ``T`` entries, official index
        ``i`` being this chain's ``t = i + 1`` (``Posterior_Coefficients``). Recomputed here with the
        official formulas and precision (float32 after the betas, numpy's cumprod), not copied.
        """
        s = EPS_SMALL + (1 - EPS_SMALL) * torch.arange(self.T + 1, dtype=torch.float64) / self.T
        keep = 1.0 - continuous_variance(s, self.schedule, self.beta_min, self.beta_max)
        betas = torch.cat([torch.tensor([DUMMY_BETA], dtype=torch.float64), 1.0 - keep[1:] / keep[:-1]]).float()
        a_s = torch.sqrt(1 - betas)
        a_s_cum = torch.from_numpy(np.cumprod(a_s.numpy()))
        post_betas = betas[1:]
        alphas_cumprod = torch.cumprod(1 - post_betas, 0)
        alphas_cumprod_prev = torch.cat([torch.ones(1), alphas_cumprod[:-1]])
        posterior_variance = post_betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        out = {
            "a_s": a_s,
            "sigmas": betas ** 0.5,
            "a_s_cum": a_s_cum,
            "sigmas_cum": torch.sqrt(1 - a_s_cum ** 2),
            "posterior_mean_coef1": post_betas * torch.sqrt(alphas_cumprod_prev) / (1 - alphas_cumprod),
            "posterior_mean_coef2": (1 - alphas_cumprod_prev) * torch.sqrt(1 - post_betas) / (1 - alphas_cumprod),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": torch.log(posterior_variance.clamp(min=LOG_VARIANCE_FLOOR)),
        }
        return {name: value.numpy() for name, value in out.items()}

    def extra_repr(self) -> str:
        return f"T={self.T}, beta_min={self.beta_min:g}, beta_max={self.beta_max:g}, schedule={self.schedule!r}"


class PairDiscriminator(nn.Module):
    """DDGAN's ``D(x_{t-1}, x_t, t)``: an existing D body on the pair concatenated along dim 1, conditioned on ``t``.

    Args:
        backbone: D without its last layer, taking the pair ``[B, 2C, ...]`` (images: channels; vectors: features).
        feature_dim: number of backbone features per sample (after flattening).
        embed_dim: width of the timestep embedding.

    Example:
        >>> body = nn.Sequential(nn.Linear(4, 32), nn.LeakyReLU(0.2))
        >>> D = PairDiscriminator(body, feature_dim=32)
        >>> D(torch.randn(5, 2), torch.randn(5, 2), torch.tensor([1, 2, 3, 4, 1])).shape
        torch.Size([5, 1])
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, embed_dim: int = 128):
        super().__init__()
        self.D = TimestepConditionedDiscriminator(backbone, feature_dim, embed_dim)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_prev.shape != x_t.shape:
            raise ValueError(f"x_prev and x_t must have one shape; got {tuple(x_prev.shape)} and {tuple(x_t.shape)}")
        return self.D(torch.cat([x_prev, x_t], dim=1), t)
