"""Contract tests of the StyleGAN2-ADA / InsGen adapter against stand-ins of the upstream names it patches.

The stand-ins (tests/standins/stylegan2_ada, mirroring upstream commit d72cc7d) keep upstream's
module names, signatures and call order with tiny networks; the checks recompute what D must
have received from the noise's own draws, and the controller's step from its closed form.
"""
import json
import math
import os
import pathlib
import pickle
import shutil
import signal
import statistics
import sys

import pytest
import torch
import torch.multiprocessing as mp

import diffaug_noise as dn
from diffaug_noise.integrations import ADAPTERS, UpstreamError, kit, stylegan2_ada
from diffaug_noise.integrations.patching import broadcast_noise_state
from helpers import STANDINS, forget_upstream

STANDIN = STANDINS / "stylegan2_ada"
UPSTREAM_MODULES = ("train", "training", "torch_utils", "dnnlib", "legacy")


@pytest.fixture
def recorded(noise_calls):
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    yield noise_calls
    forget_upstream(STANDIN, UPSTREAM_MODULES)


def train_standin(tmp_path, *extra, adapter=ADAPTERS["stylegan2"], **options):
    with adapter.patched(STANDIN, shims=True, **options) as train:
        train.main(["--outdir", str(tmp_path), "--data", "unused", *extra], standalone_mode=False)
        D, loss = train.RESULTS[-1]
    from torch_utils import training_stats

    return D, loss, dict(training_stats.REPORTS)


def sinusoids(t, dim, max_period):
    """The label e(t) computed here from its formula: [cos(t w_j), sin(t w_j)], w_j = max_period^(-j/h)."""
    half = dim // 2
    w = torch.tensor([max_period ** (-j / half) for j in range(half)], dtype=torch.float64)
    angles = t.double()[:, None] * w
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def test_noise_reaches_D_in_both_phases_and_t_reaches_its_label(tmp_path, recorded):
    D, loss, _ = train_standin(tmp_path, "--kimg", "0.032", preset="paper", aug="none")
    assert isinstance(D, stylegan2_ada.DiffusionDiscriminator) and D.D.c_dim == 32
    inner_calls = D.D.calls[1:]  # the first is upstream's network summary
    assert len(inner_calls) == len(recorded["noise"]) == 56  # 8 iterations: Gmain 16, Dmain 32, Dreg 8 (2 rounds each)
    for (img, c, _), (_, y, t, _) in zip(inner_calls, recorded["noise"]):
        assert torch.equal(img, y)  # D saw the noised batch, nothing else
        assert torch.allclose(c.double(), sinusoids(t, 32, 2.0 * D.noise.t_max), atol=1e-5)  # and its t, as the label
        assert (t >= 1).all() and (t <= D.noise.T).all()
    # Gmain draws (first of each iteration's 2 rounds) carry G's gradient through the noise.
    assert sum(requires_grad for _, _, _, requires_grad in recorded["noise"]) >= 16
    summary_img, summary_c, _ = D.D.calls[0]
    assert torch.allclose(summary_c.double(), sinusoids(torch.zeros(summary_c.shape[0]), 32, 2.0 * D.noise.t_max),
                          atol=1e-6)


def test_p_moves_by_the_controller_step_from_the_real_signs_only(tmp_path, recorded):
    D, loss, reports = train_standin(tmp_path, "--kimg", "0.032", preset="paper", aug="none", target=-1.0)
    # Reals go through D in Dmain (8 iterations) and Dreg (4), 2 rounds each: only those are observed.
    assert len(recorded["observe"]) == 24
    step = 4 * 4 / (100 * 1000)  # batch * interval / (kimg * 1000), the paper's rule
    assert loss.controller.step_size == pytest.approx(step)
    assert D.noise.p == pytest.approx(2 * step)  # two adjustments in 8 iterations, both up (r_d > -1)
    assert reports["Diffusion/p"][-1] == pytest.approx(2 * step)
    D_down, _, _ = train_standin(tmp_path / "down", "--kimg", "0.032", preset="paper", aug="none", target=1.0)
    assert D_down.noise.p == 0.0  # r_d < 1: pushed down, clipped at 0


