"""The CLI end to end through click's CliRunner, on reduced settings."""
import json
import math

import pytest
from click.testing import CliRunner
from PIL import Image

from diffaug_noise.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_of_every_command_lists_its_options_with_defaults():
    for path in [[], ["run"], ["run", "toy"], ["show"], ["show", "noise"], ["show", "js"], ["bench"],
                 ["data"], ["data", "list"], ["data", "prepare"], ["eval"]]:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, result.output
    for path, options in [(["data", "prepare"], ["--source", "--data-root", "--resolution", "--subset", "--seed",
                                                 "--max-images"]),
                          (["eval"], ["--real", "--fake", "--metrics", "--num", "--weights", "--trust-pickle",
                                      "--json"]),
                          (["run", "toy"], ["--checkpoint-every", "--resume"]),
                          (["bench"], ["--d-step / --no-d-step"])]:
        text = invoke(*path, "--help").output
        assert all(option in text for option in options), (path, text)
    toy_help = invoke("run", "toy", "--help").output
    for option in ["--outdir, --out", "--iterations, --iters", "--seeds", "--methods", "--device", "--threads",
                   "--instance-sigma", "--kimg"]:  # every knob of ToySettings is an option
        assert option in toy_help
    assert "[default: toy-run]" in toy_help


def test_run_toy_writes_metrics_and_plots(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "toy", "--outdir", str(out), "--iterations", "30", "--seeds", "2", "--methods",
                    "plain,instance,diffusion")
    assert result.exit_code == 0, result.output
    for name in ("plain", "instance", "diffusion"):
        assert name in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"config", "wall_seconds", "runs", "summary", "history", "environment"}
    assert metrics["config"]["iterations"] == 30 and metrics["environment"]["threads"] == 2
    assert metrics["config"]["seeds"] == [0, 1]  # a count on the command line, recorded as the seeds
    assert len(metrics["runs"]) == 6
    for run in metrics["runs"]:
        assert run["method"] in ("plain", "instance", "diffusion") and run["seed"] in (0, 1)
        assert 0 <= run["modes_covered"] <= run["modes_hit"] <= 25
        assert 0.0 <= run["hq_share"] <= 1.0
        assert run["wall_seconds"] == pytest.approx(metrics["wall_seconds"] / 6)
        assert run["reverse_kl"] >= 0 or math.isinf(run["reverse_kl"])
        if run["method"] == "diffusion":
            assert 10 <= run["final_T"] <= 1000 and 0.0 <= run["final_p"] <= 1.0
        else:
            assert run["final_T"] is None
    assert set(metrics["summary"]) == {"plain", "instance", "diffusion"}
    assert metrics["summary"]["plain"]["modes_covered"]["min"] <= metrics["summary"]["plain"]["modes_covered"]["median"]
    assert metrics["history"]["iteration"][-1] == 30
    assert set(metrics["history"]["T"]) == {"diffusion/seed0", "diffusion/seed1"}
    for png in ("samples.png", "T.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_run_toy_default_compares_plain_and_diffusion(tmp_path):
    result = invoke("run", "toy", "--out", str(tmp_path), "--iters", "5")
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "metrics.json").read_text())["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [("plain", 0), ("diffusion", 0)]
    assert "modes hit" in result.output


def test_run_toy_same_seed_is_reproducible(tmp_path):
    outs = []
    for name in ("a", "b"):
        assert invoke("run", "toy", "--out", str(tmp_path / name), "--iters", "15", "--seeds", "1", "--methods",
                      "diffusion").exit_code == 0
        runs = json.loads((tmp_path / name / "metrics.json").read_text())["runs"]
        outs.append([{k: v for k, v in r.items() if k != "wall_seconds"} for r in runs])
    assert outs[0] == outs[1] and [r["method"] for r in outs[0]] == ["diffusion"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "plain,wgan"], "unknown method(s) ['wgan']; choose from plain, instance, diffusion"),
        (["--target", "1.5"], "1.5 is not in the range -1.0<=x<=1.0"),
        (["--embed-dim", "7"], "--embed-dim must be even"),
        (["--iters", "0"], "0 is not in the range x>=1"),
        (["--sigma", "0"], "0.0 is not in the range x>0"),
    ],
)
def test_run_toy_bad_options_exit_nonzero_with_the_reason(args, message):
    result = CliRunner().invoke(main, ["run", "toy", *args])
    assert result.exit_code == 2 and message in result.output


