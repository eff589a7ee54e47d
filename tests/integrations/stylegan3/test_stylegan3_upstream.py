"""A few real training iterations of an unmodified NVlabs/stylegan3 checkout on the CPU, through the adapter.

Skipped unless DIFFAUG_NOISE_STYLEGAN3_REPO points at a checkout (upstream's requirements: psutil, ...). Each run
is a subprocess, since upstream sets the multiprocessing start method and imports top-level packages named
``training``. The networks are narrowed with upstream's own flags (``--cbase 1024 --cmax 32 --map-depth 2``);
for speed on a CPU, and only here, a tick is 4 iterations, the run a few of them and the image grid drawn at
start-up 2x2: set on the config upstream launches, above the adapter's own wrapper, so the adapter's dry run
of the same command (for --resume) sees them too.
"""
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

from helpers import UPSTREAM_RUN_PREAMBLE

RUN = UPSTREAM_RUN_PREAMBLE + textwrap.dedent('''
    import json, pathlib, pickle, sys, time
    from diffaug_noise.integrations import ADAPTERS

    cfg, repo, out, resume, runs = sys.argv[1:6]
    iterations, ada_target, batch = int(sys.argv[6]), float(sys.argv[7]), 4
    out = pathlib.Path(out)
    data = tiny_dataset(out)

    def main():
        with ADAPTERS["stylegan3"].patched(repo, shims=True, target=-1.0) as train:
            from training import training_loop
            launch, grid = train.launch_training, training_loop.setup_snapshot_image_grid

            def small(c, desc, outdir, dry_run):  # test-only: short run, ticks of 4 iterations, ADA's target
                c.total_kimg = iterations * batch / 1000
                c.kimg_per_tick = 4 * batch / 1000
                c.image_snapshot_ticks, c.network_snapshot_ticks = None, 1
                if ada_target != 0.6:
                    c.ada_target = ada_target
                return launch(c, desc, outdir, dry_run)

            train.launch_training, training_loop.setup_snapshot_image_grid = small, small_grid(grid)
            args = ["--outdir", str(out / runs), "--data", data, "--gpus", "1", "--batch", str(batch), "--gamma", "1",
                    "--cfg", cfg, "--cbase", "1024", "--cmax", "32", "--map-depth", "2", "--metrics", "none",
                    "--workers", "1", "--mbstd-group", "2"]
            if resume != "-":
                args += ["--resume", resume]
            start = time.time()
            train.main(args, standalone_mode=False)
            training_loop.setup_snapshot_image_grid = grid
            return time.time() - start

    if __name__ == "__main__":
        wall = main()
        run_dir = sorted((out / runs).iterdir())[-1]
        snapshot = sorted(run_dir.glob("network-snapshot-*.pkl"))[-1]
        sys.path.insert(0, repo)
        import dnnlib, legacy, torch
        with dnnlib.util.open_url(str(snapshot)) as f:  # what upstream's gen_images.py does, then G_ema(z, c)
            network = legacy.load_network_pkl(f)
        G, D = network["G_ema"], network["D"]
        images = G(torch.randn(2, G.z_dim), torch.zeros(2, G.c_dim), truncation_psi=1, noise_mode="const")
        run_report(run_dir, D, batch, wall, snapshot=str(snapshot), images=list(images.shape))
''')


def _run(cfg, repo, out, resume="-", iterations=8, runs="runs", ada_target=0.6):
    proc = subprocess.run([sys.executable, "-c", RUN, cfg, repo, str(out), resume, runs, str(iterations),
                           str(ada_target)],
                          capture_output=True, text=True, timeout=1800, cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["stylegan2", "stylegan3-t"])
