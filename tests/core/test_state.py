"""state_dict / load_state_dict / pickle restore p, T, tables and accumulators exactly."""
import io
import pickle

import pytest
import torch

import diffaug_noise as dn


def test_noise_state_dict_round_trip_restores_p_T_and_tables():
    a = dn.DiffusionNoise.preset("stylegan2", p=0.3173)
    b = dn.DiffusionNoise.preset("stylegan2")
    assert b.T != a.T
    b.load_state_dict(a.state_dict())
    assert (b.p, b.T) == (a.p, a.T)
    for name in ("sqrt_abar", "sqrt_one_minus_abar", "t_cdf"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    x = torch.randn(16, 3, 8, 8)
    ya, ta = a(x, generator=torch.Generator().manual_seed(1))
    yb, tb = b(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ya, yb) and torch.equal(ta, tb)


def test_state_dict_survives_torch_save_with_weights_only():
    a = dn.DiffusionNoise(p=0.61)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = dn.DiffusionNoise()
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.p == a.p and b.T == a.T


def test_loading_state_from_other_settings_names_the_difference():
    a = dn.DiffusionNoise(t_max=1000, sigma=0.05)
    b = dn.DiffusionNoise(t_max=1000, sigma=0.5)
    with pytest.raises(ValueError, match=r"sigma: saved 0.05 vs this module 0.5"):
        b.load_state_dict(a.state_dict())


def test_controller_resume_mid_interval_continues_identically():
    def make():
        noise = dn.DiffusionNoise(t_min=10, t_max=200)
        return dn.AdaptiveController(noise, target=0.6, interval=4, kimg=1, batch_size=16)

    gen = torch.Generator().manual_seed(5)
    batches = [torch.randn(16, generator=gen) + 0.4 for _ in range(22)]
    full = make()
    for b in batches:
        full.observe(b)
        full.update()

    first = make()
    for b in batches[:10]:  # stop in the middle of an interval (10 % 4 = 2 steps accumulated)
        first.observe(b)
        first.update()
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.step == 10 and torch.equal(resumed._sums, first._sums)
    for b in batches[10:]:
        resumed.observe(b)
        resumed.update()
    assert (resumed.noise.p, resumed.noise.T, resumed.step, resumed.r_d) == (full.noise.p, full.noise.T, full.step, full.r_d)


def test_both_objects_pickle_with_state_intact():
    noise = dn.DiffusionNoise.preset("projected_gan", p=0.42)
    ctrl = dn.AdaptiveController(noise, batch_size=32, interval=3)
    ctrl.observe(torch.tensor([1.0, -1.0, 1.0]))
    ctrl.update()
    clone = pickle.loads(pickle.dumps(ctrl))
    assert clone.noise.p == 0.42 and clone.noise.T == noise.T and clone.step == 1
    assert torch.equal(clone._sums, ctrl._sums)
    assert clone.noise.t_distribution().tolist() == noise.t_distribution().tolist()
    alone = pickle.loads(pickle.dumps(noise))
    assert alone.p == 0.42 and torch.equal(alone.t_cdf, noise.t_cdf)


def test_half_precision_cast_keeps_float64_tables_and_exact_p():
    noise = dn.DiffusionNoise(p=0.123456789)
    cdf = noise.t_cdf.clone()
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), noise).half()
    assert module[0].weight.dtype == torch.float16
    assert noise.t_cdf.dtype == torch.float64 and torch.equal(noise.t_cdf, cdf)
    assert noise.p == 0.123456789