def test_run_toy_unwritable_out_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    result = CliRunner().invoke(main, ["run", "toy", "--out", str(blocker / "sub"), "--iters", "2", "--seeds", "1"])
    assert result.exit_code == 1 and "cannot create output folder" in result.output
    assert blocker.read_text() == "keep me"


def test_show_noise_demo_and_input(tmp_path):
    out = tmp_path / "noise.png"
    result = invoke("show", "noise", "--demo", "--ts", "0,10,500,5000", "--size", "32", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 100
    src = tmp_path / "in.png"
    Image.new("RGB", (40, 30), (200, 20, 20)).save(src)
    assert invoke("show", "noise", "--input", str(src), "--preset", "projected_gan", "--out",
                  str(tmp_path / "n2.png")).exit_code == 0
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["show", "noise", "--input", str(bad), "--out", str(tmp_path / "n3.png")])
    assert result.exit_code == 2 and "cannot read" in result.output
    result = CliRunner().invoke(main, ["show", "noise", "--out", str(tmp_path / "n4.png")])
    assert result.exit_code == 2 and "exactly one of --input IMG or --demo" in result.output


def test_show_js_writes_png(tmp_path):
    out = tmp_path / "js.png"
    assert invoke("show", "js", "--ts", "0,10,1000", "--out", str(out)).exit_code == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_bench_reports_ratios_as_json(tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", "--shapes", "8x3x8x8,4x5", "--repeats", "3", "--json", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["shape"] for r in rows] == [[8, 3, 8, 8], [4, 5]]
    for r in rows:
        assert set(r["ratios"]) == {"ours/randn", "ours/copy", "unfused/ours", "ours/D step"}
        assert all(v > 0 for v in r["median_s"].values())
        assert r["ratios"]["ours/randn"] == r["median_s"]["ours"] / r["median_s"]["randn"]
    image, flat = rows
    assert image["ratios"]["ours/D step"] == image["median_s"]["ours"] / image["median_s"]["D step"]
    assert flat["ratios"]["ours/D step"] is None and "D step" not in flat["median_s"]  # not an image shape
    assert "ours/randn" in result.output and "ours/D step" in result.output


@pytest.mark.gpu
def test_bench_on_cuda_adds_the_torch_path_the_grad_path_the_kernel_alone_and_a_graphed_forward(tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", "--device", "cuda", "--shapes", "64x3x32x32", "--repeats", "5", "--no-d-step", "--json",
                    str(out))
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    assert {"ours_torch/ours", "ours_grad/ours", "kernel/copy", "ours_graphed/randn"} <= set(row["ratios"])
    assert row["ratios"]["ours_graphed/randn"] == row["median_s"]["ours_graphed"] / row["median_s"]["randn"]
    assert "graphed/randn" in result.output and "grad/ours" in result.output


def test_data_list_columns_line_up_for_every_name(tmp_path):
    from diffaug_noise.data import DATASETS

    out = CliRunner().invoke(main, ["data", "list", "--data-root", str(tmp_path)]).output.splitlines()
    header, rows = out[1], out[2:]
    assert len(rows) == len(DATASETS) and any(r.startswith("lsun_bedroom_full ") for r in rows)
    res_end = header.index("res") + len("res")  # right-aligned: each resolution ends under the header's "res"
    assert all(row[:res_end].split()[-1].isdigit() and row[res_end] == " " for row in rows)
