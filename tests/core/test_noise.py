"""DiffusionNoise: law of y given (x, t), law of t, presets, gradients, dtypes and replay."""
import math

import pytest
import torch

import diffaug_noise as dn
from helpers import abar_reference, chi_square_pvalue, linear_betas_reference


def reference_tables(T, start=1e-4, end=2e-2):
    abar = abar_reference(linear_betas_reference(T, start, end))
    return [math.sqrt(a) for a in abar], [math.sqrt(1 - a) for a in abar]


def test_y_given_x_and_t_has_the_forward_diffusion_mean_and_std():
    T, sigma, D = 40, 0.3, 20_000
    noise = dn.DiffusionNoise(t_min=T, t_max=T, sigma=sigma, t_dist="uniform", clean_prob=0.25)
    x = torch.linspace(-2, 2, 64).unsqueeze(1).expand(64, D).contiguous()
    y, t = noise(x, generator=torch.Generator().manual_seed(0))
    scale, noise_scale = reference_tables(T)
    for i in range(64):
        k = int(t[i])
        c = float(x[i, 0])
        row = y[i].double()
        mean_want, std_want = scale[k] * c, noise_scale[k] * sigma
        if k == 0:
            assert torch.equal(y[i], x[i])
            continue
        # 6 standard errors: mean's is std/sqrt(D); std's relative one is ~1/sqrt(2D).
        assert abs(row.mean().item() - mean_want) < 6 * std_want / math.sqrt(D) + 1e-6
        assert abs(row.std().item() / std_want - 1) < 6 / math.sqrt(2 * D)
    assert (t == 0).any() and (t > 0).any()


def test_output_matches_float64_reference_for_given_t_and_eps():
    noise = dn.DiffusionNoise(t_min=30, t_max=30, sigma=0.7)
    x = torch.randn(16, 3, 4, 4)
    t, eps = noise.generate_parameters(x, generator=torch.Generator().manual_seed(3))
    scale, noise_scale = reference_tables(30)
    a = torch.tensor([scale[k] for k in t.tolist()], dtype=torch.float64).view(-1, 1, 1, 1)
    b = torch.tensor([noise_scale[k] for k in t.tolist()], dtype=torch.float64).view(-1, 1, 1, 1)
    want = a * x.double() + b * 0.7 * eps.double()
    torch.testing.assert_close(noise.apply_transform(x, t, eps).double(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dn.DiffusionNoise(t_min=10, t_max=1000),
        lambda: dn.DiffusionNoise(t_min=10, t_max=60, p=0.37, t_dist="uniform", clean_prob=0.2),
        lambda: dn.DiffusionNoise.preset("stylegan2", t_max=40),
        lambda: dn.DiffusionNoise.preset("insgen", t_max=50, p=0.5),
        lambda: dn.DiffusionNoise.preset("projected_gan", t_max=45, p=0.6),
    ],
    ids=["paper", "uniform-clean", "stylegan2", "insgen", "projected_gan"],
)
def test_empirical_law_of_t_matches_t_distribution(make):
    noise = make()
    law = noise.t_distribution()
    assert law.dtype == torch.float64 and law.shape == (noise.T + 1,)
    assert abs(law.sum().item() - 1) < 1e-12
    t = noise.sample_t(200_000, generator=torch.Generator().manual_seed(11))
    assert t.dtype == torch.int64
    assert chi_square_pvalue(t, law.tolist()) > 1e-4


def test_t_distribution_closed_forms():
    T = 10
    paper = dn.DiffusionNoise(t_min=T, t_max=T).t_distribution()
    assert paper.tolist() == pytest.approx([0.0] + [k / (T * (T + 1) / 2) for k in range(1, T + 1)], abs=1e-15)
    # The official code: half the pool is 0, weights k - 1 over 1..T (value 1 is never drawn).
    ref = dn.DiffusionNoise.preset("stylegan2", t_max=T).t_distribution()
    assert ref.tolist() == pytest.approx([0.5] + [0.5 * (k - 1) / (T * (T - 1) / 2) for k in range(1, T + 1)],
                                         abs=1e-15)
    uni = dn.DiffusionNoise.preset("insgen", t_max=T).t_distribution()
    assert uni.tolist() == pytest.approx([0.5] + [0.5 / T] * T, abs=1e-15)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.74, 0.75, 0.9, 1.0])