def test_real_stylegan3_trains_snapshots_loads_and_resumes_where_it_stopped(cfg, tmp_path):
    """12 iterations straight, against 5 and a --resume to 12: the same ticks, kimg, ADA p, noise p and T."""
    repo = os.environ.get("DIFFAUG_NOISE_STYLEGAN3_REPO")
    if not repo:
        pytest.skip("set DIFFAUG_NOISE_STYLEGAN3_REPO to a checkout to run this")
    whole = _run(cfg, repo, tmp_path, iterations=12, runs="whole", ada_target=-2.0)
    assert whole["class"] == "DiffusionDiscriminator" and whole["images"] == [2, 3, 32, 32]
    assert whole["options"] == "diffaug_noise.integrations.kit.DiffusionDiscriminator"
    assert whole["tick_lines"] and all(re.search(r" diffusion p [\d.]+ +T \d+ +r_d ", t) for t in whole["tick_lines"])
    assert len(whole["updates"]) == 3 and whole["diffusion_p_reported"]
    # stats.jsonl: no r_d before the first adjustment (tick 0), the mean of what was reported after (never NaN)
    assert math.isnan(whole["r_d_means"][0]) and all(math.isfinite(m) for m in whole["r_d_means"][1:])
    step = 4 * 4 / (100 * 1000)  # batch * interval / (kimg * 1000); target -1 moves p up unless r_d is -1 exactly
    assert whole["p"] == pytest.approx(step * sum(r_d > -1 for r_d, _ in whole["updates"]))
    part = _run(cfg, repo, tmp_path, iterations=5, runs="part", ada_target=-2.0)
    rest = _run(cfg, repo, tmp_path, resume=part["snapshot"], iterations=12, runs="rest", ada_target=-2.0)
    ada_step = 4 * 4 / (500 * 1000)  # stylegan3's loop default ada_kimg 500: its --resume sets 100, undone here
    # ticks end at 4, 20, 36 and 48 images; ADA adjusts after iterations 4, 8 and 12
    assert [row[:2] for row in whole["progress"]] == [[0, pytest.approx(0.004)], [1, pytest.approx(0.02)],
                                                      [2, pytest.approx(0.036)], [3, pytest.approx(0.048)]]
    assert [row[2] for row in whole["progress"]] == pytest.approx([0, ada_step, 2 * ada_step, 3 * ada_step], rel=1e-6)
    assert part["progress"] == whole["progress"][:2]
    assert rest["progress"] == whole["progress"][2:]  # upstream alone starts again at tick 0, kimg 0.004, ADA p 0
    assert rest["images_seen"] == whole["images_seen"] == 48
    assert (rest["p"], rest["T"]) == (whole["p"], whole["T"])
    print(f"\n{cfg} @ {repo}: {json.dumps({'whole': whole, 'part': part, 'rest': rest})}")
    log = os.environ.get("DIFFAUG_NOISE_UPSTREAM_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({cfg: {"whole": whole, "rest": rest}}) + "\n")


LOAD_AND_EVAL = textwrap.dedent('''
    import sys
    import torch, torch.utils.cpp_extension  # setuptools keeps what it imported; then upstream finds no pkg_resources,
    sys.modules["pkg_resources"] = None      # as on setuptools >= 81 (README's install)
    from diffaug_noise.integrations import load_snapshot
    from diffaug_noise.cli import run

    snapshot = sys.argv[1]
    G = load_snapshot(snapshot)["G_ema"]  # the checkout from the run's record
    print("images", list(G(torch.randn(2, G.z_dim), torch.zeros(2, G.c_dim)).shape))
    sys.argv = ["diffaug-noise", "eval", "--real", "digits", "--fake", snapshot, "--trust-pickle",
                "--feature-extractor", "digits-classifier", "--num-fake", "64", *sys.argv[2:]]
    run()
''')


@pytest.mark.slow
def test_real_stylegan3_snapshot_loads_and_scores_without_pkg_resources(tmp_path):
    """A real snapshot loads through load_snapshot and eval where setuptools ships no pkg_resources (issue 31)."""
    repo = os.environ.get("DIFFAUG_NOISE_STYLEGAN3_REPO")
    if not repo:
        pytest.skip("set DIFFAUG_NOISE_STYLEGAN3_REPO to a checkout to run this")
    snapshot = _run("stylegan2", repo, tmp_path, iterations=4)["snapshot"]
    env = {k: v for k, v in os.environ.items() if k != "DIFFAUG_NOISE_STYLEGAN3_REPO"}  # found from the record alone
    env["DIFFAUG_NOISE_DATA"] = str(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_EVAL, snapshot], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "images [2, 3, 32, 32]" in proc.stdout
    assert re.search(r"^fid [\d.]+ +\(64 generated vs 1797 real, digits-classifier\)$", proc.stdout, re.M)


def _torchrun_cli(tmp_path, *upstream_args):
    """``torchrun --nproc-per-node 2`` of ``diffaug-noise run stylegan3 --launcher torchrun`` on the CPU (gloo)."""
    env = dict(os.environ, DIFFAUG_NOISE_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "diffaug_noise.cli", "run", "stylegan3", "--launcher", "torchrun", "--gpus", "2",
                           "--repo", env["DIFFAUG_NOISE_STYLEGAN3_REPO"], "--data", "digits", "--outdir",
                           str(tmp_path / "runs"), "--", "--cfg", "stylegan2", "--gamma", "1", "--cbase", "1024",
                           "--cmax", "32", "--map-depth", "2", "--metrics", "none", *upstream_args],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)