def test_snapshot_pickles_p_and_T_and_resume_restores_them(tmp_path, recorded):
    D, _, _ = train_standin(tmp_path, "--kimg", "0.032", preset="stylegan2", aug="none", target=-1.0, t_max=20)
    (snapshot,) = sorted(tmp_path.glob("*/network-snapshot-*.pkl"))
    with open(snapshot, "rb") as f:
        saved = pickle.load(f)["D"]
    assert saved.noise.p == D.noise.p > 0 and saved.noise.T == D.noise.T
    assert saved.noise.config() == dn.DiffusionNoise.preset("stylegan2", t_max=20).config()
    assert isinstance(saved.label.embedding, dn.RawTimestep)  # the fork preset feeds t raw
    with pytest.raises(UpstreamError, match="--trust-pickle"):
        ADAPTERS["stylegan2"].run(["--outdir", str(tmp_path / "r"), "--data", "x", "--resume", str(snapshot)],
                                  repo=STANDIN)
    resumed, _, _ = train_standin(tmp_path / "resumed", "--kimg", "0.036", "--resume", str(snapshot),
                                  preset="stylegan2", aug="none", target=-1.0, t_max=20)
    assert resumed.noise.p == saved.noise.p and resumed.noise.T == saved.noise.T  # 1 iteration: no adjustment
    assert torch.equal(resumed.noise.coefficients64, saved.noise.coefficients64)


def _resave(snapshot, change):
    """Apply ``change`` to the unpickled snapshot and write it back."""
    with open(snapshot, "rb") as f:
        data = pickle.load(f)
    change(data)
    with open(snapshot, "wb") as f:
        pickle.dump(data, f)


def test_resume_goes_on_from_the_snapshots_kimg_tick_ada_p_and_controller_step(tmp_path, recorded, capsys):
    D, _, _ = train_standin(tmp_path, "--kimg", "0.032", preset="stylegan2", aug="ada")
    assert int(D.images_seen) == 32  # 8 iterations of 4
    (snapshot,) = sorted(tmp_path.glob("*/network-snapshot-*.pkl"))
    _resave(snapshot, lambda data: data["augment_pipe"].p.fill_(0.25))
    capsys.readouterr()
    resumed, loss, _ = train_standin(tmp_path / "resumed", "--kimg", "0.040", "--resume", str(snapshot),
                                     preset="stylegan2", aug="ada")
    out = capsys.readouterr().out
    # Ticks ended at 4, 12, 20, 28 and 32 images (the end of the run): the resumed loop is in tick 5, and
    # its next tick ends at 40 images, as the uninterrupted run's would.
    assert "Continuing the snapshot's run at kimg 0.032, tick 5, ADA p 0.25000" in out
    ticks = [line.split()[:4] for line in out.splitlines() if line.startswith("tick ")]
    assert ticks == [["tick", "5", "kimg", "0.040"]]
    assert int(resumed.images_seen) == 40 and loss.controller.step == 10
    assert float(loss.inner.augment_pipe.p) == 0.25  # the stand-in's loop does not adjust ADA's p

    anew, loss_anew, _ = train_standin(tmp_path / "anew", "--kimg", "0.008", "--resume", str(snapshot),
                                       preset="stylegan2", aug="ada", resume_progress=False)
    assert int(anew.images_seen) == 8 and loss_anew.controller.step == 2  # from zero, as upstream
    assert float(loss_anew.inner.augment_pipe.p) == 0.0

    with pytest.raises(UpstreamError,
                       match=r"kimg 0.032, not below --kimg 0.016; raise --kimg .* --no-resume-progress"):
        train_standin(tmp_path / "short", "--kimg", "0.016", "--resume", str(snapshot), preset="stylegan2", aug="ada")

    _resave(snapshot, lambda data: data["D"].images_seen.zero_())  # as a snapshot from elsewhere: no count
    capsys.readouterr()
    weights_only, _, _ = train_standin(tmp_path / "weights", "--kimg", "0.008", "--resume", str(snapshot),
                                       preset="stylegan2", aug="ada")
    assert "Resuming weights only" in capsys.readouterr().out and int(weights_only.images_seen) == 8


