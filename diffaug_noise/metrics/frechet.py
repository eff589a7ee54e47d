r"""Fréchet distance between Gaussians fitted to two feature sets (the "F" of FID).

.. math::
    d^2 = \|\mu_1 - \mu_2\|^2 + \mathrm{tr}\,\Sigma_1 + \mathrm{tr}\,\Sigma_2
          - 2\,\mathrm{tr}\big(\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}\big)^{1/2}

(Heusel et al. 2017, with Dowson & Landau's closed form). The trace of the matrix square root is
taken from the eigenvalues of the symmetric ``Σ1^{1/2} Σ2 Σ1^{1/2}`` (equal to those of ``Σ1 Σ2``),
in float64, so no complex parts or ``sqrtm`` iterations are involved. Covariances are unbiased
(``N - 1``), as torch-fidelity's and the StyleGAN2-ADA metrics' are.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    >>> round(frechet_distance(feature_statistics(a), feature_statistics(a)), 9)
    0.0
    >>> round(frechet_distance(feature_statistics(a), feature_statistics(a + 2.0)), 6)   # |mu diff|^2 = 3 * 4
    12.0
"""
from __future__ import annotations

import torch


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[F]`` and unbiased covariance ``[F, F]`` of ``features [N, F]``, in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, F]; got {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(stats1: tuple[torch.Tensor, torch.Tensor], stats2: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The Fréchet distance between two ``(mean, covariance)`` pairs (see the module docstring)."""
    (mu1, sigma1), (mu2, sigma2) = stats1, stats2
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different widths: {tuple(mu1.shape)} vs {tuple(mu2.shape)}")
    root1 = _sqrt_psd(sigma1.double())
    middle = root1 @ sigma2.double() @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1.double() - mu2.double()
    return float(diff @ diff + sigma1.double().trace() + sigma2.double().trace() - 2 * trace_sqrt)
