"""The StyleGAN3 adapter against stand-ins of NVlabs/stylegan3's modules (tests/standins/stylegan3/README.md)."""
import json
import pathlib
import pickle
import re
import sys

import pytest
import torch

import diffaug_noise as dn
from diffaug_noise.integrations import ADAPTERS, UpstreamError, kit, stylegan3
from helpers import STANDINS, forget_upstream, run_dirs, stats_of, train_standin

STANDIN = STANDINS / "stylegan3"
UPSTREAM_MODULES = ("train", "training", "torch_utils", "dnnlib", "legacy", "pkg_resources")


@pytest.fixture
def recorded(noise_calls):
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    yield noise_calls
    forget_upstream(STANDIN, UPSTREAM_MODULES)


def train(out, *extra, **options):
    return train_standin(ADAPTERS["stylegan3"], STANDIN, ["--outdir", str(out), "--data", "unused", "--gpus", "1",
                                                      "--batch", "4", "--gamma", "1", *extra], **options)


stats = stats_of


def test_every_phase_sees_noise_after_blur_and_augmentation_and_t_reaches_the_label(tmp_path, recorded, monkeypatch):
    from diffaug_noise.integrations.kit import DiffusionDiscriminator

    augmented, labels = [], []
    D_forward = DiffusionDiscriminator.forward

    def forward(self, img, c, t=None, **kwargs):
        if t is not None:
            labels.append((c.clone(), t.clone(), self.label(c, t).detach().clone()))
        return D_forward(self, img, c, t, **kwargs)
    monkeypatch.setattr(DiffusionDiscriminator, "forward", forward)
    import importlib
    sys.path.insert(0, str(STANDIN))
    augment = importlib.import_module("training.augment")
    pipe_forward = augment.AugmentPipe.forward
    monkeypatch.setattr(augment.AugmentPipe, "forward",
                        lambda self, x: augmented.append(pipe_forward(self, x)) or augmented[-1])
    D, loss, reports = train(tmp_path, "--cfg", "stylegan3-r", "--kimg", "0.016", "--cond", "true")
    # every D call of the loss went through the noise, and its input was exactly what augmentation made
    assert len(recorded["noise"]) == len(augmented) == len(labels) > 0
    for (x, y, t, _), a in zip(recorded["noise"], augmented):
        assert torch.equal(x, a.detach())
    # t through the label input: the class one-hot kept, then sinusoids of t (the kit's TimestepLabel)
    for (c, t, label), (_, _, t_noise, _) in zip(labels, recorded["noise"]):
        assert torch.equal(t, t_noise) and label.shape == (c.shape[0], 3 + 32)
        assert torch.equal(label[:, :3], c) and torch.allclose(label[:, 3:], D.label.embedding(t))
    assert D.D.c_dim == 3 + 32 and isinstance(loss.inner.D, stylegan3.NoisedD)
    assert max(loss.inner.blur_sigmas) > 0  # stylegan3-r blurs: the noise came after it


def test_only_reals_are_observed_and_p_moves_once_per_step_without_sync(tmp_path, recorded):
    D, loss, reports = train(tmp_path, "--cfg", "stylegan2", "--aug", "noaug", "--kimg", "0.064", target=-1.0)
    # 16 steps of batch 4 in rounds of 2 (batch_gpu 4? no: batch 4 on 1 GPU gives batch_gpu 4, one round)
    real_calls = [obs for obs in recorded["observe"]]
    D_reg_steps = 16 // 16  # Dreg every 16 iterations
    assert len(real_calls) == 16 + D_reg_steps  # Dmain's reals every step, Dreg's once: fakes never observed
    assert loss.controller.step == 16 and len(reports["Diffusion/p"]) == 16
    assert len(reports["Diffusion/r_d"]) == 13  # from the first adjustment (the 4th step) on: never a NaN
    step = loss.controller.step_size
    assert loss.noise.p == pytest.approx(step * sum(r > -1 for r in reports["Diffusion/r_d"][::4]))
    assert int(D.images_seen) == 64


