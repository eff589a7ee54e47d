"""Bad input raises our errors, naming the value and the allowed range, and changes no state."""
import pytest
import torch

import diffaug_noise as dn


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(t_min=0), ValueError, "t_min must be an int >= 1 (t = 0 is the clean sample); got 0"),
        (dict(t_min=20, t_max=10), ValueError, "t_min must be <= t_max; got t_min=20, t_max=10"),
        (dict(t_min=2.5), TypeError, "t_min must be an int; got float 2.5"),
        (dict(schedule="cosin"), ValueError, "unknown schedule 'cosin'; choose one of linear"),
        (dict(sigma=0.0), ValueError, "sigma must be a finite number > 0; got 0.0"),
        (dict(sigma=-1), ValueError, "sigma must be a finite number > 0; got -1"),
        (dict(sigma=float("nan")), ValueError, "sigma must be a finite number > 0; got nan"),
        (dict(p=1.5), ValueError, "p must lie in [0, 1]; got 1.5"),
        (dict(p=-0.1), ValueError, "p must lie in [0, 1]; got -0.1"),
        (dict(clean_prob=2), ValueError, "clean_prob must lie in [0, 1]; got 2"),
        (dict(t_dist="gauss"), ValueError, "unknown t_dist 'gauss'; choose one of priority, uniform"),
        (dict(beta_end=1.0), ValueError, "beta_end must lie in the open interval (0, 1); got 1.0"),
        (dict(t_min=1, priority_offset=1), ValueError, "t_min must be >= 2 with priority_offset=1"),
        (dict(clean_rule="pool"), ValueError, "unknown clean_rule 'pool'"),
    ],
)
def test_constructor_errors(kwargs, exc, message):
    with pytest.raises(exc) as err:
        dn.DiffusionNoise(**kwargs)
    assert message in str(err.value)


def test_setting_a_bad_p_keeps_the_old_state():
    noise = dn.DiffusionNoise(p=0.25)
    before = noise.state_dict()
    for bad, exc in [(1.01, ValueError), (float("nan"), ValueError), ("0.5", TypeError), (True, TypeError)]:
        with pytest.raises(exc, match="p must"):
            noise.p = bad
    after = noise.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if isinstance(before[k], torch.Tensor))


@pytest.mark.parametrize(
    "x, exc, message",
    [
        (torch.tensor(1.0), ValueError, "x must have a batch dimension; got shape ()"),
        (torch.ones(4, 3, dtype=torch.int64), TypeError, "x must have a floating dtype; got torch.int64"),
        (torch.ones(4, 3, dtype=torch.uint8), TypeError, "x must have a floating dtype; got torch.uint8"),
        ([1.0, 2.0], TypeError, "x must be a torch.Tensor; got list"),
        (torch.ones(4, 3, device="meta"), ValueError, "x is on meta but the noise tables are on cpu; call "
                                                      "noise.to('meta') once"),
    ],
)
def test_forward_input_errors(x, exc, message):
    with pytest.raises(exc) as err:
        dn.DiffusionNoise()(x)
    assert message in str(err.value)


def test_per_channel_needs_a_channel_dimension():
    with pytest.raises(ValueError, match=r"per_channel noise needs x of shape \[B, C, ...\]; got shape \(5,\)"):
        dn.DiffusionNoise.preset("projected_gan")(torch.ones(5))


def test_apply_transform_checks_t_and_eps_shapes():
    noise = dn.DiffusionNoise()
    x = torch.ones(4, 3)
    with pytest.raises(ValueError, match=r"t must be an int64 tensor of shape \(4,\)"):
        noise.apply_transform(x, torch.zeros(3, dtype=torch.int64), torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"eps must be a tensor of x's shape \(4, 3\); got \(4, 2\)"):
        noise.apply_transform(x, torch.zeros(4, dtype=torch.int64), torch.ones(4, 2))


def test_empty_batch_is_allowed():
    y, t = dn.DiffusionNoise()(torch.ones(0, 3, 4, 4))
    assert y.shape == (0, 3, 4, 4) and t.shape == (0,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target=1.5, batch_size=8), "target must lie in [-1, 1]"),
        (dict(interval=0, batch_size=8), "interval must be an int >= 1; got 0"),
        (dict(kimg=0, batch_size=8), "kimg must be a finite number > 0; got 0"),
        (dict(), "batch_size is required"),
        (dict(batch_size=0), "batch_size must be an int >= 1; got 0"),
    ],
)
def test_controller_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        dn.AdaptiveController(dn.DiffusionNoise(), **kwargs)
    assert message in str(err.value)


def test_unknown_preset_and_override():
    with pytest.raises(ValueError,
                       match="unknown preset 'stylegan3'; choose one of paper, stylegan2, projected_gan, insgen"):
        dn.DiffusionNoise.preset("stylegan3")
    with pytest.raises(TypeError, match="unexpected keyword argument 'noise_sd'"):
        dn.DiffusionNoise.preset("stylegan2", noise_sd=0.1)


@pytest.mark.parametrize("call, message", [
    (lambda n, c: n.sample_t(-3), "each an int >= 0; got (-3,)"),
    (lambda n, c: n.sample_t((2, "a")), "each an int >= 0; got (2, 'a')"),
    (lambda n, c: n.current_clean_prob(1.5), "p must lie in [0, 1]; got 1.5"),
    (lambda n, c: c.observe(torch.ones(3, dtype=torch.bool)), "floating-point outputs; got dtype torch.bool"),
    (lambda n, c: dn.diffusion_tables(torch.tensor([0.1, float("nan")])), "betas must lie in [0, 1]"),
    (lambda n, c: dn.diffusion_tables(torch.tensor([0.1, 1.5])), "betas must lie in [0, 1]"),
])
def test_every_public_method_names_a_bad_argument(call, message):
    noise = dn.DiffusionNoise()
    ctrl = dn.AdaptiveController(noise, batch_size=4)
    before = noise.state_dict()
    with pytest.raises((ValueError, TypeError)) as err:
        call(noise, ctrl)
    assert message in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in noise.state_dict().items() if isinstance(v, torch.Tensor))
