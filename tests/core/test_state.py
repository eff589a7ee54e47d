"""state_dict / load_state_dict / pickle restore p, T, tables and accumulators exactly."""
import io
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert (resumed.noise.p, resumed.noise.T, resumed.step, resumed.r_d) == \
        (full.noise.p, full.noise.T, full.step, full.r_d)


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


def _snapshot(obj):
    """Every tensor and number of ``obj``'s state, for a bitwise comparison (NaN equal to NaN)."""
    state = obj.state_dict()
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(value, torch.Tensor):
            flat[prefix] = value.detach().cpu().clone()
        else:
            flat[prefix] = repr(value)
    walk("", state)
    return flat


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                        for k in a)


def _damaged_noise_states(good, other_settings):
    """(what is wrong, a state_dict with that one thing wrong) for a DiffusionNoise state."""
    def edit(name, value):
        state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in good.items()}
        state[name] = value
        return state

    nan_table = good["t_cdf"].clone()
    nan_table[3] = float("nan")
    shifted = good["sqrt_abar"].clone()
    shifted[5] *= 1.01
    missing = dict(good)
    del missing["coefficients32"]
    return [
        ("p is NaN", edit("p_value", torch.tensor(float("nan"), dtype=torch.float64))),
        ("p is 5", edit("p_value", torch.tensor(5.0, dtype=torch.float64))),
        ("T does not match p", edit("T_value", good["T_value"] + 1)),
        ("a NaN in the law of t", edit("t_cdf", nan_table)),
        ("a table of another p", edit("sqrt_abar", shifted)),
        ("p of float32", edit("p_value", good["p_value"].float())),
        ("a table of another length", edit("t_cdf", good["t_cdf"][:-1])),
        ("a missing buffer", missing),
        ("other settings", other_settings),
        ("not a tensor", edit("T_value", 7)),
    ]


@pytest.mark.parametrize("case", range(10))
def test_a_rejected_noise_state_leaves_the_module_bitwise_as_it_was(case):
    noise = dn.DiffusionNoise(t_min=10, t_max=300, p=0.25)
    donor = dn.DiffusionNoise(t_min=10, t_max=300, p=0.6)
    other = dn.DiffusionNoise(t_min=10, t_max=300, sigma=0.5, p=0.6).state_dict()
    what, state = _damaged_noise_states(donor.state_dict(), other)[case]
    before = _snapshot(noise)
    with pytest.raises((ValueError, TypeError)):
        noise.load_state_dict(state)
    assert _same(before, _snapshot(noise)), what
    assert noise.p == 0.25  # not the donor's 0.6, which torch's default loading would have copied before failing


def test_a_rejected_state_inside_a_parent_module_leaves_the_noise_as_it_was():
    parent = torch.nn.Sequential(torch.nn.Linear(2, 2), dn.DiffusionNoise(p=0.1))
    state = torch.nn.Sequential(torch.nn.Linear(2, 2), dn.DiffusionNoise(p=0.7, sigma=0.2)).state_dict()
    with pytest.raises(ValueError, match="sigma: saved 0.2 vs this module 0.05"):
        parent.load_state_dict(state)
    assert parent[1].p == 0.1 and parent[1].T == dn.DiffusionNoise(p=0.1).T


def test_a_state_with_unknown_keys_is_refused_by_a_strict_load_and_accepted_otherwise():
    state = dict(dn.DiffusionNoise(p=0.3).state_dict(), stray=torch.zeros(1))
    noise = dn.DiffusionNoise()
    with pytest.raises(ValueError, match="unexpected key.*stray"):
        noise.load_state_dict(state)
    assert noise.p == 0.0  # refused before anything changed (tests/core/test_misuse.py)
    noise.load_state_dict(state, strict=False)
    assert noise.p == 0.3


@given(p=st.floats(0, 1), garbage=st.sampled_from(["nan", "inf", "-1", "2", "T", "sums-nan", "step", "r_d", "count"]))
@settings(max_examples=60, deadline=None)
def test_a_rejected_controller_state_leaves_controller_and_noise_bitwise_as_they_were(p, garbage):
    def make(p0):
        return dn.AdaptiveController(dn.DiffusionNoise(t_min=10, t_max=100, p=p0), interval=3, batch_size=8)

    ctrl = make(0.5)
    ctrl.observe(torch.tensor([1.0, -1.0, 1.0]))
    ctrl.update()
    donor = make(p)
    donor.observe(torch.tensor([1.0, 1.0]))
    state = donor.state_dict()
    value = {"nan": float("nan"), "inf": float("inf"), "-1": -1.0, "2": 2.0}.get(garbage)
    if value is not None:
        state["noise"]["p_value"] = torch.tensor(value, dtype=torch.float64)
    elif garbage == "T":
        state["noise"]["T_value"] = state["noise"]["T_value"] + 3
    elif garbage == "sums-nan":
        state["sums"] = torch.tensor([float("nan"), 2.0, 0.0], dtype=torch.float64)
    elif garbage == "step":
        state["step"] = -4
    elif garbage == "r_d":
        state["r_d"] = 1.5
    else:
        state["sums"] = torch.tensor([5.0, 2.0, 0.0], dtype=torch.float64)  # more signs than logits
    before = _snapshot(ctrl)
    steps = (ctrl.step, ctrl.skipped_updates, ctrl.r_d)
    with pytest.raises(ValueError):
        ctrl.load_state_dict(state)
    assert _same(before, _snapshot(ctrl)) and (ctrl.step, ctrl.skipped_updates, ctrl.r_d) == steps
