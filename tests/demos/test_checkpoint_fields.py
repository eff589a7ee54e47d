"""A demo checkpoint that loads safely but lies: every field is checked before anything is restored or written.

Each case edits one field of a real checkpoint (`run toy` or `run digits`, a few iterations) and
resumes: the result must be one `CheckpointError` line naming the field, with the checkpoint and
metrics.json byte for byte as they were. Before, these hung (an iteration of 10**9 replayed the
progress bar for hours), trained the wrong number of steps, trained on NaN weights, or failed
after metrics.json had been overwritten.
"""
import math

import pytest
import torch
from click.testing import CliRunner

from diffaug_noise.checkpoint import load_checkpoint, save_checkpoint
from diffaug_noise.cli.main import main

TOY = ["run", "toy", "--iterations", "6", "--checkpoint-every", "3", "--methods", "plain,diffusion", "--log-every", "2",
       "--eval-samples", "100"]
DIGITS = ["run", "digits", "--iterations", "6", "--checkpoint-every", "3", "--seeds", "1", "--methods",
          "plain,diffusion", "--eval-every", "2", "--eval-samples", "50", "--log-every", "2"]


class Stop(Exception):
    """Ends a run after its checkpoint at step 3, as a kill would."""


def stop_at_3(step, *scores):
    if step == 3:
        raise Stop


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The checkpoints of a toy and a digits run stopped at step 3 of 6: history, sums and samples all part-way."""
    from diffaug_noise.demos.digits import DigitsSettings, train_digits
    from diffaug_noise.demos.toy import ToySettings, train_toy

    base = tmp_path_factory.mktemp("runs")
    with pytest.raises(Stop):
        train_toy(ToySettings(iterations=6, methods=("plain", "diffusion"), log_every=2, eval_samples=100),
                  on_step=stop_at_3, checkpoint=base / "toy.pt", checkpoint_every=3)
    with pytest.raises(Stop):
        train_digits(DigitsSettings(iterations=6, seeds=(0,), methods=("plain", "diffusion"), eval_every=2,
                                  eval_samples=50, log_every=2), on_step=stop_at_3, classifier_cache=base / "root",
                     checkpoint=base / "digits.pt", checkpoint_every=3)
    digits = load_checkpoint(base / "digits.pt")
    assert digits["iteration"] == 3 and digits["signs_counted"] == 64 and digits["samples"] is not None
    return {"toy": (load_checkpoint(base / "toy.pt"), TOY, {}),
            "digits": (digits, DIGITS, {"DIFFAUG_NOISE_DATA": str(base / "root")})}


def nan_in(tensors):
    first = next(iter(tensors.values())) if isinstance(tensors, dict) else tensors
    first.view(-1)[0] = float("nan")


def first_state(opt):
    return next(iter(opt["state"].values()))


DAMAGE = {
    # progress
    "iteration 10**9": ("toy", lambda s: s.update(iteration=10**9), "iteration"),
    "iteration -5": ("toy", lambda s: s.update(iteration=-5), "iteration"),
    "iteration True": ("toy", lambda s: s.update(iteration=True), "iteration"),
    "iteration 2.5": ("toy", lambda s: s.update(iteration=2.5), "iteration"),
    "wall_seconds NaN": ("toy", lambda s: s.update(wall_seconds=math.nan), "wall_seconds"),
    "digits iteration 10**9": ("digits", lambda s: s.update(iteration=10**9), "iteration"),
    "signs_counted -64": ("digits", lambda s: s.update(signs_counted=-64), "signs_counted"),
    "signs_counted 0": ("digits", lambda s: s.update(signs_counted=0), "signs_counted"),
    "signs_counted other": ("digits", lambda s: s.update(signs_counted=s["signs_counted"] + 1), "signs_counted"),
    "sign_sums beyond the count": ("digits", lambda s: s["sign_sums"].fill_(1e6), "sign_sums"),
    # non-finite weights and optimizer state
    "G NaN": ("toy", lambda s: nan_in(s["G"]), "G"),
    "D inf": ("toy", lambda s: next(iter(s["D"].values())).view(-1).__setitem__(0, math.inf), "D"),
    "opt_d exp_avg NaN": ("toy", lambda s: first_state(s["opt_d"])["exp_avg"].view(-1).__setitem__(0, math.nan),
                          "opt_d"),
    "opt_g step NaN": ("toy", lambda s: first_state(s["opt_g"])["step"].fill_(math.nan), "opt_g"),
    "opt_g exp_avg shape": ("toy", lambda s: first_state(s["opt_g"]).update(exp_avg=torch.zeros(3)), "opt_g"),
    "opt_g lr NaN": ("toy", lambda s: s["opt_g"]["param_groups"][0].update(lr=math.nan), "opt_g"),
    "digits G NaN": ("digits", lambda s: nan_in(s["G"]), "G"),
    # history
    "history without r_d": ("toy", lambda s: s["history"].pop("r_d"), "history"),
    "history T too short": ("toy", lambda s: next(iter(s["history"]["T"].values())).pop(), "history"),
    "history T out of range": ("toy", lambda s: next(iter(s["history"]["T"].values())).__setitem__(0, 10**6),
                               "history"),
    "history r_d out of range": ("toy", lambda s: next(iter(s["history"]["r_d"].values())).__setitem__(0, 7.0),
                                 "history"),
    "history iterations other": ("toy", lambda s: s["history"]["iteration"].__setitem__(0, 1), "history"),
    "digits score too long": ("digits", lambda s: s["history"]["score"]["0"].append(1.0), "history"),
    "digits score NaN": ("digits", lambda s: s["history"]["score"]["0"].__setitem__(0, math.nan), "history"),
    "digits latest other": ("digits", lambda s: s["latest"].update({"plain/seed0": 123.0}), "latest"),
    "digits samples shape": ("digits", lambda s: s.update(samples=s["samples"][:, :10]), "samples"),
    "digits samples dtype": ("digits", lambda s: s.update(samples=s["samples"].float()), "samples"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_lying_checkpoint_field_is_one_line_and_touches_nothing(runs, tmp_path, case):
    demo, damage, field = DAMAGE[case]
    state, args, env = runs[demo]
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"written": "by the run before"}\n')
    state = _copy(state)
    damage(state)
    save_checkpoint(state, out / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = CliRunner().invoke(main, args + ["--outdir", str(out), "--resume"], env=env)
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
    errors = [line for line in result.output.splitlines() if "Error:" in line]
    assert len(errors) == 1 and "does not fit this run" in errors[0] and f"({field}" in errors[0].replace(
        "ValueError: ", ""), result.output
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _copy(state):
    """A deep copy of a checkpoint's state (tensors cloned), so a damage does not reach the shared fixture."""
    if isinstance(state, dict):
        return {k: _copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_copy(v) for v in state]
    return state.clone() if isinstance(state, torch.Tensor) else state


