"""The paper's two theorems, checked on the library's own transform.

Theorem 2 (non-leaking): y = sqrt(abar_t) x + sqrt(1-abar_t) sigma eps is invertible in
distribution, because phi_y(u) = phi_x(a u) exp(-s^2 u^2 / 2) with a, s > 0, so
phi_x(v) = phi_y(v / a) exp(s^2 v^2 / (2 a^2)). Theorem 1: for t > 0 the JS divergence between
the noised laws of two point masses is smooth in their distance with a non-zero gradient.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import diffaug_noise as dn
from helpers import abar_reference, linear_betas_reference

GRID = 0.5  # atoms of the generated laws lie on multiples of GRID in [-2, 2]


@st.composite
def discrete_laws(draw):
    """A law on the grid {-2, -1.5, ..., 2}: (atoms, weights), weights summing to 1."""
    n = draw(st.integers(1, 4))
    atoms = draw(st.lists(st.integers(-4, 4), min_size=n, max_size=n))
    weights = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    total = sum(weights)
    return [a * GRID for a in atoms], [w / total for w in weights]


def canonical(law):
    """Merge repeated atoms: two laws are equal iff their canonical forms are."""
    merged = {}
    for a, w in zip(*law):
        merged[a] = merged.get(a, 0.0) + w
    return {a: round(w, 12) for a, w in sorted(merged.items()) if round(w, 12) > 0}


def cf(law, v):
    atoms, weights = law
    return sum(w * np.exp(1j * a * v) for a, w in zip(atoms, weights))


def coefficients(noise, t):
    a = noise.sqrt_abar[t].item()
    s = noise.sqrt_one_minus_abar[t].item() * noise.sigma
    betas = linear_betas_reference(noise.T, noise.beta_start, noise.beta_end)
    abar = abar_reference(betas)[t]
    assert a == pytest.approx(math.sqrt(abar), rel=1e-12)
    assert s == pytest.approx(math.sqrt(1 - abar) * noise.sigma, rel=1e-12)
    assert a > 0 and s > 0  # f one-to-one, h a genuine noise: the conditions of Theorem 2
    return a, s


# Frequencies covering one period of lattice laws on multiples of GRID.
V = np.linspace(0.05, 2 * math.pi / GRID, 60)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(P=discrete_laws(), Q=discrete_laws(), p=st.floats(0, 1), frac=st.floats(0.01, 1))
def test_noised_laws_match_iff_clean_laws_match(P, Q, p, frac):
    noise = dn.DiffusionNoise(t_min=10, t_max=1000, sigma=0.05, p=p)
    t = max(1, round(frac * noise.T))
    a, s = coefficients(noise, t)
    # Frequencies where the damping exp(-(s v / a)^2 / 2) stays above 1e-260 (representable);
    # characteristic functions are analytic, so an interval suffices to tell laws apart.
    v = np.linspace(0.05, min(V[-1], math.sqrt(2 * 600) * a / s), 60)
    u = v / a  # phi_y at u sees phi_x at v = a u
    damp = np.exp(-0.5 * (s * u) ** 2)
    phi_yP, phi_yQ = cf(P, a * u) * damp, cf(Q, a * u) * damp
    # Inversion recovers each clean characteristic function exactly ...
    np.testing.assert_allclose(phi_yP / damp, cf(P, v), rtol=0, atol=1e-9)
    # ... so the noised laws differ exactly where the clean ones do.
    clean_gap = np.max(np.abs(cf(P, v) - cf(Q, v)))
    noised_gap_undamped = np.max(np.abs(phi_yP - phi_yQ) / damp)
    if canonical(P) == canonical(Q):
        assert clean_gap < 1e-9 and noised_gap_undamped < 1e-9
    else:
        assert clean_gap > 1e-6
        assert np.max(np.abs(phi_yP - phi_yQ)) > 0  # the noised laws differ too
        assert noised_gap_undamped == pytest.approx(clean_gap, abs=1e-9)


def sample_law(law, n, gen):
    atoms, weights = law
    idx = torch.multinomial(torch.tensor(weights, dtype=torch.float64), n, replacement=True, generator=gen)
    return torch.tensor(atoms, dtype=torch.float64)[idx].unsqueeze(1)


def noised_at(noise, x, t, gen):
    t_vec = torch.full((x.shape[0],), t, dtype=torch.int64)
    eps = torch.randn(x.shape, dtype=x.dtype, generator=gen)
    return noise.apply_transform(x, t_vec, eps)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(P=discrete_laws(), t_frac=st.floats(0.05, 0.6))
def test_module_output_deconvolves_to_the_clean_law(P, t_frac):
    """Empirical: the characteristic function of our y, deconvolved, is that of x."""
    n = 40_000
    noise = dn.DiffusionNoise(t_min=200, t_max=200, sigma=0.5)
    t = max(1, round(t_frac * 200))
    a, s = coefficients(noise, t)
    gen = torch.Generator().manual_seed(len(P[0]) * 1000 + t)
    y = noised_at(noise, sample_law(P, n, gen), t, gen).squeeze(1).numpy()
    v = np.linspace(0.1, 1.0, 10) * a / s  # keeps the amplification exp((s v/a)^2/2) <= e^0.5
    phi_y = np.exp(1j * np.outer(v / a, y)).mean(axis=1)
    recovered = phi_y * np.exp(0.5 * (s * v / a) ** 2)
    tol = 6 * math.exp(0.5) * math.sqrt(2 / n)
    np.testing.assert_allclose(recovered, cf(P, v), rtol=0, atol=tol)


def test_leaking_flip_merges_distinct_laws_but_diffusion_keeps_them_apart():
    """Contrast: a random sign flip (applied with probability 1) sends delta_{+1} and delta_{-1}
    to the same law (1/2 delta_{+1} + 1/2 delta_{-1}); diffusion noise does not."""
    n = 20_000
    gen = torch.Generator().manual_seed(0)
    P, Q = ([1.0], [1.0]), ([-1.0], [1.0])
    flip = lambda x: x * (torch.randint(0, 2, x.shape, generator=gen) * 2 - 1)  # noqa: E731
    fP, fQ = flip(sample_law(P, n, gen)), flip(sample_law(Q, n, gen))
    # Closed form: both flipped laws have characteristic function cos(v): identical.
    np.testing.assert_allclose(np.real(0.5 * (cf(P, V) + cf(P, -V))), np.real(0.5 * (cf(Q, V) + cf(Q, -V))), atol=1e-15)
    assert stats.ks_2samp(fP.squeeze(1).numpy(), fQ.squeeze(1).numpy()).pvalue > 1e-3
    noise = dn.DiffusionNoise(t_min=100, t_max=100, sigma=0.5)
    yP = noised_at(noise, sample_law(P, n, gen), 50, gen).squeeze(1).numpy()
    yQ = noised_at(noise, sample_law(Q, n, gen), 50, gen).squeeze(1).numpy()
    assert stats.ks_2samp(yP, yQ).pvalue < 1e-12


def js_by_quadrature(theta, a, s):
    """JS(N(0, s^2) || N(a theta, s^2)) by adaptive quadrature of the densities (scipy)."""
    p = lambda y: stats.norm.pdf(y, 0, s)  # noqa: E731
    q = lambda y: stats.norm.pdf(y, a * theta, s)  # noqa: E731

    def integrand(y):
        py, qy = p(y), q(y)
        m = 0.5 * (py + qy)
        out = 0.0
        if py > 0:
            out += 0.5 * py * math.log(py / m)
        if qy > 0:
            out += 0.5 * qy * math.log(qy / m)
        return out

    lo, hi = min(0, a * theta) - 12 * s, max(0, a * theta) + 12 * s
    return integrate.quad(integrand, lo, hi, limit=200, points=[0.0, a * theta])[0]


@pytest.mark.parametrize("t", [1, 10, 100, 500, 1000])
def test_js_of_noised_point_masses_is_smooth_with_nonzero_gradient(t):
    noise = dn.DiffusionNoise(t_min=1000, t_max=1000, sigma=0.05)
    a, s = coefficients(noise, t)
    thetas = np.linspace(0.02, 0.5, 7) * s / a * 4  # spans d = a theta / s from 0.08 to 2
    values = [dn.theory.js_divergence_point_masses(th, a, s) for th in thetas]
    reference = [js_by_quadrature(th, a, s) for th in thetas]
    np.testing.assert_allclose(values, reference, rtol=1e-6, atol=1e-10)
    h = 1e-4 * s / a
    for th in thetas:
        grad = (js_by_quadrature(th + h, a, s) - js_by_quadrature(th - h, a, s)) / (2 * h)
        js = dn.theory.js_divergence_point_masses
        lib_grad = (js(th + h, a, s) - js(th - h, a, s)) / (2 * h)
        assert grad > 0 and lib_grad == pytest.approx(grad, rel=1e-3)
        assert dn.theory.js_divergence_point_masses(th, a, s) < math.log(2)


def test_js_without_noise_is_log2_with_zero_gradient():
    for theta in [1e-6, 0.1, 1.0, 5.0]:
        assert dn.theory.js_divergence_point_masses(theta, 1.0, 0.0) == math.log(2)
    assert dn.theory.js_divergence_point_masses(0.0, 1.0, 0.0) == 0.0
