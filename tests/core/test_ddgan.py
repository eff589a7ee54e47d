"""DenoisingChain against closed forms computed here in plain float64, the official tables, and distribution tests."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from diffaug_noise.ddgan import DenoisingChain, PairDiscriminator

SCHEDULE_SETTINGS = st.sampled_from([("vp", 0.1, 20.0), ("vp", 0.5, 5.0), ("geometric", 0.01, 0.9),
                                     ("geometric", 1e-3, 0.5)])


def betas_reference(T, schedule, beta_min, beta_max):
    """betas_1..T from the continuous variance at s_k = 1e-3 + (1 - 1e-3) k / T, in Python floats."""
    def var(s):
        if schedule == "vp":
            return 1 - math.exp(-beta_min * s - 0.5 * (beta_max - beta_min) * s * s)
        return beta_min * (beta_max / beta_min) ** s
    s = [1e-3 + (1 - 1e-3) * k / T for k in range(T + 1)]
    return [1 - (1 - var(s[k])) / (1 - var(s[k - 1])) for k in range(1, T + 1)]


def abar_reference(betas):
    out = [1.0]
    for b in betas:
        out.append(out[-1] * (1 - b))
    return out


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 12), setting=SCHEDULE_SETTINGS, data=st.data())
def test_posterior_is_the_gaussian_conditional_of_the_forward_chain(T, setting, data):
    schedule, beta_min, beta_max = setting
    chain = DenoisingChain(T, beta_min, beta_max, schedule)
    betas = betas_reference(T, schedule, beta_min, beta_max)
    abar = abar_reference(betas)
    t = data.draw(st.integers(1, T))
    x0, xt = data.draw(st.floats(-3, 3)), data.draw(st.floats(-3, 3))
    # x_{t-1} | x0 ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1});  x_t | x_{t-1} ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t)
    prior_var, b = 1 - abar[t - 1], betas[t - 1]
    if prior_var == 0:  # t = 1: x_{t-1} = x_0 exactly
        mean, var = x0, 0.0
    else:
        precision = 1 / prior_var + (1 - b) / b
        var = 1 / precision
        mean = var * (math.sqrt(abar[t - 1]) * x0 / prior_var + math.sqrt(1 - b) * xt / b)
    got_mean, got_var, got_log_var = chain.q_posterior(torch.tensor([x0], dtype=torch.float64),
                                                        torch.tensor([xt], dtype=torch.float64), torch.tensor([t]))
    assert float(got_mean) == pytest.approx(mean, rel=1e-9, abs=1e-12)
    assert float(got_var) == pytest.approx(var, rel=1e-9, abs=1e-15)
    assert float(got_log_var) == pytest.approx(math.log(max(var, 1e-20)), rel=1e-9)
    assert float(chain.alphas_cumprod[T]) == pytest.approx(abar[T], rel=1e-9)


def test_tables_match_the_official_codes_arrays_with_its_indexing():
    for schedule, lo, hi in (("vp", 0.1, 20.0), ("geometric", 0.01, 0.9)):
        chain = DenoisingChain(4, lo, hi, schedule)
        ref = chain.reference_tables()
        assert ref["a_s"].shape == (5,) and ref["posterior_variance"].shape == (4,)
        assert ref["sigmas"][0] == pytest.approx(1e-4)  # the dummy first beta, 1e-8
        for name in ("posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance"):
            torch.testing.assert_close(torch.from_numpy(ref[name]).double(), getattr(chain, name)[1:], rtol=2e-5,
                                       atol=1e-7)
        torch.testing.assert_close(torch.from_numpy(ref["a_s_cum"]).double() ** 2, chain.alphas_cumprod, rtol=2e-5,
                                   atol=1e-7)
        torch.testing.assert_close(torch.from_numpy(ref["sigmas"][1:]).double() ** 2, chain.betas[1:], rtol=2e-5,
                                   atol=1e-7)


def test_pairs_follow_the_marginal_and_the_one_step_kernel():
    chain = DenoisingChain(4)
    g = torch.Generator().manual_seed(0)
    n, x0 = 40_000, torch.full((40_000, 1), 1.5, dtype=torch.float64)
    for t in range(4):
        x_t, x_next = chain.q_sample_pairs(x0, torch.full((n,), t), generator=g)
        abar, beta = float(chain.alphas_cumprod[t]), float(chain.betas[t + 1])
        if t == 0:
            assert torch.equal(x_t, x0)
        else:
            z = (x_t - math.sqrt(abar) * 1.5) / math.sqrt(1 - abar)
            assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
        step = (x_next - math.sqrt(1 - beta) * x_t) / math.sqrt(beta)  # must be N(0, 1), independent of x_t
        assert stats.kstest(step.flatten().numpy(), "norm").pvalue > 1e-3
        if t > 0:
            assert abs(float(torch.corrcoef(torch.stack([step.flatten(), x_t.flatten()]))[0, 1])) < 0.02


def test_the_reverse_chain_with_the_true_x0_walks_back_through_the_forward_marginals():
    chain = DenoisingChain(4)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, 2, (20_000, 1), generator=g).double() * 4 - 2  # two modes at -2 and 2
    seen = {}

    def oracle(x_t, z, t):
        seen[int(t[0])] = x_t.clone()
        assert z.shape == (x0.shape[0], 3)
        return x0

    x_T = chain.q_sample(x0, torch.full((x0.shape[0],), 4), generator=g)
    out = chain.sample(oracle, x_T, z_dim=3, generator=g)
    assert torch.equal(out, x0)  # t = 1 has zero posterior variance
    assert sorted(seen) == [1, 2, 3, 4]
    for t, x_t in seen.items():
        abar = float(chain.alphas_cumprod[t])
        z = (x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3, t


@pytest.mark.parametrize("shape", [(6,), (6, 5), (6, 3, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_any_shape_and_float_dtype(shape, dtype):
    chain = DenoisingChain(3)
    x0 = torch.randn(shape).to(dtype)
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    x_t, x_next = chain.q_sample_pairs(x0, t)
    prev = chain.sample_posterior(x0, x_next, t + 1)
    assert x_t.shape == x_next.shape == prev.shape == x0.shape
    assert x_t.dtype == x_next.dtype == prev.dtype == dtype
    assert chain.betas.dtype == torch.float64


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="T must be an int >= 1"):
        DenoisingChain(0)
    with pytest.raises(ValueError, match="beta_min must be < beta_max"):
        DenoisingChain(4, 20.0, 0.1)
    with pytest.raises(ValueError, match="beta_min must be a finite number > 0; got -1"):
        DenoisingChain(4, -1, 2.0)
    with pytest.raises(ValueError, match="geometric: beta_max is the largest variance and must be < 1; got 20"):
        DenoisingChain(4, 0.1, 20.0, "geometric")
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        DenoisingChain(4, schedule="cosine")
    chain = DenoisingChain(4)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"q_sample_pairs needs t in 0\.\.3 \(T = 4\); got values in 0\.\.4"):
        chain.q_sample_pairs(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"q_posterior needs t in 1\.\.4"):
        chain.sample_posterior(x, x, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"t must have shape \[B\] = \[3\]"):
        chain.q_sample(x, torch.tensor([1, 1]))
    with pytest.raises(TypeError, match="t must be an integer tensor"):
        chain.q_sample(x, torch.ones(3))


def test_pair_discriminator_sees_both_members_of_the_pair_and_t():
    body = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.LeakyReLU(0.2))
    D = PairDiscriminator(body, feature_dim=16, embed_dim=8)
    a, b, t = torch.randn(5, 2), torch.randn(5, 2), torch.tensor([1, 2, 3, 4, 1])
    base = D(a, b, t)
    assert base.shape == (5, 1)
    assert not torch.allclose(base, D(a, b + 1, t)) and not torch.allclose(base, D(a + 1, b, t))
    assert not torch.allclose(base, D(a, b, t + 1))
    with pytest.raises(ValueError, match="one shape"):
        D(a, b[:, :1], t)
