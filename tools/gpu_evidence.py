"""Evidence at a scale the CPU cannot reach: the conv digits study and the real StyleGAN3 loop on the digits, at once.

Two parts share one GPU for a fixed time (both are launch-bound at these sizes, so they overlap well):

- ``conv``: :func:`diffaug_noise.demos.digits.study.run_study`, the conv digits job (``run digits --net
  conv``'s own code) with wider networks at 32 px: tuning at equal effort on seeds 100-101, then every
  method at its chosen setting on seeds 0-9, per training-set size; the length is calibrated to the
  budget. Writes conv-study.json, conv-study.md and conv-study.png.
- ``stylegan3``: upstream StyleGAN3 (``--cfg stylegan2``, narrowed) at 32 px on the 1,797 digits as RGB,
  four arms at the same flags and seed: no augmentation, upstream's ADA, the layer, ADA + the layer. Each
  arm runs for a fixed time; the snapshots every arm reached are scored with FD_digits on
  ``--fake-images`` samples (``eval``'s ``digits-classifier``). Writes stylegan3-digits.json, .md and .png,
  and each arm's log and stats.jsonl.

Run from the repository root (tools/gpu_session.sh does, as its part ``evidence``)::

    python3 tools/gpu_evidence.py --out OUT --device cuda --seconds 480 --stylegan3 .upstream/stylegan3

``--device cpu --small`` runs both parts at sizes that end in minutes on a CPU: a check of the
script, not a measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import threading
import time
import traceback

ARMS = {  # name: (run_mode's mode, upstream's --aug)
    "no augmentation": ("baseline", "noaug"),
    "ADA": ("baseline", "ada"),
    "the layer": ("diffusion", "noaug"),
    "ADA + the layer": ("diffusion", "ada"),
}


def log(message: str) -> None:
    print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {message}", flush=True)


def environment(device: str) -> dict:
    import torch

    env = {"date": datetime.date.today().isoformat(), "python": platform.python_version(), "torch": torch.__version__,
           "device": device}
    if device == "cuda":
        env["card"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


# ---------------------------------------------------------------- the conv study

def conv_part(out: pathlib.Path, work: pathlib.Path, device: str, budget: float, small: bool, workers: int,
              train_sizes: tuple) -> None:
    from diffaug_noise.demos.digits.study import CONV_GRID, StudySettings, format_study, run_study

    if small:
        settings = StudySettings(train_sizes=(30,), tune_seeds=(100,), report_seeds=(0, 1),
                                 methods=("plain", "instance", "diffusion"),
                                 grid={m: CONV_GRID[m][:2] for m in ("instance", "diffusion")},
                                 budget_seconds=budget, min_iterations=20, max_iterations=200,
                                 calibration_iterations=12, seeds_per_job=1, workers=workers)
        base = dict(net="conv", resolution=16, width=2, eval_every=20, eval_samples=200, batch_size=16)
    else:
        settings = StudySettings(train_sizes=train_sizes, budget_seconds=budget, workers=workers)
        base = dict(net="conv", resolution=32, width=32, eval_every=250, eval_samples=2000, batch_size=64, lr=5e-4)
    base["device"] = device

    def write(phase, study):
        public = {k: v for k, v in study.items() if k not in ("tuning", "report")}
        for name in ("tuning", "report"):
            if name in study:
                public[name] = {size: {"runs": p["runs"], "history": p["history"]} for size, p in study[name].items()}
        public["environment"] = environment(device)
        (out / "conv-study.json").write_text(json.dumps(public, indent=1))
        if phase == "report":
            (out / "conv-study.md").write_text(format_study(study) + "\n")
            conv_plot(study, out / "conv-study.png")
        log(f"conv study: {phase} done ({study.get(phase + '_seconds', 0):.0f} s), {study['iterations']} iterations")

    log(f"conv study: {settings.train_sizes} training digits, budget {budget:.0f} s, {workers} workers")
    study = run_study(settings, base, on_phase=write)
    log("conv study: done\n" + format_study(study))


def conv_plot(study: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(study["report"])
    fig, axes = plt.subplots(3, len(sizes), figsize=(6 * len(sizes), 10), squeeze=False)
    for col, size in enumerate(sizes):
        history = study["report"][size]["history"]
        methods = list(dict.fromkeys(key.split("/")[0] for key in history["score"]))
        for method in methods:
            def median_curve(key):
                curves = [v for k, v in history[key].items() if k.split("/")[0] == method]
                return [statistics.median(c[i] for c in curves) for i in range(len(curves[0]))] if curves else None
            axes[0][col].plot(history["score_iteration"], median_curve("score"), label=method)
            axes[1][col].plot(history["iteration"], median_curve("r_d"), label=method)
            T = median_curve("T")
            if T is not None:
                axes[2][col].plot(history["iteration"], T, label=method)
        axes[0][col].set(title=f"{size} training digits: FD_digits (median over seeds)", yscale="log")
        axes[1][col].set(title="r_d = E[sign D(real as D sees it)]")
        axes[2][col].set(title="T (median over seeds)", xlabel="iteration")
        for ax in axes[:, col]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------- the real StyleGAN3 loop

def stylegan3_part(out: pathlib.Path, work: pathlib.Path, device: str, seconds: float, small: bool, repo: str) -> None:
    from diffaug_noise.data import prepare
    from diffaug_noise.integrations.bench import run_child

    data = prepare("digits", None, out=work / "digits-32.zip", resolution=32).path
    flags = (["--cfg", "stylegan2", "--gpus", "1", "--batch", "8", "--gamma", "0.01", "--cbase", "1024", "--cmax",
              "32", "--map-depth", "2", "--kimg", "1", "--tick", "1", "--snap", "1", "--workers", "1"] if small else
             ["--cfg", "stylegan2", "--gpus", "1", "--batch", "64", "--gamma", "0.01", "--cbase", "8192", "--cmax",
              "256", "--map-depth", "2", "--kimg", "100000", "--tick", "2", "--snap", "5", "--workers", "1"])
    flags += ["--data", str(data), "--metrics", "none", "--seed", "0", "--mirror", "0"]
    runs = {}

    def arm(name, mode, aug):
        folder = work / "stylegan3" / name.replace(" ", "-").replace("+", "and")
        payload = json.dumps([mode, "stylegan3", repo, ["--outdir", str(folder), *flags, "--aug", aug], {}, True])
        code, lines, stopped = run_child(payload, lambda line: log(f"{name}: {line}"), limit=seconds)
        runs[name] = {"code": code, "stopped": stopped, "folder": folder}
        (out / f"log-{folder.name}.txt").write_text("\n".join(lines) + "\n")

    log(f"stylegan3: four arms for {seconds:.0f} s each, at once")
    threads = [threading.Thread(target=arm, args=(name, *spec)) for name, spec in ARMS.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {"flags": flags, "seconds": seconds, "environment": environment(device), "arms": {}}
    snapshots = {}
    for name, run in runs.items():
        run_dirs = sorted(p for p in run["folder"].glob("*") if p.is_dir())
        if not run_dirs:
            result["arms"][name] = {"error": f"no run folder (exit {run['code']}): see log-{run['folder'].name}.txt"}
            continue
        run_dir = run_dirs[-1]
        ticks = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines() if line.strip()] \
            if (run_dir / "stats.jsonl").exists() else []
        (out / f"stats-{run['folder'].name}.jsonl").write_text(
            (run_dir / "stats.jsonl").read_text() if (run_dir / "stats.jsonl").exists() else "")
        snapshots[name] = {int(re.search(r"(\d+)\.pkl$", p.name).group(1)): p
                           for p in run_dir.glob("network-snapshot-*.pkl")}
        result["arms"][name] = {"ticks": [_tick(t) for t in ticks], "exit": run["code"], "stopped": run["stopped"],
                                "snapshot_kimg": sorted(snapshots[name])}
    common = sorted(set.intersection(*(set(s) for s in snapshots.values()))) if len(snapshots) == len(ARMS) else []
    scored = common if len(common) <= 6 else sorted({common[round(i * (len(common) - 1) / 5)] for i in range(6)})
    result["scored_kimg"] = scored
    log(f"stylegan3: every arm reached the snapshots at kimg {common}; scoring {scored}")
    _write_stylegan3(out, result)
    for name in snapshots:
        result["arms"][name]["fd_digits"] = {}
    fake_images = 500 if small else 10_000
    for kimg in scored:
        for name in snapshots:
            result["arms"][name]["fd_digits"][kimg] = score_snapshot(repo, snapshots[name][kimg], data, fake_images,
                                                                     device, work)
            log(f"stylegan3: {name} at {kimg} kimg: FD_digits {result['arms'][name]['fd_digits'][kimg]:.2f}")
        _write_stylegan3(out, result)
    result["fake_images"] = fake_images
    _write_stylegan3(out, result)
    log("stylegan3: done\n" + stylegan3_table(result))


def _tick(stats: dict) -> dict:
    """The numbers of one tick of upstream's stats.jsonl that the tables use."""
    keys = {"kimg": "Progress/kimg", "ada_p": "Progress/augment", "r_t": "Loss/signs/real", "p": "Diffusion/p",
            "T": "Diffusion/T", "r_d": "Diffusion/r_d", "sec_per_kimg": "Timing/sec_per_kimg"}
    return {name: stats[key]["mean"] for name, key in keys.items() if key in stats}