def test_rounds_are_counted_when_a_step_has_several(tmp_path, recorded):
    D, loss, reports = train(tmp_path, "--cfg", "stylegan2", "--aug", "noaug", "--kimg", "0.032", "--batch-gpu", "2")
    assert loss._rounds == 2 and loss.controller.step == 8 and int(D.images_seen) == 32


def test_snapshot_holds_p_T_and_the_count_and_loads_with_upstreams_loader(tmp_path, recorded):
    D, loss, _ = train(tmp_path, "--cfg", "stylegan2", "--kimg", "0.064", target=-1.0)
    (run,) = run_dirs(tmp_path)
    snapshot = sorted(run.glob("network-snapshot-*.pkl"))[-1]
    import legacy

    with open(snapshot, "rb") as f:
        data = legacy.load_network_pkl(f)
    assert type(data["D"]).__name__ == "DiffusionDiscriminator" and data["D"].noise.p == D.noise.p > 0
    assert data["D"].noise.T == D.noise.T and int(data["D"].images_seen) == 64
    assert data["G_ema"](torch.randn(2, 4), torch.zeros(2, 0)).shape == (2, 3, 8, 8)  # what gen_images.py calls
    options = json.loads((run / "training_options.json").read_text())
    assert options["D_kwargs"]["class_name"] == "diffaug_noise.integrations.kit.DiffusionDiscriminator"
    assert options["D_kwargs"]["upstream_class"] == "training.networks_stylegan2.Discriminator"
    assert options["loss_kwargs"]["diffusion"]["rounds"] == 1


@pytest.mark.parametrize("cfg", ["stylegan2", "stylegan3-r"])
def test_resume_goes_on_as_if_the_run_had_not_stopped(tmp_path, recorded, cfg):
    """20 iterations straight against 8 and a --resume to 20: the same ticks, kimg, ADA p, EMA, blur, noise p and T."""
    # ADA's target below any mean of signs: its p rises at every adjustment; a tick per iteration, so the part run
    # (8 iterations: two controller intervals) ends on a tick, as a snapshot of a long run does
    common = ["--cfg", cfg, "--target", "-1", "--tick", "0.004"]
    whole = train(tmp_path / "whole", *common, "--kimg", "0.08", target=-1.0)
    train(tmp_path / "part", *common, "--kimg", "0.032", target=-1.0)
    (part_run,) = run_dirs(tmp_path / "part")
    snapshot = sorted(part_run.glob("network-snapshot-*.pkl"))[-1]
    rest = train(tmp_path / "rest", *common, "--kimg", "0.08", "--resume", str(snapshot), target=-1.0)
    (whole_run,), (rest_run,) = run_dirs(tmp_path / "whole"), run_dirs(tmp_path / "rest")
    keys = ("Progress/tick", "Progress/kimg", "Progress/augment", "Progress/ema_beta")
    ticks = lambda run: [[s[k]["mean"] for k in keys] for s in stats(run)]  # noqa: E731
    assert ticks(rest_run) == ticks(whole_run)[-len(ticks(rest_run)):] and ticks(rest_run)[0][0] > 0
    assert (rest[0].noise.p, rest[0].noise.T) == (whole[0].noise.p, whole[0].noise.T) and whole[0].noise.p > 0
    assert int(rest[0].images_seen) == int(whole[0].images_seen) == 80 and rest[1].controller.step == 20
    assert rest[1].inner.blur_sigmas == whole[1].inner.blur_sigmas[-len(rest[1].inner.blur_sigmas):]
    if cfg == "stylegan3-r":
        assert rest[1].inner.blur_sigmas[0] > 0  # upstream's resume would have switched the blur off
    again = train(tmp_path / "plain", *common, "--kimg", "0.08", "--resume", str(snapshot), target=-1.0,
                  resume_progress=False)
    (plain_run,) = run_dirs(tmp_path / "plain")
    assert stats(plain_run)[0]["Progress/tick"]["mean"] == 0 and again[1].controller.step == 20  # upstream's restart