def test_training_options_name_our_classes_and_stay_json(tmp_path, recorded):
    train_standin(tmp_path, "--kimg", "0.008", preset="paper", aug="diffaug", sigma=0.1, t_dist="uniform")
    (options_file,) = tmp_path.glob("*/training_options.json")
    options = json.loads(options_file.read_text())
    assert options_file.parent.name == "standin-diffusion-paper"
    assert options["D_kwargs"]["class_name"] == "diffaug_noise.integrations.kit.DiffusionDiscriminator"
    assert options["D_kwargs"]["upstream_class"] == "training.networks.Discriminator"
    assert options["loss_kwargs"]["upstream_class"] == "training.loss.StyleGAN2Loss"
    noise_kwargs = options["D_kwargs"]["noise_kwargs"]
    assert noise_kwargs["sigma"] == 0.1 and noise_kwargs["t_dist"] == "uniform"
    assert options["augment_kwargs"] is None and options["ada_target"] is None  # diffaug replaces upstream's ADA
    # DiffAugment ran before the noise: its cutout zeroes a quarter of every image (a 4x4 square of 8x8).
    inputs = torch.cat([x for x, _, _, _ in recorded["noise"]])
    assert ((inputs == 0).all(dim=1).flatten(1).sum(dim=1) >= 16).all()


def test_aug_ada_keeps_upstreams_pipe_before_the_noise(tmp_path, recorded):
    D, loss, _ = train_standin(tmp_path, "--kimg", "0.008", preset="paper", aug="ada")
    assert loss.inner.augment_pipe is not None and loss.inner.augment_pipe.calls == len(recorded["noise"]) > 0
    (options_file,) = tmp_path.glob("*/training_options.json")
    assert json.loads(options_file.read_text())["ada_kimg"] == 100


def test_shims_are_opt_in_and_restored(tmp_path, recorded):
    had_init, pin_memory = "__init__" in torch.utils.data.Sampler.__dict__, torch.Tensor.pin_memory
    with pytest.raises(Exception):  # upstream as is: no CUDA here / Sampler signature
        with ADAPTERS["stylegan2"].patched(STANDIN, shims=False, preset="paper", aug="none") as train:
            train.main(["--outdir", str(tmp_path), "--data", "x", "--kimg", "0.004"], standalone_mode=False)
    train_standin(tmp_path / "ok", "--kimg", "0.004", preset="paper", aug="none")
    assert ("__init__" in torch.utils.data.Sampler.__dict__) == had_init
    assert torch.Tensor.pin_memory is pin_memory


def test_missing_or_wrong_checkout_says_how_to_get_the_right_one(tmp_path, monkeypatch, recorded):
    monkeypatch.delenv("DIFFAUG_NOISE_STYLEGAN2_REPO", raising=False)
    with pytest.raises(UpstreamError, match="git clone https://github.com/NVlabs/stylegan2-ada-pytorch"):
        with ADAPTERS["stylegan2"].patched(None):
            pass
    with pytest.raises(UpstreamError, match="missing train.py"):
        with ADAPTERS["stylegan2"].patched(tmp_path):
            pass
    broken = tmp_path / "broken"
    shutil.copytree(STANDIN, broken)
    text = (broken / "torch_utils" / "misc.py").read_text().replace("def ddp_sync", "def renamed_sync")
    (broken / "torch_utils" / "misc.py").write_text(text)
    with pytest.raises(UpstreamError, match=r"lacks torch_utils\.misc\.ddp_sync"):
        with ADAPTERS["stylegan2"].patched(broken):
            pass
    with pytest.raises(ValueError, match="unknown preset 'fork'"):
        stylegan2_ada.StyleGAN2Settings(preset="fork")


def test_insgen_contrastive_branch_sees_clean_labels_and_adversarial_branch_sees_t(tmp_path, recorded):
    D, loss, _ = train_standin(tmp_path, "--kimg", "0.016", "--cl", adapter=ADAPTERS["insgen"], preset="insgen",
                               aug="none")
    assert isinstance(loss.inner, sys.modules["training.contrastive_loss"].StyleGAN2LossCL)
    calls = D.D.calls[1:]
    noised = [(y, t) for _, y, t, _ in recorded["noise"]]
    adversarial = [(img, c) for img, c, features in calls if not features]
    contrastive = [(img, c) for img, c, features in calls if features]
    assert len(adversarial) == len(noised) == 28  # 4 iterations: Gmain 8, Dmain 16, Dreg 4
    assert len(contrastive) == 8  # run_cl on the reals of each Dmain round (D_ema is a copy, not recorded here)
    for (img, c), (y, t) in zip(adversarial, noised):
        # the insgen preset feeds t raw, as the fork
        assert torch.equal(img, y) and torch.equal(c, t.float().view(-1, 1))
    assert all(torch.equal(c, torch.zeros_like(c)) for _, c in contrastive)  # t = 0: clean, as the fork's run_cl
    assert D.noise.config() == dn.DiffusionNoise.preset("insgen").config()


