"""Upstream's own errors reach the user in one line, under upstream's name, from every rank (issue 31, 2 and 6)."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from diffaug_noise.cli.main import main
from diffaug_noise.integrations.launch import lost_peer, tell_torchrun
from helpers import STANDINS, forget_upstream

UPSTREAM_MODULES = ("train", "training", "torch_utils", "dnnlib", "legacy", "R3GAN", "pkg_resources")


@pytest.fixture
def standins():
    for name in ("stylegan3", "r3gan"):
        forget_upstream(STANDINS / name, UPSTREAM_MODULES)
    yield
    for name in ("stylegan3", "r3gan"):
        forget_upstream(STANDINS / name, UPSTREAM_MODULES)


@pytest.mark.parametrize("adapter, upstream_args, message", [
    ("stylegan3", ["--cfg", "stylegan4", "--batch", "4", "--gamma", "1"],
     "stylegan3's train.py: Invalid value for '--cfg': 'stylegan4' is not one of"),
    ("stylegan3", ["--cfg", "stylegan2", "--batch", "4"], "stylegan3's train.py: Missing option '--gamma'."),
    ("r3gan", ["--batch", "4"], "R3GAN's train.py: Missing option '--preset'."),
])
def test_upstreams_usage_errors_are_labelled_as_upstreams(adapter, upstream_args, message, tmp_path, standins):
    result = CliRunner().invoke(main, ["run", adapter, "--repo", str(STANDINS / adapter), "--data", str(tmp_path),
                                       "--outdir", str(tmp_path / "runs"), "--", *upstream_args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert f"(its options: diffaug-noise run {adapter} --repo PATH -- --help)" in result.output
    assert "Usage: diffaug-noise" not in result.output and "Try 'diffaug-noise" not in result.output


def test_dash_dash_help_lists_upstreams_options_with_only_the_checkout(standins):
    result = CliRunner().invoke(main, ["run", "stylegan3", "--repo", str(STANDINS / "stylegan3"), "--", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: diffaug-noise run stylegan3 [OPTIONS] -- [OPTIONS]" in result.output
    assert "--gamma" in result.output and "--cfg" in result.output  # upstream's options, not ours
    assert "--t-dist" not in result.output


def test_torchrun_reads_a_ranks_one_line_error(tmp_path, monkeypatch):
    """What tell_torchrun writes, torch's own reader of worker error files shows as the rank's traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    tell_torchrun("Error: rank 0: stylegan3's train.py: --batch-gpu cannot be smaller than --mbstd")
    failure = ProcessFailure(local_rank=0, pid=1, exitcode=1, error_file=str(path))
    summary = ChildFailedError("diffaug_noise.cli", {0: failure}).format_msg()
    assert "traceback : Error: rank 0: stylegan3's train.py: --batch-gpu cannot be smaller than --mbstd" in summary
    assert json.loads(path.read_text())["message"]["message"].startswith("Error: rank 0:")


def test_a_collective_whose_peer_is_gone_is_recognised():
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                        "[127.0.0.1]:35764")
    assert lost_peer(gloo) and not lost_peer(RuntimeError("Found no NVIDIA driver on your system"))
    assert not lost_peer(ValueError("Connection closed by peer"))


def test_two_torchrun_ranks_show_rank_zeros_error_alone(tmp_path):
    """Rank 0 stops on upstream's usage error; rank 1, waiting for it, says one line; torchrun's summary names it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "diffaug_noise.cli", "run", "stylegan3", "--launcher", "torchrun", "--repo",
                           str(STANDINS / "stylegan3"), "--data", str(tmp_path), "--outdir", str(tmp_path / "runs"),
                           "--", "--cfg", "stylegan4", "--batch", "4", "--gamma", "1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    output = proc.stdout + proc.stderr
    line = "Error: rank 0: stylegan3's train.py: Invalid value for '--cfg': 'stylegan4'"
    assert proc.returncode != 0 and line in output, output
    assert "  traceback : " + line in output  # torchrun's "Root Cause" carries it
    assert "Traceback" not in "".join(ln for ln in output.splitlines(True) if ln.startswith("[rank"))
    rank1 = [ln for ln in output.splitlines() if "rank 1" in ln and ln.startswith("Error")]
    assert rank1 in ([], ["Error: rank 1: stopped because another rank of the job stopped first (its error is "
                          "above)"])  # or torchrun had stopped it already


def test_a_bundled_dataset_is_prepared_on_first_use_so_readmes_cpu_check_runs(tmp_path, standins):
    root = tmp_path / "root"
    result = CliRunner().invoke(main, ["run", "stylegan3", "--repo", str(STANDINS / "stylegan3"), "--data", "digits",
                                       "--data-root", str(root), "--outdir", str(tmp_path / "runs"), "--", "--cfg",
                                       "stylegan2", "--batch", "4", "--gamma", "1", "--kimg", "0.008"])
    assert result.exit_code == 0, result.output  # was: "dataset 'digits' is not prepared"
    (run,) = (tmp_path / "runs").iterdir()
    assert (root / "digits-8x8.zip").is_file()
    assert str(root / "digits-8x8.zip") in (run / "training_options.json").read_text()
    missing = CliRunner().invoke(main, ["run", "stylegan3", "--repo", str(STANDINS / "stylegan3"), "--data",
                                        "cifar10", "--data-root", str(root), "--outdir", str(tmp_path / "runs"),
                                        "--", "--cfg", "stylegan2", "--batch", "4", "--gamma", "1"])
    assert missing.exit_code == 1 and "diffaug-noise data prepare cifar10" in missing.output  # not bundled
