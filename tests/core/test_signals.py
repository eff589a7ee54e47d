"""The controller's signals for other losses, the pair API and the drift guard, against closed forms.

A synthetic discriminator of known overfitting: real logits ``centre + N(mu, 1)``, fake logits
``centre + N(-mu, 1)``; ``mu`` is how far D separates the training reals (0: it cannot tell; large:
it has memorised them). Then the sign signal reads ``2 Phi(mu) - 1`` and the relativistic one, on
independent pairs, ``2 Phi(sqrt(2) mu) - 1``, whatever the loss: the tests check each signal against
its closed form, and that the controller raises T exactly while D overfits past the target.
"""
import math
import os
import warnings
from statistics import NormalDist

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import diffaug_noise as dn

PHI = NormalDist().cdf
N = 20_000
TOL = 5 / math.sqrt(N)  # five standard errors of a mean of N signs


def logits(mu, centre=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = centre + mu + torch.randn(N, generator=g, dtype=torch.float64)
    fake = centre - mu + torch.randn(N, generator=g, dtype=torch.float64)
    return real, fake


def r_d_of(ctrl, real, fake=None):
    ctrl.observe(real, fake)
    assert ctrl.update()
    return ctrl.r_d


@pytest.mark.parametrize("loss, centre", [("non-saturating", 0.0), ("hinge", 0.0), ("least squares, targets 0/1", 0.5)])
@pytest.mark.parametrize("mu", [0.0, 0.5, 0.8416, 2.0])
def test_the_sign_signal_reads_the_share_of_reals_on_the_real_side_of_its_centre(loss, centre, mu):
    ctrl = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8, centre=centre)
    real, _ = logits(mu, centre)
    assert r_d_of(ctrl, real) == pytest.approx(2 * PHI(mu) - 1, abs=TOL)


def test_least_squares_logits_need_their_centre():
    """LSGAN's D outputs ~0.5 when it cannot tell: sign(D) reads 'sure' (r_d = 1) and would raise T forever."""
    real, _ = logits(0.0, centre=0.5)
    wrong = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8)
    right = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8, centre=0.5)
    assert r_d_of(wrong, real / 10 + 0.5) == 1.0 and abs(r_d_of(right, real)) < TOL


@pytest.mark.parametrize("offset", [-100.0, 0.0, 37.0])
@pytest.mark.parametrize("mu", [0.0, 0.5, 1.5])
def test_the_relativistic_signal_reads_pairs_ranked_right_whatever_the_critics_offset(offset, mu):
    """R3GAN's relativistic loss and WGAN's critic fix no centre: only real-minus-fake means anything."""
    real, fake = logits(mu, centre=offset)
    ctrl = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8, signal="relativistic")
    assert r_d_of(ctrl, real, fake) == pytest.approx(2 * PHI(math.sqrt(2) * mu) - 1, abs=TOL)
    sign = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8)
    if offset:  # the sign of a critic's raw value says nothing: all of one side of 0
        assert abs(r_d_of(sign, real)) > 0.99


def test_the_relativistic_default_target_asks_what_the_papers_target_asks():
    """Where the sign signal reads 0.6 (mu = Phi^-1(0.8)), the relativistic one reads relativistic_target(0.6)."""
    mu = NormalDist().inv_cdf(0.8)
    real, fake = logits(mu)
    sign = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8)
    rel = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, batch_size=8, signal="relativistic")
    assert rel.target == dn.relativistic_target(0.6) == pytest.approx(0.766, abs=1e-3) and sign.target == 0.6
    assert r_d_of(sign, real) == pytest.approx(0.6, abs=TOL)
    assert r_d_of(rel, real, fake) == pytest.approx(rel.target, abs=TOL)