def test_projected_gan_preset_noised_share(p):
    noise = dn.DiffusionNoise.preset("projected_gan", p=p)
    share = min(round(64 * p), 48) / 64
    T = 5 + round(p * 495)
    assert noise.T == T
    law = noise.t_distribution()
    assert law[0].item() == pytest.approx(1 - share, abs=1e-15)
    if share > 0:
        assert law[2].item() == pytest.approx(share * 1 / (T * (T - 1) / 2), rel=1e-12)


@pytest.mark.parametrize(
    "t_min, t_max, p, T",
    [(10, 1000, 0.0, 10), (10, 1000, 1.0, 1000), (10, 1000, 0.25, 258), (10, 11, 0.5, 10), (10, 13, 0.5, 12),
     (1, 4, 0.5, 3), (1, 2, 0.5, 1)],
)
def test_T_follows_p_with_round_half_to_even(t_min, t_max, p, T):
    assert dn.DiffusionNoise(t_min=t_min, t_max=t_max, t_dist="uniform", p=p).T == T


def test_setting_p_rebuilds_the_tables_for_the_new_T():
    noise = dn.DiffusionNoise(t_min=10, t_max=100)
    noise.p = 0.5
    assert noise.T == 55
    scale, noise_scale = reference_tables(55)
    torch.testing.assert_close(noise.sqrt_abar[:56], torch.tensor(scale, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(noise.sqrt_one_minus_abar[:56], torch.tensor(noise_scale, dtype=torch.float64),
                               rtol=1e-12, atol=0)


def test_gradients_flow_to_x_with_the_clean_scale():
    noise = dn.DiffusionNoise(t_min=20, t_max=20)
    x = torch.randn(8, 5, requires_grad=True)
    y, t = noise(x)
    y.sum().backward()
    scale, _ = reference_tables(20)
    want = torch.tensor([scale[k] for k in t.tolist()]).view(8, 1).expand(8, 5)
    torch.testing.assert_close(x.grad, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (4, 9), (3, 2, 5, 5), (2, 3, 2, 2, 2)])
def test_any_shape_and_float_dtype(dtype, shape):
    noise = dn.DiffusionNoise(t_min=50, t_max=50, sigma=0.5)
    x = torch.randn(shape).to(dtype)
    y, t = noise(x)
    assert y.dtype == dtype and y.shape == x.shape and y.device == x.device
    assert t.dtype == torch.int64 and t.shape == (shape[0],) and t.device == x.device
    assert torch.isfinite(y.float()).all()


def test_replay_is_bitwise_identical():
    noise = dn.DiffusionNoise.preset("stylegan2", p=0.4)
    x = torch.randn(32, 3, 8, 8)
    y1, t1 = noise(x, generator=torch.Generator().manual_seed(9))
    t2, eps = noise.generate_parameters(x, generator=torch.Generator().manual_seed(9))
    assert torch.equal(t1, t2)
    assert torch.equal(y1, noise.apply_transform(x, t2, eps))


def test_per_channel_draws_t_for_each_sample_and_channel():
    noise = dn.DiffusionNoise.preset("projected_gan", p=1.0)
    x = torch.zeros(64, 24, 3, 3)
    y, t = noise(x)
    assert t.shape == (64, 24)
    # Within one (sample, channel) the std follows that channel's t.
    _, noise_scale = reference_tables(500, end=1e-2)
    for i, c in [(0, 0), (5, 7), (63, 23)]:
        k = int(t[i, c])
        assert y[i, c].abs().max().item() <= 6 * noise_scale[k] * 0.5 + 1e-7
        if k == 0:
            assert torch.equal(y[i, c], x[i, c])
    assert len(set(t[:, 0].tolist())) > 3 and len(set(t[0].tolist())) > 3


@pytest.mark.gpu
def test_cuda_forward_matches_cpu_law_and_keeps_device():
    noise = dn.DiffusionNoise(t_min=10, t_max=100, p=0.5).cuda()
    x = torch.randn(1024, 3, 8, 8, device="cuda", dtype=torch.float16)
    y, t = noise(x)
    assert y.device == x.device and t.device == x.device and y.dtype == torch.float16
    counts = chi_square_pvalue(noise.sample_t(100_000).cpu(), noise.t_distribution().tolist())
    assert counts > 1e-4
