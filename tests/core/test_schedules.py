"""Beta schedules and tables against closed forms computed here in plain float64 Python."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffaug_noise import SCHEDULES, beta_schedule, diffusion_tables
from helpers import abar_reference, linear_betas_reference


def reference_betas(name, T, start, end):
    lin = lambda a, b: [a] if T == 1 else [a + (b - a) * i / (T - 1) for i in range(T)]  # noqa: E731
    if name == "linear":
        return linear_betas_reference(T, start, end)
    if name == "quad":
        return [v * v for v in lin(math.sqrt(start), math.sqrt(end))]
    if name == "const":
        return [end] * T
    if name == "jsd":
        return [1.0 / (T - i) for i in range(T)]
    if name == "sigmoid":
        return [1 / (1 + math.exp(-v)) * (end - start) + start for v in lin(-6.0, 6.0)]
    if name == "cosine":
        s = 0.008
        f = [math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2 for k in range(T + 1)]
        abar = [v / f[0] for v in f]
        return [min(max(1 - abar[k] / abar[k - 1], 0.0), 0.999) for k in range(1, T + 1)]
    if name == "continuous_t":
        return [1 - math.exp(-0.1 / T - 0.5 * (5.0 - 0.1) * (2 * k - 1) / T**2) for k in range(1, T + 1)]
    raise AssertionError(name)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(SCHEDULES),
    T=st.integers(1, 1200),
    start=st.floats(1e-5, 1e-2),
    width=st.floats(0.0, 0.05),
)
def test_schedule_matches_closed_form(name, T, start, width):
    end = start + width
    got = beta_schedule(name, T, start, end)
    assert got.dtype == torch.float64 and got.shape == (T,)
    want = torch.tensor(reference_betas(name, T, start, end), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(SCHEDULES), T=st.integers(1, 1000))
def test_tables_match_cumulative_product(name, T):
    betas = beta_schedule(name, T)
    sqrt_abar, sqrt_one_minus = diffusion_tables(betas)
    abar = torch.tensor(abar_reference(betas.tolist()), dtype=torch.float64)
    assert sqrt_abar.shape == (T + 1,) and sqrt_abar.dtype == torch.float64
    assert sqrt_abar[0] == 1.0 and sqrt_one_minus[0] == 0.0
    torch.testing.assert_close(sqrt_abar**2, abar, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(sqrt_abar**2 + sqrt_one_minus**2, torch.ones(T + 1, dtype=torch.float64), rtol=0,
                               atol=1e-12)


def test_linear_example_values():
    assert beta_schedule("linear", 5, 0.1, 0.5).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-15)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="cosin", T=10), "unknown beta schedule 'cosin'"),
        (dict(name="linear", T=0), "T must be an integer >= 1; got 0"),
        (dict(name="linear", T=10, beta_end=1.5), "beta_end must lie in the open interval (0, 1); got 1.5"),
        (dict(name="linear", T=10, beta_start=0.0), "beta_start must lie in the open interval (0, 1); got 0.0"),
    ],
)
def test_schedule_errors_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        beta_schedule(**kwargs)
    assert message in str(err.value)