def score_snapshot(repo: str, snapshot: pathlib.Path, data: pathlib.Path, count: int, device: str,
                   data_root: pathlib.Path) -> float:
    """FD_digits of a snapshot's G_ema on ``count`` samples against the 1,797 digits, loaded with the shims on."""
    from diffaug_noise.integrations import ADAPTERS
    from diffaug_noise.metrics import digits_extractor
    from diffaug_noise.metrics.evaluation import evaluate

    with ADAPTERS["stylegan3"].baseline(repo, shims=True):  # upstream importable, pkg_resources and the ops' shims
        return evaluate(real=data, fake=snapshot, metrics=("fid",), num_fake=count,
                        feature_extractor=digits_extractor.NAME, device=device, trust_pickle=True,
                        data_root=data_root)["fid"]


def stylegan3_table(result: dict) -> str:
    rows = ["| arm | " + " | ".join(f"FD_digits at {k} kimg" for k in result.get("scored_kimg", [])) +
            " | last tick: kimg | r_t | ADA p | T | sec/kimg |",
            "|---|" + "---|" * (len(result.get("scored_kimg", [])) + 5)]
    for name, arm in result["arms"].items():
        if "error" in arm:
            rows.append(f"| {name} | {arm['error']} |")
            continue
        fd = arm.get("fd_digits", {})
        last = arm["ticks"][-1] if arm["ticks"] else {}

        def cell(key, fmt):
            return fmt.format(last[key]) if key in last else "–"
        rows.append(f"| {name} | " + " | ".join(f"{fd[k]:.2f}" if k in fd else "–" for k in result["scored_kimg"])
                    + f" | {cell('kimg', '{:.0f}')} | {cell('r_t', '{:.2f}')} | {cell('ada_p', '{:.3f}')} | "
                      f"{cell('T', '{:.0f}')} | {cell('sec_per_kimg', '{:.2f}')} |")
    return "\n".join(rows)