def test_cli_runs_upstream_and_reports_setup_errors(tmp_path, recorded, monkeypatch):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    for var in ("DIFFAUG_NOISE_STYLEGAN2_REPO", "DIFFAUG_NOISE_INSGEN_REPO"):  # set where the real-upstream tests run
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    ok = CliRunner().invoke(main, ["run", "stylegan2", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                   str(tmp_path / "o"), "--aug", "none", "--target", "-1", "--", "--kimg", "0.032"])
    assert ok.exit_code == 0, ok.output
    (options,) = (tmp_path / "o").glob("*/training_options.json")
    saved = json.loads(options.read_text())
    # our options became upstream's, and the rest passed through
    assert saved["data"] == str(data) and saved["num_gpus"] == 1
    assert saved["loss_kwargs"]["diffusion"]["controller"]["target"] == -1.0 and saved["total_kimg"] == 0.032
    no_repo = CliRunner().invoke(main, ["run", "insgen", "--data", str(data), "--outdir", str(tmp_path)])
    assert no_repo.exit_code == 1 and "git clone https://github.com/genforce/insgen" in no_repo.output
    no_data = CliRunner().invoke(main, ["run", "stylegan2", "--repo", str(STANDIN), "--data", "lsun_church",
                                        "--data-root", str(tmp_path), "--outdir", str(tmp_path)])
    assert no_data.exit_code == 1 and "diffaug-noise data prepare lsun_church" in no_data.output


def _broadcast_rank(rank, path, world):
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    noise = dn.DiffusionNoise(t_min=10, t_max=100, p=0.3 if rank == 0 else 0.0)  # only rank 0 restored a snapshot
    broadcast_noise_state(noise)
    torch.save({"p": noise.p, "T": noise.T, "table": noise.coefficients64, "cdf": noise.t_cdf}, f"{path}.{rank}")
    torch.distributed.destroy_process_group()


def test_resumed_state_reaches_every_rank(tmp_path):
    path = tmp_path / "init"
    mp.spawn(_broadcast_rank, args=(str(path), 2), nprocs=2)
    ranks = [torch.load(f"{path}.{r}") for r in range(2)]
    reference = dn.DiffusionNoise(t_min=10, t_max=100, p=0.3)
    for state in ranks:
        assert state["p"] == 0.3 and state["T"] == reference.T == 10 + round(0.3 * 90)
        assert torch.equal(state["table"], reference.coefficients64) and torch.equal(state["cdf"], reference.t_cdf)
    assert math.isclose(ranks[1]["p"], ranks[0]["p"]) and os.path.exists(f"{path}.1")