@pytest.mark.slow
def test_real_stylegan3_two_cpu_ranks_pass_the_snapshot_check_after_p_moved(tmp_path):
    """Upstream's train.py syncs training_stats on CUDA with two ranks; the shim makes it the CPU (issue 31)."""
    if not os.environ.get("DIFFAUG_NOISE_STYLEGAN3_REPO"):
        pytest.skip("set DIFFAUG_NOISE_STYLEGAN3_REPO to a checkout to run this")
    subprocess.run([sys.executable, "-m", "diffaug_noise.cli", "data", "prepare", "digits", "--data-root",
                    str(tmp_path / "data")], check=True, capture_output=True)
    proc = _torchrun_cli(tmp_path, "--batch", "8", "--kimg", "1")  # 125 iterations: 31 controller updates
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (run,) = (tmp_path / "runs").iterdir()
    ticks = [line for line in (run / "log.txt").read_text().splitlines() if line.startswith("tick ")]
    p_last = float(re.search(r"diffusion p ([\d.]+)", ticks[-1]).group(1))
    assert len(ticks) == 2 and p_last > 0  # tick 0 at p = 0, tick 1 (the end) after p moved
    # the last snapshot is written after check_ddp_consistency passed on both ranks, at the p of the last tick
    from diffaug_noise.integrations import load_snapshot
    D = load_snapshot(run / "network-snapshot-000001.pkl")["D"]
    assert D.noise.p == pytest.approx(p_last, abs=1e-5) and int(D.images_seen) == 1000
    print("\n" + "\n".join(ticks))


@pytest.mark.slow
def test_real_stylegan3_rank_error_is_one_line_and_torchruns_root_cause(tmp_path):
    if not os.environ.get("DIFFAUG_NOISE_STYLEGAN3_REPO"):
        pytest.skip("set DIFFAUG_NOISE_STYLEGAN3_REPO to a checkout to run this")
    subprocess.run([sys.executable, "-m", "diffaug_noise.cli", "data", "prepare", "digits", "--data-root",
                    str(tmp_path / "data")], check=True, capture_output=True)
    proc = _torchrun_cli(tmp_path, "--batch", "4", "--kimg", "1")  # batch_gpu 2 < mbstd 4: upstream refuses
    output = proc.stdout + proc.stderr
    line = "Error: rank 0: stylegan3's train.py: --batch-gpu cannot be smaller than --mbstd"
    assert proc.returncode != 0 and output.count(line) == 2, output  # printed once, and torchrun's root cause
    assert "  traceback : " + line in output
    assert not re.search(r"^\[rank\d\]:.*Traceback", output, re.M)  # no rank's traceback at all
