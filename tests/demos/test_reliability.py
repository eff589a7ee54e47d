"""Crash safety and hostile inputs: SIGKILL then --resume, corrupt checkpoints, unsafe pickles, NaN checks."""
import json
import os
import pathlib
import pickle
import random
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import diffaug_noise as dn
from diffaug_noise.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffaug_noise.cli.main import main

CLI = [sys.executable, "-c", "from diffaug_noise.cli.main import main; main()"]
TOY = ["run", "toy", "--iterations", "240", "--checkpoint-every", "30", "--methods", "plain,diffusion"]


def _toy(out, *extra):
    return subprocess.run(CLI + TOY + ["--outdir", str(out), *extra], capture_output=True, text=True, timeout=300)


def _same_training(a: pathlib.Path, b: pathlib.Path):
    """Both runs ended in the same state, tensor for tensor, and report the same numbers."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    drop = lambda runs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in runs]  # noqa: E731
    assert drop(ma["runs"]) == drop(mb["runs"])
    assert ma["history"] == mb["history"]
    ca, cb = (load_checkpoint(d / "checkpoint.pt") for d in (a, b))
    assert ca["iteration"] == cb["iteration"] == 240
    for key in ("G", "D"):
        for name in ca[key]:
            assert torch.equal(ca[key][name], cb[key][name]), f"{key}.{name} differs"
    for key in ("opt_g", "opt_d"):
        for i, s in ca[key]["state"].items():
            for name, value in s.items():
                assert torch.equal(value, cb[key]["state"][i][name]), f"{key} state {i}.{name} differs"
    for ga, gb in zip(ca["data_gens"] + ca["noise_gens"], cb["data_gens"] + cb["noise_gens"]):
        assert torch.equal(ga, gb)


@pytest.mark.slow
def test_toy_killed_at_a_random_moment_resumes_bit_exactly(tmp_path):
    """SIGKILL at a random iteration between checkpoints (drawn afresh on every test run), then --resume: the same
    run."""
    straight = tmp_path / "straight"
    assert _toy(straight).returncode == 0

    killed = tmp_path / "killed"
    kill_at = random.Random(os.urandom(8)).choice([i for i in range(31, 240) if i % 30])
    script = textwrap.dedent(f"""
        import os, signal
        from diffaug_noise.demos.toy import ToySettings, train_toy
        def on_step(it):
            if it == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
        os.makedirs({str(killed)!r}, exist_ok=True)
        train_toy(ToySettings(iterations=240, methods=("plain", "diffusion")), on_step=on_step,
                  checkpoint={str(killed / 'checkpoint.pt')!r}, checkpoint_every=30)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert load_checkpoint(killed / "checkpoint.pt")["iteration"] == kill_at // 30 * 30  # the last one before the kill
    assert not (killed / "metrics.json").exists()

    resumed = _toy(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {killed / 'checkpoint.pt'}" in resumed.stderr
    _same_training(straight, killed)


def test_resume_from_a_corrupt_checkpoint_fails_and_keeps_the_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    broken = out / "checkpoint.pt"
    save_checkpoint({"iteration": 1}, broken)
    data = broken.read_bytes()[:-40]  # truncated, as by a copy that died
    broken.write_bytes(data)
    result = CliRunner().invoke(main, ["run", "toy", "--iterations", "5", "--outdir", str(out), "--resume"])
    assert result.exit_code != 0
    assert "corrupt or truncated" in result.output and "delete it" in result.output
    assert broken.read_bytes() == data


def test_resume_with_other_settings_names_them(tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--outdir", str(out), "--checkpoint-every",
                                     "2"]).exit_code == 0
    before = (out / "metrics.json").read_bytes()
    result = CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--sigma", "1.5", "--outdir", str(out),
                                       "--resume"])
    assert result.exit_code != 0
    assert "sigma: checkpoint 2.0 vs now 1.5" in result.output
    assert (out / "metrics.json").read_bytes() == before  # earlier outputs intact


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["run", "toy", "--iterations", "6", "--outdir", str(out), "--checkpoint-every", "2"]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = json.loads((out / "metrics.json").read_text())
    assert CliRunner().invoke(main, args + ["--resume"]).exit_code == 0
    again = json.loads((out / "metrics.json").read_text())
    assert first["runs"][0]["reverse_kl"] == again["runs"][0]["reverse_kl"]
    assert first["history"] == again["history"]


class Unsafe:
    """Stands for an upstream network object: unpickling it imports this module."""


def test_load_checkpoint_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"net": Unsafe()}, tmp_path / "objects.pt")
    with open(tmp_path / "snapshot.pkl", "wb") as f:  # how upstream snapshots are written
        pickle.dump({"G": Unsafe(), "step": 7}, f)
    for name in ("objects.pt", "snapshot.pkl"):
        with pytest.raises(CheckpointError, match="runs code.*--trust-pickle"):
            load_checkpoint(tmp_path / name)
    assert isinstance(load_checkpoint(tmp_path / "objects.pt", trust_pickle=True)["net"], Unsafe)
    assert load_checkpoint(tmp_path / "snapshot.pkl", trust_pickle=True)["step"] == 7


