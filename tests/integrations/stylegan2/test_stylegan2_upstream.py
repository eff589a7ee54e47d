"""A few real training iterations of an unmodified upstream checkout on the CPU, through our patch.

Skipped unless DIFFAUG_NOISE_STYLEGAN2_REPO / DIFFAUG_NOISE_INSGEN_REPO point at a checkout (they
need upstream's requirements: psutil, requests, scipy, ...). Each run is a subprocess, since
upstream sets the multiprocessing start method and imports top-level packages named ``training``.

For speed on a CPU, and only here, the networks are narrowed (channel_max 32, 2 mapping layers),
the image grid upstream draws at start-up is cut to 2x2, and a tick is 4 iterations; the training
loop, networks, loss, snapshots and resume are upstream's. These test-only settings are made
beneath the adapter (on upstream's own ``setup_training_loop_kwargs``), so the adapter sees the
options a user's command would give it.
"""
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from helpers import UPSTREAM_RUN_PREAMBLE

RUN = UPSTREAM_RUN_PREAMBLE + textwrap.dedent('''
    import json, pathlib, pickle, sys, time
    from diffaug_noise.integrations import ADAPTERS

    kind, repo, out, resume, runs = sys.argv[1:6]
    iterations, ada_target, batch = int(sys.argv[6]), float(sys.argv[7]), 4
    out = pathlib.Path(out)
    data = tiny_dataset(out)
    adapter = ADAPTERS[kind]

    def main():
        sys.path.insert(0, repo)
        import train
        from training import training_loop
        setup, grid = train.setup_training_loop_kwargs, training_loop.setup_snapshot_image_grid

        def small(**kwargs):  # test-only, beneath the adapter: narrow networks, short run, ticks of 4 iterations
            desc, args = setup(**kwargs)
            for kw in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
                kw.channel_base, kw.channel_max = 512, 32
            args.G_kwargs.z_dim = args.G_kwargs.w_dim = 32
            args.G_kwargs.mapping_kwargs.num_layers = 2
            args.total_kimg = iterations * batch / 1000
            args.kimg_per_tick = 4 * batch / 1000
            args.image_snapshot_ticks, args.network_snapshot_ticks = None, 1
            if ada_target != 0.6:  # below any mean of signs: ADA's p goes up by one step at every adjustment
                args.ada_target = ada_target
            for head in ("DHead_kwargs", "GHead_kwargs"):
                if args.get(head):
                    args[head].inplanes = 32
            return desc, args

        train.setup_training_loop_kwargs = small
        training_loop.setup_snapshot_image_grid = small_grid(grid)
        with adapter.patched(repo, shims=True, preset=kind, target=-1.0) as train:
            upstream_args = ["--outdir", str(out / runs), "--data", data, "--gpus", "1", "--batch", str(batch),
                             "--metrics", "none", "--workers", "1", "--cfg", "auto"]
            if resume != "-":
                upstream_args += ["--resume", resume]
            start = time.time()
            train.main(upstream_args, standalone_mode=False)
            return time.time() - start

    if __name__ == "__main__":
        wall = main()
        run_dir = sorted((out / runs).iterdir())[-1]
        snapshot = sorted(run_dir.glob("network-snapshot-*.pkl"))[-1]
        with open(snapshot, "rb") as f:
            D = pickle.load(f)["D"]
        run_report(run_dir, D, batch, wall, snapshot=str(snapshot), label=type(D.label.embedding).__name__,
                   iterations=iterations)
''')


def _run(kind, repo, out, resume="-", iterations=8, runs="runs", ada_target=0.6):
    proc = subprocess.run([sys.executable, "-c", RUN, kind, repo, str(out), resume, runs, str(iterations),
                           str(ada_target)],
                          capture_output=True, text=True, timeout=1800, cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kind, env", [("stylegan2", "DIFFAUG_NOISE_STYLEGAN2_REPO"),
                                       ("insgen", "DIFFAUG_NOISE_INSGEN_REPO")])
