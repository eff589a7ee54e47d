"""DiffusionAwareDiscriminator on Ds that are not ours to edit: a PatchGAN (pix2pix's) and HiFi-GAN's pair Ds."""
import copy
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import diffaug_noise as dn
from diffaug_noise.attached import entry_layers

STANDINS = pathlib.Path(__file__).resolve().parents[1] / "standins"
ATTACHING = ("channels", "film-hooks", "none")


def _import(folder, module):
    """A stand-in's module, left out of sys.modules: pix2pix's `models` package and HiFi-GAN's `models` module share a
    name."""
    root = module.split(".")[0]
    sys.path.insert(0, str(STANDINS / folder))
    try:
        return __import__(module, fromlist=["_"])
    finally:
        sys.path.remove(str(STANDINS / folder))
        for name in [n for n in sys.modules if n == root or n.startswith(root + ".")]:
            del sys.modules[name]


pix2pix = _import("pix2pix", "models.networks")
hifigan = _import("hifigan", "models")


def _patchgan():
    torch.manual_seed(0)
    return pix2pix.define_D(6, 8, "basic", norm="batch")


@pytest.mark.parametrize("conditioning", ATTACHING)
@pytest.mark.parametrize("build, pair, shape", [
    (_patchgan, False, (4, 6, 32, 32)),
    (lambda: pix2pix.define_D(3, 8, "pixel", norm="instance"), False, (4, 3, 16, 16)),
    (hifigan.MultiPeriodDiscriminator, True, (2, 1, 256)),
    (hifigan.MultiScaleDiscriminator, True, (2, 1, 256)),
], ids=["patchgan", "pixel", "multi-period", "multi-scale"])
def test_a_freshly_wrapped_D_gives_the_original_outputs_bit_for_bit(build, pair, shape, conditioning):
    torch.manual_seed(1)
    D, original = build(), build()  # not a deepcopy: torch's weight_norm modules refuse one
    original.load_state_dict(D.state_dict())
    wrapped = dn.DiffusionAwareDiscriminator(D, batch_size=shape[0], loss="lsgan", conditioning=conditioning,
                                             pair=pair)
    inputs = (torch.randn(shape), torch.randn(shape)) if pair else (torch.randn(shape),)
    t = torch.randint(1, 1000, (shape[0],))
    with wrapped.conditioning.given(t):
        got = wrapped.D(*inputs)
    expected = original(*inputs)
    flat = dn.aware._flat
    assert torch.equal(flat(got), flat(expected))
    if pair:  # the feature maps too (feature matching reads them)
        for got_maps, expected_maps in zip(got[2] + got[3], expected[2] + expected[3]):
            assert all(torch.equal(a, b) for a, b in zip(got_maps, expected_maps))


def test_every_attaching_conditioning_is_registered_and_others_are_refused_in_one_line():
    assert {"channels", "film-hooks", "none"} <= set(dn.CONDITIONINGS)
    with pytest.raises(ValueError, match="does not attach to an existing D; choose one of channels, film-hooks, none"):
        dn.DiffusionAwareDiscriminator(_patchgan(), batch_size=4, conditioning="projection")
    with pytest.raises(ValueError, match="unknown loss 'bce'; choose one of nonsaturating"):
        dn.DiffusionAwareDiscriminator(_patchgan(), batch_size=4, loss="bce")
    with pytest.raises(ValueError, match="batch_size is required"):
        dn.DiffusionAwareDiscriminator(_patchgan())
    with pytest.raises(TypeError, match="a t-conditioning method must be a Module .*; 'sinusoids' is a function"):
        dn.CONDITIONINGS.register("sinusoids", lambda t: t)  # the registry's contract: nn.Module subclasses only
    assert "sinusoids" not in dn.CONDITIONINGS


def test_entry_layers_are_each_sub_discriminators_first_convolution():
    assert entry_layers(hifigan.MultiPeriodDiscriminator()) == [f"discriminators.{i}.convs.0" for i in range(5)]
    assert entry_layers(hifigan.MultiScaleDiscriminator()) == [f"discriminators.{i}.convs.0" for i in range(3)]
    assert entry_layers(_patchgan()) == ["model.0"]