def test_save_checkpoint_is_atomic_and_readable_by_others(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.arange(3)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"w": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(3))  # the old one is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_check_finite_raises_and_default_passes_nan_through_in_place():
    x = torch.randn(4, 3, 5, 5)
    x[1, 2, 3, 4] = float("nan")
    x[3, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="2 NaN/Inf value"):
        dn.DiffusionNoise(check_finite=True)(x)
    y, t = dn.DiffusionNoise(p=0.3)(x)
    assert torch.equal(~torch.isfinite(y), ~torch.isfinite(x))  # exactly where x was bad, nowhere else
    assert "check_finite" not in dn.DiffusionNoise(check_finite=True).config()


def _toy_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--outdir", str(out), "--checkpoint-every",
                                     "2"]).exit_code == 0
    return out, load_checkpoint(out / "checkpoint.pt")


@pytest.mark.parametrize("damage", [
    lambda s: s.pop("G"),                                          # a key missing: was KeyError
    lambda s: s.update(noise_gens="not a list"),                   # a wrong type: was TypeError
    lambda s: s.update(G={"weights.0": torch.zeros(1)}),           # other weights: was RuntimeError
    lambda s: s.update(noises=[None]),                             # too few entries: was silently shortened by zip
    lambda s: s.update(history=[1, 2]),                            # was AttributeError later on
    lambda s: s["noises"][-1].update(p_value=torch.tensor(9.0, dtype=torch.float64)),  # a p outside [0, 1]
])
def test_a_safe_but_structurally_wrong_toy_checkpoint_is_one_line(tmp_path, damage):
    out, state = _toy_checkpoint(tmp_path)
    damage(state)
    save_checkpoint(state, out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    result = CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--outdir", str(out), "--checkpoint-every",
                                       "2", "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert "checkpoint" in result.output and ("does not fit this run" in result.output or "lacks" in result.output)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_a_full_disk_during_run_toy_is_one_line_and_leaves_no_temp_file(full_disk):
    result = CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--outdir", str(full_disk),
                                       "--checkpoint-every", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No space left on device (ENOSPC); the disk is full" in result.output and "checkpoint.pt" in result.output
    assert not list(full_disk.glob(".*.tmp"))


def test_an_injected_full_disk_while_checkpointing_is_one_line(tmp_path, monkeypatch):
    import builtins
    import errno

    class FullFile:
        def __init__(self, *args, **kwargs):
            self.file = builtins.open(*args, **kwargs)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()
    monkeypatch.setattr("diffaug_noise.checkpoint.open", FullFile, raising=False)
    result = CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--outdir", str(tmp_path / "o"),
                                       "--checkpoint-every", "2"])
    assert result.exit_code == 1 and "cannot write" in result.output and "the disk is full" in result.output


def test_stale_temp_files_of_a_killed_toy_run_are_removed_by_the_next(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert CliRunner().invoke(main, ["run", "toy", "--iterations", "4", "--outdir", str(out), "--checkpoint-every",
                                     "2"]).exit_code == 0
    assert not stale.exists()


DIGITS = ["run", "digits", "--iterations", "120", "--eval-every", "40", "--checkpoint-every", "25", "--seeds", "2",
          "--methods", "plain,diffusion"]


@pytest.mark.slow
def test_digits_killed_mid_run_resumes_bit_exactly(tmp_path):
    """SIGKILL at a random step between checkpoints (drawn afresh on every test run), then --resume: the same run."""
    env = dict(os.environ, DIFFAUG_NOISE_DATA=str(tmp_path / "root"))
    straight = tmp_path / "straight"
    assert subprocess.run(CLI + DIGITS + ["--outdir", str(straight)], capture_output=True, timeout=600,
                          env=env).returncode == 0

    killed = tmp_path / "killed"
    kill_at = random.Random(os.urandom(8)).choice([s for s in range(26, 120) if s % 25])
    script = textwrap.dedent(f"""
        import os, signal
        from diffaug_noise.demos.digits import DigitsSettings, train_digits
        config = DigitsSettings(iterations=120, eval_every=40, seeds=(0, 1), methods=("plain", "diffusion"))
        def on_step(step, scores):
            if step == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
        os.makedirs({str(killed)!r}, exist_ok=True)
        train_digits(config, on_step=on_step, checkpoint={str(killed / 'checkpoint.pt')!r}, checkpoint_every=25)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=600, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert load_checkpoint(killed / "checkpoint.pt")["iteration"] == kill_at // 25 * 25  # the last one before the kill
    assert not (killed / "metrics.json").exists()

    resumed = subprocess.run(CLI + DIGITS + ["--outdir", str(killed), "--resume"], capture_output=True, text=True,
                             timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {killed / 'checkpoint.pt'}" in resumed.stderr
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (straight, killed))
    drop = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert drop(ma["runs"]) == drop(mb["runs"]) and ma["history"] == mb["history"]
    ca, cb = (load_checkpoint(d / "checkpoint.pt") for d in (straight, killed))
    assert ca["iteration"] == cb["iteration"] == 120
    for key in ("G", "D"):
        assert all(torch.equal(ca[key][name], cb[key][name]) for name in ca[key]), key
    generators = lambda c: c["data_gens"] + c["noise_gens"]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(generators(ca), generators(cb)))
    assert torch.equal(ca["samples"], cb["samples"])
