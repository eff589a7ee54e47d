"""Random shapes, dtypes and values: DiffusionNoise either works correctly or raises our errors."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import diffaug_noise as dn

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64, torch.bool,
          torch.uint8]


@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
    dtype=st.sampled_from(DTYPES),
    fill=st.sampled_from([0.0, -0.0, 1.0, -3.5, 1e4, 1e30, 1e-40, math.inf, -math.inf, math.nan]),
    per_channel=st.booleans(),
    p=st.floats(0, 1),
    check_finite=st.booleans(),
)
def test_forward_is_correct_or_raises_our_errors(shape, dtype, fill, per_channel, p, check_finite):
    noise = dn.DiffusionNoise(t_min=2, t_max=30, p=p, per_channel=per_channel, priority_offset=1, clean_prob=0.3,
                              check_finite=check_finite)
    x = torch.full(shape, fill).to(dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)
    try:
        y, t = noise(x)
    except TypeError as err:
        assert not dtype.is_floating_point and "floating dtype" in str(err)
        return
    except ValueError as err:
        if "NaN/Inf" in str(err):  # check_finite on a non-finite x (1e30 is Inf in float16)
            assert check_finite and x.numel() > 0 and not torch.isfinite(x).all()
            return
        assert len(shape) == 0 or (per_channel and len(shape) < 2)
        assert "shape" in str(err)
        return
    assert dtype.is_floating_point and len(shape) >= (2 if per_channel else 1)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert t.dtype == torch.int64 and t.shape == (tuple(shape[:2]) if per_channel else tuple(shape[:1]))
    assert ((t >= 0) & (t <= noise.T) & (t != 1)).all()  # priority_offset=1 never draws t = 1
    clean = (t == 0).view(t.shape + (1,) * (x.ndim - t.ndim)).expand_as(x)
    torch.testing.assert_close(y[clean], x[clean], rtol=0, atol=0, equal_nan=True)  # t = 0: untouched, NaN/Inf included
    assert not (check_finite and x.numel() and not torch.isfinite(x).all())  # would have raised
    if math.isfinite(fill):
        assert torch.isfinite(y.float()).all() or dtype == torch.float16  # 1e4 * ~1 + noise may overflow fp16


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    t_min=st.integers(-2, 40),
    t_max=st.integers(-2, 40),
    sigma=st.sampled_from([-1.0, 0.0, 1e-6, 0.05, 3.0, math.inf, math.nan]),
    p=st.sampled_from([-0.5, 0.0, 0.3, 1.0, 1.5, math.nan]),
    schedule=st.sampled_from(list(dn.SCHEDULES) + ["cosin", ""]),
)
def test_constructor_accepts_valid_settings_or_names_the_bad_one(t_min, t_max, sigma, p, schedule):
    valid = 1 <= t_min <= t_max and 0 < sigma < math.inf and 0 <= p <= 1 and schedule in dn.SCHEDULES
    try:
        noise = dn.DiffusionNoise(schedule=schedule, t_min=t_min, t_max=t_max, sigma=sigma, p=p)
    except (ValueError, TypeError) as err:
        assert not valid
        assert any(name in str(err) for name in ("t_min", "t_max", "sigma", " p ", "p must", "schedule"))
        return
    assert valid and t_min <= noise.T <= t_max
    law = noise.t_distribution()
    assert abs(law.sum().item() - 1) < 1e-12 and (law >= 0).all()
