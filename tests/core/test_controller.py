"""AdaptiveController: the update rule against a float64 reference, and all-reduce across ranks."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import diffaug_noise as dn


def logits_with(r_d, n=100):
    """n logits whose mean sign is exactly r_d (r_d * n must be an integer of n's parity)."""
    pos = round((1 + r_d) * n / 2)
    return torch.cat([torch.ones(pos), -torch.ones(n - pos)])


def reference_trajectory(r_ds, target, step):
    p, out = 0.0, []
    for r in r_ds:
        direction = 0.0 if r == target else math.copysign(1.0, r - target)
        p = min(max(p + direction * step, 0.0), 1.0)
        out.append(p)
    return out


def test_scripted_r_d_sequence_follows_the_update_rule():
    noise = dn.DiffusionNoise(t_min=10, t_max=1000)
    ctrl = dn.AdaptiveController(noise, target=0.6, interval=4, kimg=2, batch_size=64)
    step = 64 * 4 / 2000
    r_ds = [1.0, 0.8, 0.8, 0.2, 0.6, 1.0, -1.0, 0.9] + [1.0] * 10 + [-1.0] * 12
    got = []
    for r in r_ds:
        for i in range(4):  # interval steps, each observing its batch
            ctrl.observe(logits_with(r))
            moved = ctrl.update()
            assert moved == (i == 3)
        assert ctrl.r_d == pytest.approx(r, abs=1e-15)
        got.append(noise.p)
        assert noise.T == 10 + round(noise.p * 990)
    assert got == pytest.approx(reference_trajectory(r_ds, 0.6, step), abs=1e-15)
    assert 0.0 in got and 1.0 in got  # both clips were exercised
    assert ctrl.step == 4 * len(r_ds)


def test_sign_zero_leaves_p_unchanged_and_zero_logits_count_as_zero():
    noise = dn.DiffusionNoise(p=0.3)
    ctrl = dn.AdaptiveController(noise, target=0.5, interval=1, batch_size=32)
    ctrl.observe(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0]))  # mean sign 0.25
    ctrl.observe(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]))  # mean sign 0.875
    assert ctrl.update()
    assert ctrl.r_d == pytest.approx(0.5625)
    assert noise.p == pytest.approx(0.3 + 32 / 100_000)
    ctrl.observe(logits_with(0.5, n=4))
    assert ctrl.update() and ctrl.r_d == 0.5
    assert noise.p == pytest.approx(0.3 + 32 / 100_000)


def test_nan_logits_or_no_observation_skip_the_update():
    noise = dn.DiffusionNoise(p=0.5)
    ctrl = dn.AdaptiveController(noise, interval=2, batch_size=8)
    ctrl.observe(torch.tensor([1.0, float("nan")]))
    ctrl.update()
    assert not ctrl.update()
    assert math.isnan(ctrl.r_d) and noise.p == 0.5 and ctrl.skipped_updates == 1
    ctrl.update()
    assert not ctrl.update() and ctrl.skipped_updates == 2
    ctrl.observe(torch.ones(3))
    ctrl.update()
    assert ctrl.update() and noise.p > 0.5  # accumulators were cleared after the skip


def test_preset_controller_settings():
    noise = dn.DiffusionNoise.preset("projected_gan")
    ctrl = dn.AdaptiveController.preset("projected_gan", noise, batch_size=64)
    assert (ctrl.target, ctrl.interval, ctrl.kimg) == (0.6, 4, 100)
    assert ctrl.step_size == pytest.approx(64 * 4 / 100_000)


def _rank_main(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    noise = dn.DiffusionNoise(t_min=10, t_max=1000, p=0.5)
    ctrl = dn.AdaptiveController(noise, target=0.6, interval=2, kimg=1, batch_size=20)
    # Rank 0 sees all-positive logits (alone: r_d = 1, p would go up); rank 1 sees more,
    # mostly negative logits, so the global r_d = (10 + 10 - 30 + 2*... ) is below target.
    if rank == 0:
        batches = [torch.ones(10), torch.ones(10)]
    else:
        batches = [logits_with(-0.6, n=30), logits_with(-0.6, n=30)]
    for b in batches:
        ctrl.observe(b)
        ctrl.update()
    torch.save({"p": noise.p, "T": noise.T, "r_d": ctrl.r_d}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_gives_identical_p_on_every_rank(tmp_path):
    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    global_r_d = (20 + 2 * 30 * -0.6) / (20 + 60)
    assert r0 == r1
    assert r0["r_d"] == pytest.approx(global_r_d)
    # Global r_d < 0.6, so p moves down by batch*interval/(kimg*1000) = 0.04 on both ranks;
    # rank 0 alone (r_d = 1) would have moved it up.
    assert r0["p"] == pytest.approx(0.5 - 20 * 2 / 1000)
    assert r0["T"] == 10 + round(r0["p"] * 990)


def _rank_nan_main(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    noise = dn.DiffusionNoise(t_min=10, t_max=1000, p=0.5)
    ctrl = dn.AdaptiveController(noise, target=0.6, interval=1, kimg=1, batch_size=20)
    history = []
    # Step 1: rank 1 sees only NaN logits, rank 0 finite ones. Step 2: both finite again.
    for step in range(2):
        logits = torch.full((10,), float("nan")) if (rank == 1 and step == 0) else torch.ones(10)
        ctrl.observe(logits)
        history.append((ctrl.update(), noise.p, noise.T, ctrl.skipped_updates))
    torch.save(history, os.path.join(out_dir, f"nan{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_nan_logits_on_one_rank_skip_the_step_on_every_rank(tmp_path):
    mp.spawn(_rank_nan_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    h0, h1 = (torch.load(tmp_path / f"nan{r}.pt") for r in (0, 1))
    assert h0 == h1
    assert h0[0] == (False, 0.5, 10 + round(0.5 * 990), 1)  # skipped everywhere, p untouched
    assert h0[1][0] and h0[1][1] == pytest.approx(0.5 + 20 / 1000)  # the next step moves again
