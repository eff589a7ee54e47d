"""Closed-form pieces of the paper's analysis, used by `diffaug-noise show js` and the tests."""
from __future__ import annotations

import math

import numpy as np

_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(201)
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / math.sqrt(2 * math.pi)  # expectations under N(0, 1)


def js_divergence_point_masses(theta: float, scale: float, noise_scale: float) -> float:
    r"""JS divergence between the noised laws of a real point mass at 0 and a fake one at ``theta``.

    The paper's example for Theorem 1 (its Fig. 2): after the forward diffusion at one ``t``,
    the real sample is ``N(0, s^2)`` and the fake one ``N(a theta, s^2)`` with ``a = sqrt(abar_t)``
    (``scale``) and ``s = sqrt(1 - abar_t) sigma`` (``noise_scale``). With ``d = a theta / s``,

    .. math::
        \mathrm{JS} = \log 2 - \mathbb{E}_{z\sim N(0,1)}\big[\log(1 + e^{d z - d^2/2})\big],

    evaluated by 201-point Gauss–Hermite quadrature. At ``s = 0`` (``t = 0``) the supports are
    disjoint unless ``theta = 0``: JS is ``log 2`` for every ``theta != 0``, a gradient of zero.

    Example:
        >>> round(js_divergence_point_masses(1.0, 1.0, 0.0), 6) == round(math.log(2), 6)
        True
        >>> js_divergence_point_masses(0.0, 1.0, 0.5)
        0.0
    """
    if noise_scale < 0 or scale < 0:
        raise ValueError(f"scale and noise_scale must be >= 0; got scale={scale!r}, noise_scale={noise_scale!r}")
    if theta == 0 or scale == 0:
        return 0.0
    if noise_scale == 0:
        return math.log(2.0)
    d = abs(scale * theta / noise_scale)
    softplus = np.logaddexp(0.0, d * _HERMITE_NODES - 0.5 * d * d)
    return float(max(math.log(2.0) - np.dot(_HERMITE_WEIGHTS, softplus), 0.0))