@pytest.mark.parametrize("demo", ["toy", "digits"])
def test_an_untouched_mid_run_checkpoint_passes_the_checks_and_resumes(runs, tmp_path, demo):
    state, args, env = runs[demo]
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint(_copy(state), out / "checkpoint.pt")
    result = CliRunner().invoke(main, args + ["--outdir", str(out), "--resume"], env=env)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 6


@pytest.mark.parametrize("demo", ["toy", "digits"])
def test_resume_of_a_finished_run_is_a_no_op_that_says_so(runs, tmp_path, demo):
    """Was: --resume of a finished run recomputed and rewrote metrics.json and the plots."""
    _, args, env = runs[demo]
    out = tmp_path / "run"
    assert CliRunner().invoke(main, args + ["--outdir", str(out)], env=env).exit_code == 0
    written = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert {"metrics.json", "checkpoint.pt"} <= set(written)
    result = CliRunner().invoke(main, args + ["--outdir", str(out), "--resume"], env=env)
    assert result.exit_code == 0, result.output
    assert f"the run in {out} is complete (6 of 6 iterations); nothing to do" in result.output
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == written
    (out / "metrics.json").unlink()  # killed after its last checkpoint, before its outputs: they are written
    result = CliRunner().invoke(main, args + ["--outdir", str(out), "--resume"], env=env)
    assert result.exit_code == 0 and "is complete" not in result.output and (out / "metrics.json").exists()


@pytest.mark.parametrize("planted", ["folder", "fifo"])
def test_a_checkpoint_that_is_not_a_file_is_one_line_and_never_read(tmp_path, planted):
    """A FIFO named checkpoint.pt would block the read for ever; both said the checkpoint 'does not exist'."""
    import os

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").mkdir() if planted == "folder" else os.mkfifo(out / "checkpoint.pt")
    result = CliRunner().invoke(main, TOY + ["--outdir", str(out), "--resume"])
    assert result.exit_code == 1 and "is not a regular file; remove it" in result.output, result.output
