"""Mode-coverage metrics on hand-made samples with known answers."""
import math

import pytest
import torch

from diffaug_noise.demos.ensemble import EnsembleMLP
from diffaug_noise.demos.toy import grid_means, mode_metrics, sample_grid

MEANS = grid_means(5, 2.0)


def test_grid_means_are_the_5x5_lattice():
    assert MEANS.shape == (25, 2)
    assert sorted(set(MEANS[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert sorted(set(MEANS[:, 1].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_all_modes_covered_uniformly():
    samples = MEANS.repeat_interleave(100, dim=0) + 0.01
    out = mode_metrics(samples, MEANS, std=0.05)
    assert out == {"modes_covered": 25, "modes_hit": 25, "hq_share": 1.0, "reverse_kl": pytest.approx(0.0, abs=1e-12),
                   "counts": [100] * 25}


def test_collapsed_generator_known_counts_and_kl():
    # 7 modes with 30 HQ samples each, one mode with 19 HQ (not covered), 50 far-off samples.
    hq = torch.cat([MEANS[i].repeat(30, 1) for i in range(7)] + [MEANS[7].repeat(19, 1)])
    off = torch.full((50, 2), 1.0)  # halfway between modes: 1.41 from the nearest, far beyond 3 std
    out = mode_metrics(torch.cat([hq, off]), MEANS, std=0.05)
    assert out["modes_covered"] == 7 and out["modes_hit"] == 8
    assert out["hq_share"] == pytest.approx(229 / 279)
    q = [30 / 229] * 7 + [19 / 229]
    assert out["reverse_kl"] == pytest.approx(sum(v * math.log(25 * v) for v in q), rel=1e-12)


def test_hq_radius_is_three_stds():
    inside = MEANS[0] + torch.tensor([0.149, 0.0])
    outside = MEANS[0] + torch.tensor([0.151, 0.0])
    assert mode_metrics(inside.unsqueeze(0), MEANS, std=0.05)["hq_share"] == 1.0
    out = mode_metrics(outside.unsqueeze(0), MEANS, std=0.05)
    assert out["hq_share"] == 0.0 and out["reverse_kl"] == math.inf


def test_real_data_scores_full_coverage_and_3sigma_share():
    samples = sample_grid(2500, MEANS, 0.05, torch.Generator().manual_seed(0))
    out = mode_metrics(samples, MEANS, std=0.05)
    assert out["modes_covered"] == 25
    # In 2-D, P(|N(0, I)| <= 3) = 1 - exp(-9/2); 6 binomial standard errors.
    p = 1 - math.exp(-4.5)
    assert abs(out["hq_share"] - p) < 6 * math.sqrt(p * (1 - p) / 2500)


def test_metric_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"samples must have shape \[N, 2\]; got \(4, 3\)"):
        mode_metrics(torch.zeros(4, 3), MEANS, std=0.05)


def test_ensemble_members_train_independently():
    """Batched training equals training each member alone (same init seed, same data)."""
    torch.manual_seed(0)
    x, target = torch.randn(2, 8, 3), torch.randn(2, 8, 1)
    together = EnsembleMLP([1, 2], [3, 16, 1])
    alone = EnsembleMLP([2], [3, 16, 1])
    opt_t, opt_a = torch.optim.Adam(together.parameters(), 1e-2), torch.optim.Adam(alone.parameters(), 1e-2)
    for _ in range(5):
        for opt, loss in ((opt_t, ((together(x) - target) ** 2)), (opt_a, ((alone(x[1:]) - target[1:]) ** 2))):
            opt.zero_grad()
            loss.mean(dim=(1, 2)).sum().backward()
            opt.step()
    torch.testing.assert_close(together(x)[1], alone(x[1:])[0], rtol=1e-5, atol=1e-6)


def test_toy_ddgan_runs_beside_the_one_step_gans_reports_nfe_and_resumes_bit_exactly(tmp_path):
    import dataclasses

    from diffaug_noise.demos.toy import ToySettings, train_toy

    config = ToySettings(iterations=12, seeds=(0, 1), methods=("plain", "ddgan"), eval_samples=200, log_every=4,
                       ddgan_lr_schedule="cosine")  # a decaying rate resumes too
    whole = train_toy(config)
    assert [(r["method"], r["seed"], r["nfe"]) for r in whole["runs"]] == [("plain", 0, 1), ("plain", 1, 1),
                                                                          ("ddgan", 0, 4), ("ddgan", 1, 4)]
    assert whole["samples"]["ddgan/seed0"].shape == (200, 2)
    assert not torch.equal(whole["samples"]["ddgan/seed0"], whole["samples"]["ddgan/seed1"])
    alone = train_toy(dataclasses.replace(config, methods=("ddgan",)))
    torch.testing.assert_close(alone["samples"]["ddgan/seed1"], whole["samples"]["ddgan/seed1"])  # independent of plain

    class Interrupted(Exception):
        pass

    def crash_at_8(iteration):
        if iteration == 8:
            raise Interrupted

    checkpoint = str(tmp_path / "c.pt")
    with pytest.raises(Interrupted):
        train_toy(config, on_step=crash_at_8, checkpoint=checkpoint, checkpoint_every=6)
    resumed = train_toy(config, checkpoint=checkpoint, checkpoint_every=6, resume=True)
    for name in whole["samples"]:
        assert torch.equal(whole["samples"][name], resumed["samples"][name]), name


def test_toy_ddgan_samples_with_the_ema_of_g_and_its_own_learning_rates(tmp_path):
    import dataclasses

    from diffaug_noise.demos.toy import ToySettings, train_toy
    from diffaug_noise.demos.toy.ddgan import DdganEnsemble

    config = ToySettings(iterations=10, seeds=(0,), methods=("ddgan",), eval_samples=100, ddgan_ema=0.5,
                       ddgan_lr_g=1.6e-4, ddgan_lr_d=1.25e-4, ddgan_beta2=0.9)
    ensemble = DdganEnsemble([0], config, torch.device("cpu"))
    assert [group["lr"] for group in (*ensemble.opt_g.param_groups, *ensemble.opt_d.param_groups)] == [1.6e-4, 1.25e-4]
    assert ensemble.opt_g.param_groups[0]["betas"] == (0.5, 0.9)
    start = [w.clone() for w in ensemble.G.parameters()]
    real, z = torch.randn(1, 64, 2), torch.randn(1, 64, config.z_dim)
    ensemble.step(real, z, z)
    for average, weights, before in zip(ensemble.G_ema.parameters(), ensemble.G.parameters(), start):
        torch.testing.assert_close(average, (before + weights) / 2)  # decay 0.5: halfway
    frozen = train_toy(dataclasses.replace(config, ddgan_ema=1.0))  # an average that never moves: the initial G
    untrained = train_toy(dataclasses.replace(config, ddgan_ema=1.0, iterations=1))
    assert torch.equal(frozen["samples"]["ddgan/seed0"], untrained["samples"]["ddgan/seed0"])
    assert not torch.equal(frozen["samples"]["ddgan/seed0"], train_toy(config)["samples"]["ddgan/seed0"])


def test_ddgan_cosine_schedule_decays_to_the_official_final_rate_and_constant_stays():
    from diffaug_noise.demos.toy import ToySettings
    from diffaug_noise.demos.toy.ddgan import DdganEnsemble

    real, z = torch.randn(1, 16, 2), torch.randn(1, 16, 2)
    rates = {}
    for schedule in ("constant", "cosine"):
        config = ToySettings(seeds=(0,), methods=("ddgan",), ddgan_lr_g=1.6e-4, ddgan_lr_schedule=schedule)
        ensemble = DdganEnsemble([0], config, torch.device("cpu"))
        rates[schedule] = []
        for progress in (0.0, 0.5, 1.0):
            ensemble.step(real, z, z, progress=progress)
            rates[schedule].append((ensemble.opt_g.param_groups[0]["lr"], ensemble.opt_d.param_groups[0]["lr"]))
    assert rates["constant"] == [(1.6e-4, 1e-3)] * 3
    expected = [(1.6e-4, 1e-3), ((1.6e-4 + 1e-5) / 2, (1e-3 + 1e-5) / 2), (1e-5, 1e-5)]
    for got, want in zip(rates["cosine"], expected):
        assert got == pytest.approx(want, rel=1e-9)


def test_the_toy_trains_twice_as_long_by_default_when_ddgan_is_among_the_methods():
    from diffaug_noise.demos.toy import ToySettings

    assert ToySettings().iterations == 6000 and ToySettings(methods=("plain", "ddgan")).iterations == 12000
    assert ToySettings(methods=("ddgan",), iterations=5).iterations == 5
