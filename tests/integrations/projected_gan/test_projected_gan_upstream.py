"""A few real training iterations of an unmodified projected-gan checkout on the CPU, through our patch.

Skipped unless DIFFAUG_NOISE_PROJECTEDGAN_REPO points at a checkout (it needs upstream's requirements:
timm, dill, psutil, ...). Random backbone (``pretrained=False``: no download), StyleGAN2 generator at
32 px with upstream's own --cbase/--cmax narrowing, a tick every 4 iterations; a subprocess per run.
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

    repo, out, resume, iterations, d_pos = sys.argv[1:6]
    out, iterations = pathlib.Path(out), int(iterations)
    data = tiny_dataset(out)
    runs = out / ("runs" if resume == "-" else "runs-resumed")  # upstream would otherwise restart its own run dir

    def main():
        with ADAPTERS["projectedgan"].patched(repo, shims=True, pretrained=False, target=-1.0, d_pos=d_pos) as train:
            launch = train.launch_training

            def short(c, desc, outdir, dry_run):  # test-only: a few iterations, a tick every 4
                c.total_kimg, c.kimg_per_tick = iterations * 4 / 1000, 4 * 4 / 1000
                c.image_snapshot_ticks, c.network_snapshot_ticks = None, 1
                return launch(c=c, desc=desc, outdir=outdir, dry_run=dry_run)

            train.launch_training = short
            args = ["--outdir", str(runs), "--cfg", "stylegan2", "--data", data, "--gpus", "1", "--batch", "4",
                    "--cbase", "1024", "--cmax", "32", "--metrics", "none", "--workers", "1"]
            if resume != "-":
                args += ["--resume", resume]
            start = time.time()
            try:
                train.main(args, standalone_mode=False)
            except SystemExit as exit:  # upstream exits 3 ("restart") when fewer whole kimg than asked were done
                assert exit.code == 3, exit.code
            return time.time() - start

    if __name__ == "__main__":
        wall = main()
        run_dir = sorted(runs.iterdir())[-1]
        with open(run_dir / "network-snapshot.pkl", "rb") as f:
            D = pickle.load(f)["D"]
        run_report(run_dir, D, 4, wall, snapshot=str(run_dir / "network-snapshot.pkl"), d_pos=D.d_pos,
                   per_channel=D.noise.per_channel, iterations=iterations)
''')


def _run(repo, out, resume="-", iterations=8, d_pos="first"):
    proc = subprocess.run([sys.executable, "-c", RUN, repo, str(out), resume, str(iterations), d_pos],
                          capture_output=True, text=True, timeout=1800, cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_real_projected_gan_trains_snapshots_and_resumes(tmp_path):
    repo = os.environ.get("DIFFAUG_NOISE_PROJECTEDGAN_REPO")
    if not repo:
        pytest.skip("set DIFFAUG_NOISE_PROJECTEDGAN_REPO to a checkout to run this")
    first = _run(repo, tmp_path)
    step = 4 * 4 / (100 * 1000)
    assert first["class"] == "DiffusionProjectedDiscriminator" and first["per_channel"] and first["d_pos"] == "first"
    assert first["tick_lines"] and all(re.search(r" diffusion p [\d.]+ +T \d+ +r_d ", t) for t in first["tick_lines"])
    assert len(first["updates"]) == 2 and first["diffusion_p_reported"]  # 8 iterations, an adjustment every 4
    # stats.jsonl: no r_d before the first adjustment (tick 0), the mean of what was reported after (never NaN)
    assert math.isnan(first["r_d_means"][0]) and all(math.isfinite(m) for m in first["r_d_means"][1:])
    assert first["p"] == pytest.approx(step * sum(r_d > -1 for r_d, _ in first["updates"]))  # target -1
    resumed = _run(repo, tmp_path, resume=first["snapshot"], iterations=1)
    assert resumed["snapshot"] != first["snapshot"]
    assert resumed["p"] == first["p"] and resumed["T"] == first["T"]
    print(f"\nprojected-gan @ {repo}: {json.dumps({'first': first, 'resumed': resumed})}")