def _memorise_then_forget(wrapped, reals, fakes_like, d_loss, steps=60):
    """Train D to tell fixed reals from fresh noise (it memorises them), then on reals drawn like the fakes (it cannot
    tell); T after each phase."""
    opt = torch.optim.Adam(wrapped.parameters(), 2e-3)
    Ts = []
    for phase in ("memorise", "forget"):
        for _ in range(steps):
            real = reals if phase == "memorise" else fakes_like()
            loss = d_loss(wrapped, real, fakes_like())
            opt.zero_grad()
            loss.backward()
            opt.step()
            wrapped.step()
        Ts.append(wrapped.noise.T)
    return Ts


@pytest.mark.parametrize("conditioning", ATTACHING)
def test_the_controller_raises_T_while_a_patchgan_memorises_the_reals_and_lowers_it_after(conditioning):
    torch.manual_seed(2)
    criterion = pix2pix.GANLoss("lsgan")
    wrapped = dn.DiffusionAwareDiscriminator(pix2pix.define_D(3, 8, "n_layers", n_layers_D=2, norm="none"),
                                             batch_size=8, loss="lsgan", conditioning=conditioning, interval=1,
                                             kimg=0.2, noise=dn.DiffusionNoise(sigma=0.05, t_max=200))

    def d_loss(D, real, fake):
        return criterion(D(real, real=True), True) + criterion(D(fake), False)

    reals = torch.sign(torch.randn(8, 3, 16, 16))  # eight binary images D can memorise
    T_memorised, T_after = _memorise_then_forget(wrapped, reals, lambda: torch.randn(8, 3, 16, 16), d_loss)
    assert T_memorised >= 100 and T_after < T_memorised


@pytest.mark.parametrize("conditioning", ATTACHING)
def test_the_controller_raises_T_while_a_multi_period_D_memorises_the_reals_and_lowers_it_after(conditioning):
    torch.manual_seed(3)
    wrapped = dn.DiffusionAwareDiscriminator(hifigan.MultiPeriodDiscriminator(), batch_size=4, loss="lsgan",
                                             conditioning=conditioning, pair=True, interval=1, kimg=0.1,
                                             noise=dn.DiffusionNoise(sigma=0.05, t_max=200))

    def d_loss(D, real, fake):
        real_logits, fake_logits, _, _ = D(real, fake.detach())  # a D step: the controller reads it
        return hifigan.discriminator_loss(real_logits, fake_logits)[0]

    time = torch.arange(512) / 512
    reals = torch.stack([torch.sin(2 * torch.pi * f * time) for f in (5, 11, 23, 37)]).unsqueeze(1)
    T_memorised, T_after = _memorise_then_forget(wrapped, reals, lambda: 0.7 * torch.randn(4, 1, 512), d_loss)
    assert T_memorised >= 100 and T_after < T_memorised