def _write_stylegan3(out: pathlib.Path, result: dict) -> None:
    (out / "stylegan3-digits.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "stylegan3-digits.md").write_text(stylegan3_table(result) + "\n")
    with contextlib.suppress(Exception):  # a plot is a convenience; the numbers are in the json
        stylegan3_plot(result, out / "stylegan3-digits.png")


def stylegan3_plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for name, arm in result["arms"].items():
        ticks = arm.get("ticks", [])
        kimg = [t["kimg"] for t in ticks]
        if arm.get("fd_digits"):
            axes[0].plot(list(arm["fd_digits"]), list(arm["fd_digits"].values()), marker="o", label=name)
        axes[1].plot(kimg, [t.get("r_t") for t in ticks], label=name)
        if any("T" in t for t in ticks):
            axes[2].plot(kimg, [t.get("T") for t in ticks], label=f"{name}: T")
        if any(t.get("ada_p") for t in ticks):
            axes[2].plot(kimg, [1000 * t.get("ada_p", 0) for t in ticks], ls="--", label=f"{name}: 1000 x ADA p")
    axes[0].set(title="FD_digits of G_ema", xlabel="kimg", yscale="log")
    axes[1].set(title="r_t = E[sign D(real)] (upstream's)", xlabel="kimg")
    axes[2].set(title="T, and ADA's p", xlabel="kimg")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------- both at once

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", required=True, type=pathlib.Path, help="Folder for the results (small files).")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/gpu-evidence-work"),
                        help="Folder for the data, upstream's run folders and snapshots, and the classifier.")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--seconds", type=float, default=480.0,
                        help="Wall time for everything; each part gets its share (default: 480).")
    parser.add_argument("--parts", default="conv,stylegan3", help="Comma-separated: conv, stylegan3.")
    parser.add_argument("--stylegan3", default=".upstream/stylegan3", help="An unmodified stylegan3 checkout.")
    parser.add_argument("--workers", type=int, default=8, help="Worker processes of the conv study.")
    parser.add_argument("--train-sizes", default="100,500", help="Training-set sizes of the conv study.")
    parser.add_argument("--small", action="store_true", help="CPU-sized settings: a check of the script.")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["DIFFAUG_NOISE_DATA"] = str(args.work)  # the digits classifier's cache, here and in every worker
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"conv", "stylegan3"})
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose conv, stylegan3")
    if "stylegan3" in parts and not (pathlib.Path(args.stylegan3) / "train.py").exists():
        parser.error(f"--stylegan3 {args.stylegan3!r} is not a stylegan3 checkout (no train.py there)")
    start = time.perf_counter()
    # The arms stop at 65 % of the time; scoring their snapshots takes the next ~15 %. The study's two phases are
    # planned, after its calibration (~10 %), for 75 %: calibrated while the arms ran, they end sooner once the arms
    # have stopped.
    sizes = tuple(int(v) for v in args.train_sizes.split(","))
    conv_share = 0.75 if "stylegan3" in parts else 0.85  # alone, only its calibration comes before its phases
    jobs = {"conv": lambda: conv_part(args.out, args.work, args.device, conv_share * args.seconds, args.small,
                                      args.workers, sizes),
            "stylegan3": lambda: stylegan3_part(args.out, args.work, args.device, 0.65 * args.seconds, args.small,
                                                str(pathlib.Path(args.stylegan3).resolve()))}
    failures = []

    def guarded(name):
        try:
            jobs[name]()
        except Exception:  # one part's failure must not cost the other its results
            failures.append(name)
            log(f"{name} failed:\n{traceback.format_exc()}")
    threads = [threading.Thread(target=guarded, args=(name,)) for name in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log(f"done in {time.perf_counter() - start:.0f} s; failed: {failures or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