def test_bench_upstream_times_baseline_and_diffusion_runs_of_the_same_loop(tmp_path):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "bench.json"
    args = ["bench", "upstream", "stylegan2", "--repo", str(STANDIN), "--data", str(data),
            "--outdir", str(tmp_path / "runs"),
            "--json", str(out), "--", "--kimg", "0.032", "--batch", "4"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    baseline, diffusion = report["runs"]["baseline"], report["runs"]["diffusion"]
    # tick 0, then every 2 iterations
    assert len(baseline["sec_per_kimg_ticks"]) == len(diffusion["sec_per_kimg_ticks"]) == 5
    ticks = [line for line in result.output.splitlines() if " tick " in line]  # shown while upstream runs
    assert [line.split()[0] for line in ticks] == ["baseline"] * 5 + ["diffusion"] * 5
    assert all(" diffusion p " in line for line in ticks[5:]) and " diffusion p " not in ticks[0]
    assert report["ratio"] == pytest.approx(diffusion["sec_per_kimg"] / baseline["sec_per_kimg"])
    assert baseline["noise_seconds"] == 0 < diffusion["noise_seconds"] < diffusion["train_seconds"]
    assert baseline["kimg"] == diffusion["kimg"] == 0.032
    assert baseline["custom_ops"] == diffusion["custom_ops"] == {} and "loaded: none" in result.output
    assert report["noise_share"] == pytest.approx(diffusion["noise_seconds"] / 0.032 / diffusion["sec_per_kimg"])
    options = json.loads((pathlib.Path(diffusion["run_dir"]) / "training_options.json").read_text())
    assert options["D_kwargs"]["class_name"].endswith("DiffusionDiscriminator")
    assert "Diffusion" not in (pathlib.Path(baseline["run_dir"]) / "training_options.json").read_text()
    short = CliRunner().invoke(main, args[:-5] + ["--", "--kimg", "0.004", "--batch", "4"])
    assert short.exit_code == 1 and "logged only the warm-up tick; give upstream more --kimg" in short.output
    assert "the baseline run logged" in short.output and "diffusion  tick" not in short.output  # stopped before it
    bad = CliRunner().invoke(main, ["bench", "upstream", "biggan", "--data", str(data)])
    assert bad.exit_code == 2 and "No such command 'biggan'" in bad.output
    for flags, message in [(["--t-dist", "cosine"], "'cosine' is not one of"),
                           (["--target", "2"], "2.0 is not in the range -1.0<=x<=1.0")]:
        wrong = CliRunner().invoke(main, ["bench", "upstream", "stylegan2", "--data", str(data), *flags])
        assert wrong.exit_code == 2 and message in wrong.output, wrong.output


def test_bench_upstream_stops_each_run_at_its_time_limit_and_measures_the_ticks_it_logged(tmp_path):
    """--seconds-per-run makes a pair of runs fit a known time (a GPU lease) whatever upstream's speed."""
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "bench.json"
    args = ["bench", "upstream", "stylegan2", "--repo", str(STANDIN), "--data", str(data),
            "--outdir", str(tmp_path / "runs"),
            "--json", str(out), "--seconds-per-run", "8", "--", "--kimg", "1000", "--batch", "4"]
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job: the runs inherit it
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for mode, run in report["runs"].items():
        assert run["stopped"] and 0 < run["kimg"] < 1000, mode  # --kimg 1000 takes hours here
        assert run["train_seconds"] >= 8, (mode, run["train_seconds"])  # never stopped before its limit
        # the ticks it logged, warm-up left out
        assert run["sec_per_kimg"] == statistics.median(run["sec_per_kimg_ticks"][1:])
        assert f"(stopped at {run['kimg']:g} kimg by --seconds-per-run)" in result.output
        records = (pathlib.Path(run["run_dir"]) / "stats.jsonl").read_text().splitlines()
        assert [json.loads(r)["Timing/sec_per_kimg"]["mean"] for r in records] == run["sec_per_kimg_ticks"]
    diffusion = report["runs"]["diffusion"]
    share = diffusion["noise_seconds"] / diffusion["kimg"] / diffusion["sec_per_kimg"]
    assert report["noise_share"] == pytest.approx(share)
    assert 0 < diffusion["noise_seconds"] < diffusion["train_seconds"]

    early = CliRunner().invoke(main, args[:-7] + ["--seconds-per-run", "0.001", "--", "--kimg", "1000", "--batch", "4"])
    assert early.exit_code == 1
    assert "the baseline run was stopped at its 0.001 s limit after logging no tick" in early.output
    assert "diffusion  tick" not in early.output
    for wrong in ("0", "-3", "soon"):
        bad = CliRunner().invoke(main, args[:-7] + ["--seconds-per-run", wrong])
        assert bad.exit_code == 2 and "--seconds-per-run" in bad.output, bad.output


def test_bench_upstream_options_reach_the_diffusion_run(tmp_path):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "bench.json"
    args = ["bench", "upstream", "stylegan2", "--repo", str(STANDIN), "--data", str(data),
            "--outdir", str(tmp_path / "runs"),
            "--preset", "stylegan2", "--t-dist=uniform", "--no-resume-progress",
            "--json", str(out), "--", "--kimg", "0.016", "--batch", "4"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    diffusion = json.loads(out.read_text())["runs"]["diffusion"]
    options = json.loads((pathlib.Path(diffusion["run_dir"]) / "training_options.json").read_text())
    assert options["D_kwargs"]["noise_kwargs"]["t_dist"] == "uniform"
    assert options["D_kwargs"]["t_label"] == "raw"  # the fork preset's way of feeding t


TORCHRUN = '''
import os, sys
import diffaug_noise as dn
from diffaug_noise.integrations import ADAPTERS

_update = dn.AdaptiveController.update

def logged(self):
    adjusted = _update(self)
    if adjusted:
        print(f"ADJUST rank={os.environ['RANK']} step={self.step} p={self.noise.p!r} T={self.noise.T}", flush=True)
    return adjusted

dn.AdaptiveController.update = logged
repo, out, kimg, resume = sys.argv[1:5]
ADAPTERS["stylegan2"].run(["--outdir", out, "--data", "x", "--kimg", kimg, "--batch", "4"]
                          + (["--resume", resume] if resume != "-" else []),
                          repo=repo, launcher="torchrun", aug="none", target=-1.0, trust_pickle=True)
'''


def _torchrun(tmp_path, kimg, resume="-"):
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "rank.py"
    script.write_text(TORCHRUN)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                           "127.0.0.1", "--master-port", str(port), str(script), str(STANDIN), str(tmp_path / "out"),
                           kimg, resume], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _adjustments_by_rank(stdout):
    import re

    adjustments = re.findall(r"ADJUST rank=(\d) step=(\d+) p=(\S+) T=(\d+)", stdout)
    return {r: [(int(step), float(p), int(t)) for rank, step, p, t in adjustments if rank == r] for r in "01"}


def test_torchrun_two_cpu_ranks_keep_p_identical_and_one_run_folder(tmp_path):
    by_rank = _adjustments_by_rank(_torchrun(tmp_path, "0.064"))
    assert len(by_rank["0"]) == 4 and by_rank["0"] == by_rank["1"]  # 16 iterations, an adjustment every 4, all-reduced
    assert by_rank["0"][-1][1] > 0  # target -1: p went up
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["standin-diffusion-paper"]  # rank 0 alone made it
    options = json.loads((tmp_path / "out" / "standin-diffusion-paper" / "training_options.json").read_text())
    assert options["num_gpus"] == 2  # --gpus became the world size


def test_torchrun_ranks_resume_at_the_same_image_count_p_and_controller_step(tmp_path, recorded):
    D, _, _ = train_standin(tmp_path / "first", "--kimg", "0.064", preset="paper", aug="none", target=-1.0)
    (snapshot,) = (tmp_path / "first").glob("*/network-snapshot-*.pkl")
    by_rank = _adjustments_by_rank(_torchrun(tmp_path, "0.080", resume=str(snapshot)))
    step = 4 * 4 / (100 * 1000)
    # 16 iterations done before; 4 more: one adjustment, at the 20th step, from the snapshot's p, on both ranks.
    assert by_rank["0"] == by_rank["1"] and [s for s, _, _ in by_rank["0"]] == [20]
    assert by_rank["0"][0][1] == pytest.approx(D.noise.p + step)


def test_torchrun_launcher_outside_torchrun_names_the_fix(tmp_path, monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UpstreamError, match="--launcher torchrun needs the variables torchrun sets"):
        ADAPTERS["stylegan2"].run(["--outdir", str(tmp_path), "--data", "x"], repo=STANDIN, launcher="torchrun")


def test_a_read_only_outdir_for_upstream_is_one_line(tmp_path, recorded, read_only_dir):
    """Upstream's own writes fail there (an OSError from its code, not ours): still one line, naming the path."""
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(main, ["run", "stylegan2", "--repo", str(STANDIN), "--data", str(data),
                                       "--outdir", str(read_only_dir), "--", "--kimg", "0.032"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "Read-only file system" in result.output and "[EROFS]" in result.output
    assert str(read_only_dir) in result.output


def test_snapshots_of_earlier_versions_still_unpickle():
    """Their D and its raw-t label were pickled as stylegan2_ada.DiffusionDiscriminator and
    stylegan2_ada.RawTimestep."""
    for name, now in (("DiffusionDiscriminator", kit.DiffusionDiscriminator), ("RawTimestep", dn.RawTimestep)):
        reference = f"cdiffaug_noise.integrations.stylegan2_ada\n{name}\n.".encode()  # a pickle's global, protocol 0
        assert pickle.loads(reference) is now
