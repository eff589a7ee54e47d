"""A few real training iterations of an unmodified brownvc/R3GAN checkout on the CPU, through the adapter.

Skipped unless DIFFAUG_NOISE_R3GAN_REPO points at a checkout (upstream's requirements: psutil, ...). Each run is a
subprocess, since upstream sets the multiprocessing start method and imports top-level packages named ``training``.
R3GAN's presets fix their widths, so for speed on a CPU, and only here, the CIFAR10 preset's networks are narrowed
(32 channels, one block per stage, no bfloat16 stages), a tick is 4 iterations and the image grid drawn at start-up
2x2: set on the config upstream launches, above the adapter's own wrapper, so the adapter's dry run of the same
command (for --resume) sees them too.
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

    repo, out, resume, runs = sys.argv[1:5]
    iterations, batch = int(sys.argv[5]), 4
    out = pathlib.Path(out)
    data = tiny_dataset(out)

    def main():
        with ADAPTERS["r3gan"].patched(repo, shims=True, target=-1.0) as train:
            from training import training_loop
            launch, grid = train.launch_training, training_loop.setup_snapshot_image_grid

            def small(c, desc, outdir, dry_run):  # test-only: narrow networks, short run, ticks of 4 iterations
                for kw, widths in ((c.G_kwargs, [32, 32, 32, 32]), (c.D_kwargs, [32, 32, 32, 32])):
                    kw.WidthPerStage, kw.CardinalityPerStage, kw.BlocksPerStage = widths, [4] * 4, [1] * 4
                    kw.FP16Stages = []
                c.G_kwargs.NoiseDimension = 16
                c.total_kimg = iterations * batch / 1000
                c.kimg_per_tick = 4 * batch / 1000
                c.image_snapshot_ticks, c.network_snapshot_ticks = None, 1
                return launch(c, desc, outdir, dry_run)

            train.launch_training, training_loop.setup_snapshot_image_grid = small, small_grid(grid)
            args = ["--outdir", str(out / runs), "--data", data, "--gpus", "1", "--batch", str(batch),
                    "--preset", "CIFAR10", "--metrics", "none", "--workers", "1", "--aug", "1"]
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
        images = G(torch.randn(2, G.z_dim), torch.zeros(2, G.c_dim))
        run_report(run_dir, D, batch, wall, snapshot=str(snapshot), images=list(images.shape),
                   cur_nimg=network["cur_nimg"])
''')


def _run(repo, out, resume="-", iterations=8, runs="runs"):
    proc = subprocess.run([sys.executable, "-c", RUN, repo, str(out), resume, runs, str(iterations)],
                          capture_output=True, text=True, timeout=1800, cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_real_r3gan_trains_snapshots_loads_and_resumes_where_it_stopped(tmp_path):
    """12 iterations straight, against 5 and a --resume to 12: the same ticks, kimg, augmentation p, noise p and T."""
    repo = os.environ.get("DIFFAUG_NOISE_R3GAN_REPO")
    if not repo:
        pytest.skip("set DIFFAUG_NOISE_R3GAN_REPO to a checkout to run this")
    whole = _run(repo, tmp_path, iterations=12, runs="whole")
    assert whole["class"] == "DiffusionDiscriminator" and whole["images"] == [2, 3, 32, 32]
    assert whole["options"] == "diffaug_noise.integrations.kit.DiffusionDiscriminator"
    assert whole["tick_lines"] and all(re.search(r" diffusion p [\d.]+ +T \d+ +r_d ", t) for t in whole["tick_lines"])
    assert len(whole["updates"]) == 3 and whole["diffusion_p_reported"]
    # stats.jsonl: no r_d before the first adjustment (tick 0), the mean of what was reported after (never NaN)
    assert math.isnan(whole["r_d_means"][0]) and all(math.isfinite(m) for m in whole["r_d_means"][1:])
    step = 4 * 4 / (100 * 1000)  # batch * interval / (kimg * 1000); target -1 moves p up unless r_d is -1 exactly
    assert whole["p"] == pytest.approx(step * sum(r_d > -1 for r_d, _ in whole["updates"]))
    part = _run(repo, tmp_path, iterations=5, runs="part")
    rest = _run(repo, tmp_path, resume=part["snapshot"], iterations=12, runs="rest")
    # ticks end at 4, 20, 36 and 48 images; R3GAN's augmentation p follows its schedule of cur_nimg
    assert [row[:2] for row in whole["progress"]] == [[0, pytest.approx(0.004)], [1, pytest.approx(0.02)],
                                                      [2, pytest.approx(0.036)], [3, pytest.approx(0.048)]]
    assert part["progress"] == whole["progress"][:2] and part["cur_nimg"] == 20
    assert rest["progress"] == whole["progress"][2:]  # upstream alone keeps kimg but starts again at tick 0
    assert rest["images_seen"] == whole["images_seen"] == 48
    assert (rest["p"], rest["T"]) == (whole["p"], whole["T"])
    print(f"\nr3gan @ {repo}: {json.dumps({'whole': whole, 'part': part, 'rest': rest})}")
    log = os.environ.get("DIFFAUG_NOISE_UPSTREAM_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"r3gan": {"whole": whole, "rest": rest}}) + "\n")