def test_a_callable_signal_averages_its_values_and_needs_its_target():
    ranked = lambda real, fake: (real > fake).double() * 2 - 1  # noqa: E731  (the relativistic signal, written out)
    with pytest.raises(ValueError, match="a callable signal needs its target"):
        dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8, signal=ranked)
    ctrl = dn.AdaptiveController(dn.DiffusionNoise(), target=0.5, interval=1, batch_size=8, signal=ranked)
    real, fake = logits(1.0)
    assert r_d_of(ctrl, real, fake) == pytest.approx(2 * PHI(math.sqrt(2)) - 1, abs=TOL)
    bad = dn.AdaptiveController(dn.DiffusionNoise(), target=0.5, interval=1, batch_size=8, signal=lambda r, f: r * 10)
    with pytest.raises(ValueError, match=r"must return values in \[-1, 1\]; got 4 value\(s\) outside, from 10 to 10"):
        bad.observe(torch.ones(4))  # at the call (tests/core/test_misuse.py: nothing changes)


@pytest.mark.parametrize("signal, centre", [("sign", 0.0), ("sign", 0.5), ("relativistic", 0.0)])
def test_the_controller_raises_T_while_D_overfits_and_lowers_it_when_it_stops(signal, centre):
    """mu rises (D memorising) then falls: p follows sign(r_d - target) step for step."""
    noise = dn.DiffusionNoise(t_min=10, t_max=1000)
    ctrl = dn.AdaptiveController(noise, interval=1, kimg=0.1, batch_size=10, signal=signal, centre=centre)
    mus = [0.0, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 2.5, 2.0, 1.0, 0.5, 0.2, 0.0, 0.0]
    expected = 2 * PHI(NormalDist().inv_cdf(0.8) * (math.sqrt(2) if signal == "relativistic" else 1)) - 1
    assert ctrl.target == pytest.approx(expected, abs=1e-9)
    p, steps = 0.0, []
    for k, mu in enumerate(mus):
        real, fake = logits(mu, centre, seed=k)
        r_d = r_d_of(ctrl, real, fake if signal == "relativistic" else None)
        p = min(max(p + math.copysign(ctrl.step_size, r_d - ctrl.target), 0.0), 1.0)
        steps.append(noise.p)
        assert noise.p == pytest.approx(p)
    peak = steps.index(max(steps))
    assert 0 < peak < len(mus) - 1 and steps[-1] < steps[peak]  # up while overfitting, down after


def test_state_dict_round_trips_the_signal_and_refuses_another():
    rel = dn.AdaptiveController(dn.DiffusionNoise(p=0.2), batch_size=8, signal="relativistic")
    rel.observe(torch.ones(3), torch.zeros(3))
    state = rel.state_dict()
    assert state["signal"] == "relativistic" and state["target"] == rel.target
    again = dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8, signal="relativistic")
    again.load_state_dict(state)
    assert torch.equal(again._sums, rel._sums) and again.noise.p == 0.2
    sign = dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8)
    with pytest.raises(ValueError, match="signal: saved 'relativistic' vs this controller 'sign'"):
        sign.load_state_dict(state)
    lsgan = dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8, centre=0.5)
    with pytest.raises(ValueError, match="centre: saved 0.0 vs this controller 0.5"):
        lsgan.load_state_dict(sign.state_dict())
    old = {k: v for k, v in sign.state_dict().items() if k not in ("signal", "centre", "target", "pinned", "drift")}
    sign.load_state_dict(old)  # states written before signals existed were the sign signal's


def test_observe_names_a_missing_or_misplaced_fake():
    rel = dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8, signal="relativistic")
    with pytest.raises(ValueError, match=r"compares pairs: pass fake_logits of real_logits' shape \(4,\); got none"):
        rel.observe(torch.ones(4))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        rel.observe(torch.ones(4), torch.ones(3))
    with pytest.raises(ValueError, match="reads the real logits only"):
        dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8).observe(torch.ones(4), torch.ones(4))
    with pytest.raises(ValueError, match="centre is the sign signal's decision boundary"):
        dn.AdaptiveController(dn.DiffusionNoise(), batch_size=8, signal="relativistic", centre=0.5)