def test_upstreams_own_imports_need_the_pkg_resources_shim(tmp_path, recorded):
    pytest.importorskip("setuptools")
    import importlib.util

    if importlib.util.find_spec("pkg_resources") is not None:
        pytest.skip("this install still ships pkg_resources")
    with pytest.raises(UpstreamError, match="No module named 'pkg_resources'"):
        with ADAPTERS["stylegan3"].patched(STANDIN, shims=False):
            pass
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    with ADAPTERS["stylegan3"].patched(STANDIN, shims=True):
        assert "pkg_resources" in sys.modules
    assert "pkg_resources" not in sys.modules  # undone after the block


def test_two_gloo_ranks_keep_every_D_buffer_identical_so_upstreams_snapshot_check_passes(tmp_path, recorded, capfd):
    """StyleGAN3 asserts all D buffers equal on every rank at each snapshot; the ranks see different data here."""
    with ADAPTERS["stylegan3"].patched(STANDIN, shims=True, target=-1.0) as upstream:
        upstream.main(["--outdir", str(tmp_path), "--data", "unused", "--gpus", "2", "--batch", "8", "--gamma", "1",
                       "--cfg", "stylegan2", "--kimg", "0.064", "--snap", "1"], standalone_mode=False)
    (run,) = run_dirs(tmp_path)
    snapshots = sorted(run.glob("network-snapshot-*.pkl"))
    assert len(snapshots) >= 3  # check_ddp_consistency ran at each, on both ranks, and passed
    with open(snapshots[-1], "rb") as f:
        D = pickle.load(f)["D"]
    assert D.noise.p > 0 and int(D.images_seen) == 64
    assert set(dict(D.named_buffers())) == {"noise.p_value", "noise.T_value", "noise.sqrt_abar",
                                            "noise.sqrt_one_minus_abar",
                                            "noise.t_cdf", "noise.coefficients32", "noise.coefficients64",
                                            "images_seen",
                                            "label.embedding.frequencies"}  # no per-rank accumulator among them


def test_the_kits_loss_keeps_its_accumulators_out_of_D(recorded):
    D = kit.DiffusionDiscriminator(0, "torch.nn.Identity", noise_kwargs={}, t_dim=8)
    before = {k: v.clone() for k, v in D.state_dict().items() if isinstance(v, torch.Tensor)}

    class Duties(kit.LossWrapper):  # the kit's duties alone, around no upstream loss
        def accumulate_gradients(self, phase):
            self.round_done(phase, sync=True)

    loss = Duties(object(), D.noise, dict(batch_size=4, d_phases=["Dmain"], controller=dict(interval=2)),
                  images_seen=D.images_seen, stats=None)
    for _ in range(3):
        loss.controller.observe(torch.randn(4))
    # observing touches no buffer
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items() if k in before)
    assert D.noise.checked_state(D.noise.state_dict())  # and an update leaves p, T and the tables consistent
    loss.accumulate_gradients("Dmain")
    loss.accumulate_gradients("Dmain")
    D.noise.checked_state(D.noise.state_dict())


def test_cli_runs_stylegan3_and_its_help_lists_the_knobs(tmp_path, recorded):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    help_text = CliRunner().invoke(main, ["run", "stylegan3", "--help"]).output
    assert "D(noise(augment(blur(x))), c, t)" in help_text
    assert "--t-label" in help_text and "--resume-progress" in help_text
    ok = CliRunner().invoke(main, ["run", "stylegan3", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                   str(tmp_path / "o"), "--", "--cfg", "stylegan3-t", "--batch", "4", "--gamma", "1"])
    assert ok.exit_code == 0, ok.output
    (run,) = run_dirs(tmp_path / "o")
    assert run.name.endswith("-diffusion-paper") and (run / "log.txt").exists() is False  # the stand-in keeps no log
    assert dn.DiffusionNoise().config() == pickle.load(open(sorted(run.glob("*.pkl"))[-1], "rb"))["D"].noise.config()


