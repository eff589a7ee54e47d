"""The kit's loss wrapper: its declarations checked when it is built, its rounds and steps, what it reports."""
import math

import pytest
import torch

from diffaug_noise import DiffusionNoise
from diffaug_noise.integrations import UpstreamError, kit


class UpstreamLoss:
    """An upstream loss whose loop passes sync and gain; records what it was given."""

    def __init__(self):
        self.calls = []

    def accumulate_gradients(self, phase, real_img, sync, gain, **extra):
        self.calls.append((phase, sync, gain, extra))


class NoSyncLoss:
    def accumulate_gradients(self, phase, real_img, gain):
        pass


class WithSync(kit.LossWrapper):
    keywords = ("sync", "gain")


class WithoutSync(kit.LossWrapper):
    keywords = ("gain",)


def settings(**extra):
    return {"batch_size": 4, "d_phases": ["Dmain", "Dboth"], "controller": dict(interval=2, kimg=1), **extra}


class RunningStats:
    """Upstream's ``torch_utils.training_stats`` as ``stats.jsonl`` sees it: ``report`` adds each value's count and
    sum to running totals per name (an empty report adds nothing); a tick's mean is the increase of the totals since
    the last tick (its ``Collector.update``), NaN when nothing came."""

    def __init__(self):
        self.totals, self.at_last_tick = {}, {}

    def report(self, name, value):
        values = torch.as_tensor(value, dtype=torch.float64).flatten()
        count, total = self.totals.get(name, (0, 0.0))
        self.totals[name] = (count + values.numel(), total + float(values.sum()))

    def tick(self) -> dict:
        means = {}
        for name, (count, total) in self.totals.items():
            last_count, last_total = self.at_last_tick.get(name, (0, 0.0))
            means[name] = (total - last_total) / (count - last_count) if count > last_count else math.nan
        self.at_last_tick = dict(self.totals)
        return means


def test_r_d_reaches_training_stats_only_once_it_is_a_number():
    """Reported as NaN before the first adjustment, it made every later tick's mean NaN in stats.jsonl."""
    stats = RunningStats()
    loss = WithSync(UpstreamLoss(), DiffusionNoise(), settings(controller=dict(interval=4, kimg=1, target=-1.0)),
                    stats=stats)
    ticks, r_ds = [], []
    for step in range(12):
        loss.controller.observe(torch.tensor([1.0, 1.0, -1.0, 1.0]) * (1 if step < 8 else -1))
        loss.accumulate_gradients(phase="Dmain", real_img=torch.zeros(4, 3), sync=True, gain=1)
        r_ds.append(loss.controller.r_d)
        if step in (1, 7, 11):
            ticks.append(stats.tick())
    step = 4 * 4 / 1000  # batch * interval / (kimg * 1000); target -1: every adjustment goes up
    assert math.isnan(ticks[0]["Diffusion/r_d"]) and ticks[0]["Diffusion/p"] == 0  # no adjustment yet: no r_d
    assert math.isnan(r_ds[2]) and r_ds[3] == 0.5  # the first adjustment, after the 4th step
    # steps 4..8 reported the first two adjustments' r_d (0.5), steps 9..11 the second's and the 12th the third's
    # (-0.5): the means of what was reported, not NaN
    assert ticks[1]["Diffusion/r_d"] == pytest.approx(0.5)
    assert ticks[2]["Diffusion/r_d"] == pytest.approx((3 * 0.5 - 0.5) / 4)
    assert ticks[2]["Diffusion/p"] == pytest.approx((3 * 2 * step + 3 * step) / 4)


def test_a_wrapper_passes_upstreams_keywords_on_and_steps_after_a_d_phases_last_round():
    upstream = UpstreamLoss()
    loss = WithSync(upstream, DiffusionNoise(), settings(), stats=None)
    for sync in (False, True, False, True):
        loss.accumulate_gradients(phase="Dmain", real_img=torch.zeros(4, 3), sync=sync, gain=2, D_ema="extra")
        loss.accumulate_gradients(phase="Gmain", real_img=torch.zeros(4, 3), sync=sync, gain=2)
    assert upstream.calls[0] == ("Dmain", False, 2, {"D_ema": "extra"})  # further keywords pass on too
    assert loss.controller.step == 2  # one step per synced round of a D phase; G phases never step it

    counted = WithoutSync(NoSyncLoss(), DiffusionNoise(), settings(rounds=3), stats=None)
    for _ in range(7):
        counted.accumulate_gradients(phase="Dboth", real_img=torch.zeros(4, 3), gain=1)
    assert counted.controller.step == 2  # 7 rounds of 3 a step: two whole steps


def test_a_wrapper_checks_its_declarations_when_it_is_built_not_mid_training():
    noise = DiffusionNoise()

    class Undeclared(kit.LossWrapper):
        pass

    with pytest.raises(TypeError, match="Undeclared declares no keywords .* writes no accumulate_gradients"):
        Undeclared(UpstreamLoss(), noise, settings(), stats=None)
    with pytest.raises(ValueError, match="upstream's loop passes no sync, so settings need rounds"):
        WithoutSync(NoSyncLoss(), noise, settings(), stats=None)
    with pytest.raises(ValueError, match="settings need d_phases, the names of upstream's D phases"):
        WithSync(UpstreamLoss(), noise, dict(batch_size=4), stats=None)
    with pytest.raises(ValueError, match=r"WithSync: unknown loss setting\(s\) \['round'\]; known: batch_size, "):
        WithSync(UpstreamLoss(), noise, settings(round=2), stats=None)  # a typo in what an adapter wrote
    with pytest.raises(ValueError, match="rounds must be an int >= 1 .*; got 0"):
        WithoutSync(NoSyncLoss(), noise, settings(rounds=0), stats=None)
    with pytest.raises(UpstreamError, match=r"NoSyncLoss.accumulate_gradients does not take what WithSync passes on"):
        WithSync(NoSyncLoss(), noise, settings(), stats=None)
    with pytest.raises(TypeError, match="stats"):
        WithSync(UpstreamLoss(), noise, settings())  # where the statistics go is always said: a module, or None