class PairRecorder(nn.Module):
    """A pair D that keeps what it was given and returns HiFi-GAN's four lists."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1)
        self.seen = []

    def forward(self, y, y_hat):
        self.seen.append((y.detach(), y_hat.detach()))
        return [self.conv(y).flatten(1)], [self.conv(y_hat).flatten(1)], [[y]], [[y_hat]]


def test_a_pair_shares_t_and_eps_and_only_a_d_step_feeds_the_controller():
    recorder = PairRecorder()
    wrapped = dn.DiffusionAwareDiscriminator(recorder, batch_size=6, loss="lsgan", pair=True,
                                             noise=dn.DiffusionNoise(t_min=50, t_max=50))
    real, fake = torch.randn(6, 1, 32), torch.randn(6, 1, 32, requires_grad=True)
    wrapped(real, fake.detach())
    (y, y_hat), t = wrapped._draws.drawn
    a = wrapped.noise.sqrt_abar[t].float().view(-1, 1, 1)
    torch.testing.assert_close(y - y_hat, a * (real - fake.detach()))  # the same eps: only the signal differs
    assert float(wrapped.controller._sums[1]) == 6 * 32  # the D step's real logits were read
    out = wrapped(real, fake)  # a G step: gradients reach the fake, nothing is read
    out[1][0].sum().backward()
    assert fake.grad is not None and float(wrapped.controller._sums[1]) == 6 * 32


def test_several_ds_judging_the_same_pair_share_one_draw_and_a_new_batch_gets_a_new_one():
    first = dn.DiffusionAwareDiscriminator(PairRecorder(), batch_size=4, loss="lsgan", pair=True)
    second = dn.DiffusionAwareDiscriminator(PairRecorder(), pair=True, share=first)
    real, fake = torch.randn(4, 1, 16), torch.randn(4, 1, 16)
    first(real, fake)
    second(real, fake.detach())  # the same values through another tensor object
    assert all(torch.equal(a, b) for a, b in zip(first.D.seen[0], second.D.seen[0]))
    assert second.noise is first.noise and second.controller is first.controller
    first(real.clone(), fake)  # a new batch, even at the same values
    assert not torch.equal(first.D.seen[1][0], first.D.seen[0][0])


@pytest.mark.parametrize("share_eps", [True, False])
def test_paired_calls_give_a_real_and_its_fake_one_t_and_a_new_block_a_new_one(share_eps):
    sigma = 0.5
    D = dn.DiffusionAwareDiscriminator(nn.Identity(), batch_size=8, conditioning="none", share_eps=share_eps,
                                       noise=dn.DiffusionNoise(sigma=sigma, p=1.0))
    second = dn.DiffusionAwareDiscriminator(nn.Identity(), conditioning="none", share=D)
    seen = []
    given = D.conditioning.given
    D.conditioning.given = lambda t: (seen.append(t), given(t))[1]
    real, fake = torch.randn(8, 3, 4, 4, dtype=torch.float64), torch.randn(8, 3, 4, 4, dtype=torch.float64)
    with D.paired():
        y_real, y_fake = D(real), D(fake)
        y_other = second(fake.clone())  # another D of the group, inside the same block
        D(real[:2])  # another shape: its own draw
    t_real, t_fake, t_small = seen
    assert torch.equal(t_real, t_fake) and len(t_real.unique()) > 1 and t_small.shape == (2,)
    a = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, D.noise.T, dtype=torch.float64), 0).sqrt()[t_real - 1]
    a = a.view(-1, 1, 1, 1)

    def eps(y, x):  # y = a x + sigma sqrt(1 - a^2) eps, solved for eps
        return (y - a * x) / (sigma * (1 - a ** 2).sqrt())

    assert torch.allclose(eps(y_real, real), eps(y_other, fake))  # the group shares the block
    assert torch.allclose(eps(y_real, real), eps(y_fake, fake)) == share_eps
    assert abs(float(eps(y_fake, fake).std()) - 1) < 0.15
    D(real), D(fake)  # outside a block: each call its own t
    assert not torch.equal(seen[-2], seen[-1])
    with D.paired():
        D(real)
        with pytest.raises(RuntimeError, match="do not nest"), D.paired():
            pass
        assert D._draws.pairing and D._draws.pair_draw is not None  # the refused block left the open one as it was
    assert not D._draws.pairing and D._draws.pair_draw is None


def test_condition_channels_stay_clean():
    D = nn.Conv2d(6, 1, 3)
    x = torch.randn(2, 6, 8, 8)
    for k, clean in ((3, slice(0, 3)), (-2, slice(4, 6))):
        seen = []
        wrapped = dn.DiffusionAwareDiscriminator(nn.Sequential(D), batch_size=2, condition_channels=k,
                                                 noise=dn.DiffusionNoise(p=1.0))
        wrapped.D.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        wrapped(x)
        assert torch.equal(seen[0][:, clean], x[:, clean])
        judged = [c for c in range(6) if c not in range(6)[clean]]
        assert not torch.equal(seen[0][:, judged], x[:, judged])


def test_reals_marks_a_call_made_in_code_you_do_not_edit():
    wrapped = dn.DiffusionAwareDiscriminator(_patchgan(), batch_size=4, loss="hinge")
    x = torch.randn(4, 6, 32, 32)
    wrapped(x.detach())
    assert float(wrapped.controller._sums[1]) == 0
    with wrapped.reals(x):
        wrapped(x.contiguous().detach())  # taming's call on the reals
        wrapped(torch.randn(4, 6, 32, 32))  # a fake: not read
    assert float(wrapped.controller._sums[1]) == 4 * 2 * 2  # the 2x2 patches of each of the four reals


def test_list_outputs_are_read_as_the_logits_of_every_scale():
    per_scale = [[torch.ones(2, 4), torch.full((2, 1, 3, 3), 2.0)], [torch.ones(2, 4), torch.full((2, 1, 2, 2), -1.0)]]
    assert dn.aware._flat(per_scale).tolist() == [2.0] * 18 + [-1.0] * 8  # the last of each scale's list
    assert dn.aware._flat([torch.zeros(2, 3), torch.ones(2, 5)]).shape == (16,)


def test_state_round_trips_exactly_and_a_rejected_load_changes_nothing():
    torch.manual_seed(4)
    make = lambda: dn.DiffusionAwareDiscriminator(_patchgan(), batch_size=4, loss="lsgan", interval=2, kimg=1)  # noqa
    wrapped = make()
    for _ in range(5):
        wrapped(torch.randn(4, 6, 32, 32), real=True)
        wrapped.step()
    state = copy.deepcopy(wrapped.state_dict())
    fresh = make()
    fresh.load_state_dict(state)
    assert (fresh.noise.p, fresh.noise.T, fresh.controller.step) == (wrapped.noise.p, wrapped.noise.T, 5)
    assert torch.equal(fresh.controller._sums, wrapped.controller._sums)
    before = copy.deepcopy(fresh.state_dict())
    bad = dict(state, **{"noise.p_value": torch.tensor(2.0, dtype=torch.float64)})
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        fresh.load_state_dict(bad)
    other = copy.deepcopy(state)
    other["_extra_state"]["controller"]["step"] = -1
    with pytest.raises(ValueError, match="'step' must be an int >= 0"):
        fresh.load_state_dict(other)
    wider = dict(state, **{"D.model.0.weight": torch.zeros(8, 7, 4, 4)})
    with pytest.raises(ValueError, match="shapes differ"):
        fresh.load_state_dict(wider)
    after = fresh.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if isinstance(before[k], torch.Tensor))
    assert before["_extra_state"]["controller"]["step"] == after["_extra_state"]["controller"]["step"] == 5


def test_a_relativistic_loss_observes_pairs_and_refuses_real_true():
    wrapped = dn.DiffusionAwareDiscriminator(_patchgan(), batch_size=4, loss="relativistic")
    real_logits, fake_logits = wrapped(torch.randn(4, 6, 32, 32)), wrapped(torch.randn(4, 6, 32, 32))
    wrapped.observe(real_logits, fake_logits)
    assert float(wrapped.controller._sums[1]) == real_logits.numel()
    with pytest.raises(ValueError, match="call D.observe\\(real_logits, fake_logits\\)"):
        wrapped(torch.randn(4, 6, 32, 32), real=True)


def test_gradients_reach_the_inputs_through_noise_and_conditioning():
    wrapped = dn.DiffusionAwareDiscriminator(_patchgan(), batch_size=4, conditioning="channels")
    fake = torch.randn(4, 6, 32, 32, requires_grad=True)
    F.softplus(-wrapped(fake)).mean().backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    assert all(p.grad is not None for p in wrapped.conditioning.parameters() if p.requires_grad
               and p.ndim == 3 + 1)  # the channels' weights learn from the first step