def test_real_upstream_trains_snapshots_and_resumes(kind, env, tmp_path):
    repo = os.environ.get(env)
    if not repo:
        pytest.skip(f"set {env} to a checkout to run this")
    first = _run(kind, repo, tmp_path)
    step = 4 * 4 / (100 * 1000)  # batch * interval / (kimg * 1000)
    assert first["class"] == "DiffusionDiscriminator" and first["label"] == "RawTimestep"
    assert first["options"] == "diffaug_noise.integrations.kit.DiffusionDiscriminator"
    # 8 iterations: 2 adjustments; with target -1 each moves p up one step unless every real logit was negative.
    assert first["tick_lines"] and all(re.search(r" diffusion p [\d.]+ +T \d+ +r_d ", t) for t in first["tick_lines"])
    assert len(first["updates"]) == 2 and first["diffusion_p_reported"]
    # stats.jsonl: no r_d before the first adjustment (tick 0), the mean of what was reported after (never NaN)
    assert math.isnan(first["r_d_means"][0]) and all(math.isfinite(m) for m in first["r_d_means"][1:])
    assert first["p"] == pytest.approx(step * sum(r_d > -1 for r_d, _ in first["updates"]))
    resumed = _run(kind, repo, tmp_path, resume=first["snapshot"], iterations=9, runs="resumed")
    assert resumed["p"] == first["p"] and resumed["T"] == first["T"]  # restored; 1 more iteration adjusts nothing
    assert resumed["images_seen"] == 36 and resumed["progress"][0][1] == pytest.approx(0.036)
    print(f"\n{kind} @ {repo}: {json.dumps({'first': first, 'resumed': resumed})}")
    pathlib.Path(os.environ.get("DIFFAUG_NOISE_UPSTREAM_LOG",
                                os.devnull)).write_text(json.dumps({kind: [first, resumed]}))


@pytest.mark.slow
@pytest.mark.parametrize("kind, env", [("stylegan2", "DIFFAUG_NOISE_STYLEGAN2_REPO"),
                                       ("insgen", "DIFFAUG_NOISE_INSGEN_REPO")])
def test_real_upstream_resumed_run_logs_what_the_uninterrupted_run_logs(kind, env, tmp_path):
    """12 iterations straight, against 5 then a --resume to 12: the same ticks, kimg, ADA p and noise p and T.

    ADA's target is set below any mean of signs (test-only), so ADA's p rises one step at every 4th
    iteration, as the controller's does (target -1): both sequences are known and stop nowhere by chance.
    """
    repo = os.environ.get(env)
    if not repo:
        pytest.skip(f"set {env} to a checkout to run this")
    whole = _run(kind, repo, tmp_path, iterations=12, runs="whole", ada_target=-2.0)
    part = _run(kind, repo, tmp_path, iterations=5, runs="part", ada_target=-2.0)
    rest = _run(kind, repo, tmp_path, resume=part["snapshot"], iterations=12, runs="rest", ada_target=-2.0)
    ada_step = 4 * 4 / (100 * 1000)  # batch * ada_interval / (ada_kimg * 1000)
    # Ticks end at 4, 20, 36 and 48 images; ADA adjusts after iterations 4, 8 and 12.
    assert [row[:2] for row in whole["progress"]] == [[0, pytest.approx(0.004)], [1, pytest.approx(0.02)],
                                                      [2, pytest.approx(0.036)], [3, pytest.approx(0.048)]]
    assert [row[2] for row in whole["progress"]] == pytest.approx([0, ada_step, 2 * ada_step, 3 * ada_step], rel=1e-6)
    assert part["progress"] == whole["progress"][:2]
    assert rest["progress"] == whole["progress"][2:]  # upstream alone starts again at tick 0, kimg 0.004, ADA p 0
    assert rest["images_seen"] == whole["images_seen"] == 48
    # the controller goes on at the same steps (adjustments after iterations 8 and 12 of the resumed run) from the
    # snapshot's p; its r_d are the resumed run's own (it draws other noise and data than the uninterrupted run:
    # with this checkout and torch one of its intervals had only negative real logits, r_d = -1, and p stayed)
    assert len(whole["updates"]) == 3 and len(rest["updates"]) == 2
    assert rest["p"] == pytest.approx(part["p"] + 4 * 4 / (100 * 1000) * sum(r_d > -1 for r_d, _ in rest["updates"]))
    # target -1: p rises one step at each adjustment unless all 16 real logits of its interval were negative
    step = 4 * 4 / (100 * 1000)
    assert whole["p"] == pytest.approx(step * sum(r_d > -1 for r_d, _ in whole["updates"]))