def test_bench_upstream_times_stylegan3_with_and_without_the_adapter(tmp_path):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "upstream", "stylegan3", "--repo", str(STANDIN), "--data",
                                       str(data), "--outdir", str(tmp_path / "runs"), "--json", str(out), "--", "--cfg",
                                       "stylegan3-t", "--batch", "4", "--gamma", "1", "--kimg", "0.032"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    baseline, diffusion = report["runs"]["baseline"], report["runs"]["diffusion"]
    # tick 0, then every 2 iterations
    assert len(baseline["sec_per_kimg_ticks"]) == len(diffusion["sec_per_kimg_ticks"]) == 5
    assert baseline["noise_seconds"] == 0 < diffusion["noise_seconds"] < diffusion["train_seconds"]
    assert report["ratio"] == pytest.approx(diffusion["sec_per_kimg"] / baseline["sec_per_kimg"])
    assert "Diffusion" not in (pathlib.Path(baseline["run_dir"]) / "training_options.json").read_text()
    options = (pathlib.Path(diffusion["run_dir"]) / "training_options.json").read_text()
    assert "stylegan3.DiffusionStyleGAN3Loss" in options and "kit.DiffusionDiscriminator" in options


def test_the_drift_guard_speaks_once_on_the_tick_line_and_in_the_stats(tmp_path, recorded, capsys):
    """Target 1 with a D at its random start: r_d far below it while T sits at t_min, every adjustment."""
    D, loss, reports = train(tmp_path, "--cfg", "stylegan2", "--aug", "noaug", "--kimg", "0.064", target=1.0,
                             drift_updates=2)
    ticks = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tick ")]
    flagged = [line for line in ticks if "| drift guard: T has stayed at t_min = 10 for 2 adjustments" in line]
    assert len(flagged) == 1 and ticks.index(flagged[0]) > 0  # once, from the tick after it spoke
    assert loss.controller.drift is not None and reports["Diffusion/pinned"][-1] == -1.0
    assert reports["Diffusion/pinned"][3] == -1.0  # the first adjustment already counted as stuck


def test_a_progress_line_comes_between_ticks_when_a_tick_takes_long(tmp_path, recorded, monkeypatch, capsys):
    """Upstream prints only at ticks; rank 0 adds `  kimg ... s/iteration` lines when PROGRESS_SECONDS pass."""
    from diffaug_noise.integrations import patching

    monkeypatch.setattr(patching, "_clock", lambda: 0.0)  # time stands still: never a progress line
    train(tmp_path / "still", "--cfg", "stylegan2", "--kimg", "0.032", "--tick", "0.016")
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("  kimg ")]
    clock = iter(range(0, 10 ** 6, 31))  # each reading 31 s after the one before: over PROGRESS_SECONDS at every step
    monkeypatch.setattr(patching, "_clock", lambda: next(clock))
    train(tmp_path / "slow", "--cfg", "stylegan2", "--kimg", "0.032", "--tick", "0.016")
    out = capsys.readouterr().out.splitlines()
    progress = [line for line in out if line.startswith("  kimg ")]
    kimg = [float(line.split()[1]) for line in progress]
    assert kimg == pytest.approx([0.004 * k for k in range(2, 9)])  # every step after the first (batch 4, 8 steps)
    assert all(re.search(r"\d+\.\d\d s/iteration  diffusion p [\d.]+ +T \d+$", line) for line in progress)
    ticks = [i for i, line in enumerate(out) if line.startswith("tick ")]
    assert ticks and not any(out[i].startswith("  kimg ") for i in ticks)  # tick lines stay as upstream's
