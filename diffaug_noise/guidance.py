r"""Noise-aware classifiers and classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs").

A classifier trained on *noised* inputs :math:`x_t`, conditioned on :math:`t`, is a t-conditioned
discriminator with a softmax head: it sees exactly what :class:`~diffaug_noise.DiffusionNoise` (or
any forward chain) produces. Its gradient steers a diffusion sampler towards class :math:`y`:

- ancestral sampling (ADM's Algorithm 1): :math:`\mu \leftarrow \mu + s\,\Sigma\,\nabla_{x_t}\log p_\phi(y \mid x_t)`;
- DDIM (Algorithm 2):
  :math:`\hat\epsilon \leftarrow \hat\epsilon - \sqrt{1-\bar\alpha_t}\, s\,\nabla_{x_t}\log p_\phi(y \mid x_t)`.

:class:`AncestralChain` is the DDPM chain of one of this library's beta schedules, with the
pieces a guided ancestral sampler needs.

The scale :math:`s` trades diversity for fidelity (the paper's Fig. 4): :math:`s = 0` is the
unguided model, larger :math:`s` samples from :math:`\propto p(x)\,p(y \mid x)^s`.

Example:
    >>> import torch
    >>> from diffaug_noise import DiffusionNoise
    >>> classifier = lambda x, t: torch.stack([x.sum(1), -x.sum(1)], dim=1)   # logits of 2 classes
    >>> loss = noisy_classifier_loss(classifier, DiffusionNoise(), torch.randn(8, 2), torch.zeros(8, dtype=torch.long))
    >>> g = classifier_gradient(classifier, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
    ...                         torch.tensor([0, 0, 1]), scale=2.0)
    >>> g.tolist()   # d/dx log softmax: class 0 pulls towards +x, class 1 towards -x
    [[2.0, 2.0], [2.0, 2.0], [-2.0, -2.0]]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .schedules import beta_schedule, diffusion_tables, posterior_variance


def noisy_classifier_loss(classifier, noise, x: torch.Tensor, y: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy of ``classifier(x_t, t)`` on noised inputs ``x_t`` of ``x`` with labels ``y``.

    ``noise`` is a :class:`~diffaug_noise.DiffusionNoise` (``x_t, t = noise(x)``) or a forward chain
    with ``T`` and ``q_sample(x0, t, generator)`` (e.g. :class:`~diffaug_noise.ddgan.DenoisingChain`),
    whose ``t`` is drawn uniformly from ``1..T``.
    """
    if hasattr(noise, "q_sample"):
        t = torch.randint(1, noise.T + 1, (x.shape[0],), device=x.device, generator=generator)
        x_t = noise.q_sample(x, t, generator=generator)
    else:
        x_t, t = noise(x, generator=generator)
    return F.cross_entropy(classifier(x_t, t), y)


def classifier_gradient(classifier, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                        scale: float = 1.0) -> torch.Tensor:
    r""":math:`s\,\nabla_{x_t} \log \mathrm{softmax}(\mathrm{classifier}(x_t, t))_y`, per sample; no graph is left
    behind.

    The classifier's parameters get no gradient, and ``x_t`` is not modified.
    """
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_probs = F.log_softmax(classifier(x, t), dim=-1)
        selected = log_probs.gather(1, y.view(-1, 1)).sum()  # samples are independent: the sum's gradient is per sample
        (grad,) = torch.autograd.grad(selected, x)
    return scale * grad


def condition_mean(mean: torch.Tensor, variance: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""Guided mean of an ancestral step: :math:`\mu + \Sigma\,g` (``gradient`` already scaled by :math:`s`)."""
    return mean + variance * gradient


def condition_eps(eps: torch.Tensor, sqrt_one_minus_abar: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    r"""Guided noise prediction for DDIM: :math:`\hat\epsilon - \sqrt{1-\bar\alpha_t}\,g` (``gradient`` already
    scaled)."""
    return eps - sqrt_one_minus_abar * gradient


class AncestralChain(nn.Module):
    r"""DDPM's forward chain over ``T`` steps of a named beta schedule, and its ancestral reverse step.

    With :math:`\alpha_t = 1-\beta_t`, :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`:
    :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`, and from a noise prediction
    :math:`\hat\epsilon`, the reverse step's mean and variance (Ho et al. 2020)
    :math:`\mu = (x_t - \beta_t \hat\epsilon / \sqrt{1-\bar\alpha_t}) / \sqrt{\alpha_t}`,
    :math:`\tilde\beta_t = \beta_t (1-\bar\alpha_{t-1}) / (1-\bar\alpha_t)` (0 at ``t = 1``). Float64
    tables as buffers; coefficients gathered by ``t`` in ``x``'s dtype.

    Args:
        schedule: a name of :data:`diffaug_noise.SCHEDULES` (``cosine`` reaches :math:`\bar\alpha_T \approx 0`).
        T: number of steps, >= 1.

    Example:
        >>> chain = AncestralChain("cosine", T=100)
        >>> x0 = torch.ones(4, 2)
        >>> t = torch.tensor([1, 10, 50, 100])
        >>> eps = torch.randn(4, 2)
        >>> mean, var = chain.mean_variance(chain.q_sample(x0, t, noise=eps), eps, t)   # the true noise
        >>> var[0].item(), mean.shape
        (0.0, torch.Size([4, 2]))
    """

    def __init__(self, schedule: str = "cosine", T: int = 100):
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1; got {T!r}")
        self.T = T
        betas = beta_schedule(schedule, T)
        sqrt_abar, sqrt_one_minus_abar = diffusion_tables(betas)  # the core's tables of the forward chain
        self.register_buffer("betas", torch.cat([torch.zeros(1, dtype=torch.float64), betas]))  # index 0: no step
        self.register_buffer("sqrt_abar", sqrt_abar)
        self.register_buffer("sqrt_one_minus_abar", sqrt_one_minus_abar)
        self.register_buffer("posterior_variance", posterior_variance(betas))

    def _at(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return table[t].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (``noise`` drawn if not given)."""
        if noise is None:
            noise = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
        return self._at(self.sqrt_abar, t, x0) * x0 + self._at(self.sqrt_one_minus_abar, t, x0) * noise

    def mean_variance(self, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the reverse step ``x_t -> x_{t-1}`` given the noise prediction ``eps``."""
        beta = self._at(self.betas, t, x_t)
        mean = (x_t - beta / self._at(self.sqrt_one_minus_abar, t, x_t) * eps) / (1 - beta).sqrt()
        return mean, self._at(self.posterior_variance, t, x_t)
