"""Calls that used to break the layer quietly: each is now our error at the call, and no state has changed.

The states compared are everything a later call depends on: the noise's buffers, the controller's
step, accumulators (values and device) and ``r_d``, and the random generator's state.
"""
import math

import pytest
import torch

import diffaug_noise as dn


def snapshot(noise: dn.DiffusionNoise, ctrl: dn.AdaptiveController | None = None) -> dict:
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in noise.state_dict().items()}
    if ctrl is not None:
        state.update(step=ctrl.step, r_d=ctrl.r_d, skipped=ctrl.skipped_updates, sums=ctrl._sums.clone(),
                     device=ctrl._sums.device)
    return state


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor)
        else (a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))) for k in a)


@pytest.mark.parametrize("t", [-1, 56, 100, 101, 10**6])
def test_apply_transform_refuses_a_t_outside_0_to_T(t):
    noise = dn.DiffusionNoise(t_min=10, t_max=100, p=0.5)  # T = 55
    x = torch.randn(3, 4)
    eps = torch.randn(3, 4)
    bad = torch.tensor([0, t, 5])
    with pytest.raises(ValueError, match=rf"t must lie in 0..55 \(the current T\); got values from {min(t, 0)} to "
                                         rf"{max(t, 5)}"):
        noise.apply_transform(x, bad, eps)
    # within range the transform is the closed form, at t = 0 (clean) and t = T
    ok = torch.tensor([0, 55, 5])
    y = noise.apply_transform(x, ok, eps)
    abar = noise.sqrt_abar[ok].float().view(-1, 1)
    assert torch.allclose(y, abar * x + noise.sqrt_one_minus_abar[ok].float().view(-1, 1) * noise.sigma * eps)
    assert torch.equal(y[0], x[0])


def test_a_strict_load_with_an_extra_key_leaves_p_as_it_was():
    noise = dn.DiffusionNoise(p=0.25)
    state = {**dn.DiffusionNoise(p=0.75).state_dict(), "stray": torch.zeros(1)}
    before = snapshot(noise)
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['stray'\].*strict=False"):
        noise.load_state_dict(state)
    assert same(snapshot(noise), before) and noise.p == 0.25  # was 0.75 after the error
    noise.load_state_dict(state, strict=False)  # the stray key ignored, as torch does
    assert noise.p == 0.75


def test_observe_of_a_meta_tensor_is_refused_and_the_controller_still_works():
    noise = dn.DiffusionNoise()
    ctrl = dn.AdaptiveController(noise, interval=1, kimg=1, batch_size=4)
    ctrl.observe(torch.ones(4))
    before = snapshot(noise, ctrl)
    with pytest.raises(ValueError, match="real_logits is on the meta device"):
        ctrl.observe(torch.ones(4, device="meta"))
    assert same(snapshot(noise, ctrl), before) and ctrl._sums.device.type == "cpu"
    assert ctrl.update() and ctrl.r_d == 1.0  # was: every later update failed on the meta accumulators


@pytest.mark.parametrize("values, exc, message", [
    (torch.tensor([0.5, 2.0, -1.0]), ValueError, r"values in \[-1, 1\]; got 1 value\(s\) outside, from -1 to 2"),
    (torch.tensor([-3.0, 0.0, 0.0]), ValueError, "from -3 to 0"),
    (torch.full((3,), 0.5, dtype=torch.complex64), TypeError, r"real values in \[-1, 1\]; got dtype torch.complex64"),
    (torch.tensor([True, False, True]), TypeError, r"real values in \[-1, 1\]; got dtype torch.bool"),
    ([0.5, 0.5, 0.5], TypeError, "must return a tensor"),
])
def test_a_callable_signal_is_checked_at_observe_before_anything_changes(values, exc, message):
    noise = dn.DiffusionNoise(p=0.3)
    returns = {"values": torch.tensor([1.0, 1.0, 0.0])}
    ctrl = dn.AdaptiveController(noise, target=0.0, interval=2, kimg=1, batch_size=3,
                                 signal=lambda real, fake: returns["values"])
    ctrl.observe(torch.zeros(3))
    ctrl.update()  # step 1 of 2: accumulates, does not adjust
    returns["values"] = values
    before = snapshot(noise, ctrl)
    with pytest.raises(exc, match=message):
        ctrl.observe(torch.zeros(3))
    assert same(snapshot(noise, ctrl), before)  # was: caught at update(), after the step advanced and the sums cleared
    returns["values"] = torch.tensor([1.0, 1.0, 0.0])
    ctrl.observe(torch.zeros(3))
    assert ctrl.update() and ctrl.r_d == pytest.approx(4 / 6)


@pytest.mark.parametrize("real, fake, exc, message", [
    (torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.int64), TypeError, "fake must have a floating dtype"),
    (torch.zeros(4, 3, dtype=torch.int64), torch.randn(4, 3), TypeError, "real must have a floating dtype"),
    (torch.randn(4, 3), 0, TypeError, "fake must be a torch.Tensor; got int"),
    (1.5, torch.randn(4, 3), TypeError, "real must be a torch.Tensor; got float"),
    (torch.randn(4, 3), torch.randn(4, 2), ValueError, "one shape"),
])
def test_pair_names_a_bad_input_before_drawing_anything(real, fake, exc, message):
    noise = dn.DiffusionNoise(p=0.5)
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    with pytest.raises(exc, match=message):
        noise.pair(real, fake, generator=generator)
    assert torch.equal(generator.get_state(), before)


def test_apply_transform_refuses_noise_that_is_not_real_floats_or_on_another_device():
    noise = dn.DiffusionNoise(p=0.5)
    x, t = torch.randn(2, 3), torch.zeros(2, dtype=torch.int64)
    for eps in (torch.zeros(2, 3, dtype=torch.complex64), torch.zeros(2, 3, dtype=torch.int64)):  # were accepted
        with pytest.raises(TypeError, match=f"eps must be real floating noise; got dtype {eps.dtype}"):
            noise.apply_transform(x, t, eps)
    with pytest.raises(ValueError, match="t is on meta but x on cpu"):  # was NotImplementedError from the tables
        noise.apply_transform(x, t.to("meta"), torch.zeros(2, 3))


def test_a_meta_p_is_refused_and_keeps_the_old_state():
    noise = dn.DiffusionNoise(p=0.25)
    before = snapshot(noise)
    with pytest.raises(ValueError, match="p must be a scalar with a value; got a meta tensor"):  # was torch's error
        noise.p = torch.tensor(0.5, device="meta")
    assert same(snapshot(noise), before)