def test_nan_in_either_side_of_a_pair_skips_the_update():
    rel = dn.AdaptiveController(dn.DiffusionNoise(p=0.3), interval=1, batch_size=8, signal="relativistic")
    rel.observe(torch.ones(4), torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    assert not rel.update() and math.isnan(rel.r_d) and rel.skipped_updates == 1 and rel.noise.p == 0.3


def test_the_drift_guard_speaks_once_when_T_sits_at_t_max_and_once_when_stuck_low():
    noise = dn.DiffusionNoise(t_min=10, t_max=50)
    ctrl = dn.AdaptiveController(noise, interval=1, kimg=0.01, batch_size=10, drift_updates=5)  # 1 step reaches p = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            ctrl.observe(torch.ones(10))
            ctrl.update()
        assert noise.p == 1.0 and ctrl.pinned == 4 and ctrl.drift is None and not caught
        for _ in range(10):
            ctrl.observe(torch.ones(10))
            ctrl.update()
    assert len(caught) == 1 and ctrl.drift.startswith("T has been at t_max = 50 for 5 adjustments")
    assert "\n" not in ctrl.drift and "check that D is conditioned on t" in ctrl.drift
    state = ctrl.state_dict()
    again = dn.AdaptiveController(dn.DiffusionNoise(t_min=10, t_max=50), interval=1, kimg=0.01, batch_size=10,
                                  drift_updates=5)
    again.load_state_dict(state)
    assert again.pinned == ctrl.pinned and again.drift == ctrl.drift  # a resumed run does not warn again

    low = dn.AdaptiveController(dn.DiffusionNoise(t_min=10, t_max=50), interval=1, kimg=0.01, batch_size=10,
                                drift_updates=3)
    with pytest.warns(UserWarning, match="stayed at t_min = 10 for 3 adjustments with r_d -1.00, far below the target"):
        for _ in range(3):
            low.observe(-torch.ones(10))
            low.update()
    quiet = dn.AdaptiveController(dn.DiffusionNoise(), interval=1, kimg=0.01, batch_size=10, drift_updates=None)
    for _ in range(20):
        quiet.observe(torch.ones(10))
        quiet.update()
    assert quiet.drift is None and quiet.pinned == 20


def test_pair_gives_both_sides_one_t_and_optionally_one_eps():
    noise = dn.DiffusionNoise(t_min=10, t_max=1000, p=0.7)
    real = torch.randn(64, 3, 4, 4, requires_grad=True)
    fake = torch.randn(64, 3, 4, 4, requires_grad=True)
    g = torch.Generator().manual_seed(3)
    y_real, y_fake, t = noise.pair(real, fake, generator=g)
    t_ref, eps_ref = noise.generate_parameters(real, generator=torch.Generator().manual_seed(3))
    assert torch.equal(t, t_ref) and torch.equal(y_real, noise.apply_transform(real, t, eps_ref))
    assert t.unique().numel() > 10  # each pair its own t, shared by its two sides
    shared_real, shared_fake, t2 = noise.pair(real, fake, share_eps=True)
    a = noise.sqrt_abar[t2].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(shared_real - shared_fake, a * (real - fake))
    (y_real.sum() + y_fake.sum()).backward()
    assert real.grad is not None and fake.grad is not None
    with pytest.raises(ValueError, match=r"one shape; got \(64, 3, 4, 4\) and \(2, 3\)"):
        noise.pair(real, torch.zeros(2, 3))


def _relativistic_rank(rank, path, world):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    ctrl = dn.AdaptiveController(dn.DiffusionNoise(), interval=2, kimg=1, batch_size=8, signal="relativistic")
    for step in range(8):  # rank 0 sees a D that ranks every pair right, rank 1 one that ranks 3 of 4 wrong
        ctrl.observe(torch.ones(4), torch.zeros(4) if rank == 0 else torch.tensor([2.0, 2.0, 2.0, 0.0]))
        ctrl.update()
    torch.save({"p": ctrl.noise.p, "r_d": ctrl.r_d}, f"{path}.{rank}")
    dist.destroy_process_group()


def test_the_relativistic_signal_is_all_reduced_so_every_rank_moves_alike(tmp_path):
    path = str(tmp_path / "rendezvous")
    mp.spawn(_relativistic_rank, args=(path, 2), nprocs=2)
    results = [torch.load(f"{path}.{rank}") for rank in range(2)]
    assert results[0] == results[1]
    assert results[0]["r_d"] == pytest.approx((4 - 2) / 8)  # (4 right - (3 wrong - 1 right)) over 8 pairs
    assert os.path.exists(f"{path}.1")
