"""Figures of the CLI (matplotlib is an optional extra: `pip install 'diffaug-noise[plot]'`)."""
from __future__ import annotations

import math
import pathlib

import click

from .io import write_atomic


def pyplot():
    """matplotlib.pyplot on a file backend, or None with a warning when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        click.echo("warning: matplotlib is not installed, so no plots; install it with: pip install "
                   "'diffaug-noise[plot]'", err=True)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: pathlib.Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))


def toy_samples(plt, result: dict, path: pathlib.Path) -> None:
    """Real data beside each method's samples (first seed), modes covered in the titles."""
    methods = list(result["config"]["methods"])
    seed = result["config"]["seeds"][0]
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(3.2 * (len(methods) + 1), 3.4), sharex=True, sharey=True)
    real = result["real"]
    axes[0].scatter(real[:, 0], real[:, 1], s=2, c="k", alpha=0.5)
    axes[0].set_title("real (25 modes)")
    for ax, method in zip(axes[1:], methods):
        pts = result["samples"][f"{method}/seed{seed}"]
        run = next(r for r in result["runs"] if r["method"] == method and r["seed"] == seed)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(f"{method}: {run['modes_covered']}/25 covered, {run['modes_hit']} hit, HQ "
                     f"{100 * run['hq_share']:.0f}%", fontsize=9)
    for ax in axes:
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
        ax.set_aspect("equal")
    fig.suptitle(f"25 Gaussians, seed {seed}, {result['config']['iterations']} iterations")
    save(fig, path)
    plt.close(fig)


def toy_T(plt, result: dict, path: pathlib.Path) -> None:
    """T and r_d over training for each diffusion run."""
    history = result["history"]
    fig, (ax_T, ax_r) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for name, values in history["T"].items():
        ax_T.plot(history["iteration"], values, label=name)
    for name, values in history["r_d"].items():
        ax_r.plot(history["iteration"], values, label=name, lw=0.8)
    ax_r.axhline(result["config"]["target"], color="k", ls="--", lw=1, label="target")
    ax_T.set_ylabel("T")
    ax_r.set_ylabel("r_d = E[sign D(real)]")
    ax_r.set_xlabel("iteration")
    ax_T.legend(fontsize=7)
    ax_r.legend(fontsize=7)
    ax_T.set_title("adaptive diffusion length")
    save(fig, path)
    plt.close(fig)


def digits_samples(plt, result: dict, path: pathlib.Path, per_side: int = 10) -> None:
    """A grid of real digits beside each method's samples (first seed), FD_digits and classes in the titles."""
    methods = list(result["config"]["methods"])
    seed = result["config"]["seeds"][0]
    per_side = min(per_side, math.isqrt(result["config"]["eval_samples"]), math.isqrt(len(result["real"])))

    def mosaic(flat):
        tiles = flat[:per_side * per_side].view(per_side, per_side, 8, 8).numpy()
        return tiles.transpose(0, 2, 1, 3).reshape(per_side * 8, per_side * 8)

    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(2.8 * (len(methods) + 1), 3.2))
    axes[0].imshow(mosaic(result["real"]), cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("real digits")
    for ax, method in zip(axes[1:], methods):
        run = next(r for r in result["runs"] if r["method"] == method and r["seed"] == seed)
        ax.imshow(mosaic(result["samples"][f"{method}/seed{seed}"]), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{method}\nFD_digits {run['score']:.1f}, {run['classes_covered']}/10 classes", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    config = result["config"]
    fig.suptitle(f"{config['train_size']} training digits, seed {seed}, {config['iterations']} iterations")
    save(fig, path)
    plt.close(fig)


def digits_training(plt, result: dict, path: pathlib.Path) -> None:
    """FD_digits, r_d and T over training, one line per run, one colour per method."""
    history, config = result["history"], result["config"]
    colours = {m: f"C{i}" for i, m in enumerate(config["methods"])}
    fig, (ax_s, ax_r, ax_T) = plt.subplots(3, 1, figsize=(7.5, 8), sharex=True)
    for name, values in history["score"].items():
        method = name.split("/")[0]
        ax_s.plot(history["score_iteration"], values, color=colours[method], lw=1,
                  label=method if name.endswith("/seed%d" % config["seeds"][0]) else None)
    for name, values in history["r_d"].items():
        ax_r.plot(history["iteration"], values, color=colours[name.split("/")[0]], lw=0.7, alpha=0.8)
    for name, values in history["T"].items():
        ax_T.plot(history["iteration"], values, color=colours[name.split("/")[0]], lw=1)
    ax_r.axhline(config["target"], color="k", ls="--", lw=1, label=f"target {config['target']}")
    ax_s.set_yscale("log")
    ax_s.set_ylabel("FD_digits (lower is better)")
    ax_r.set_ylabel("r_d = E[sign D(real)]")
    ax_T.set_ylabel("T (diffusion runs)")
    ax_T.set_xlabel("training step")
    ax_s.legend(fontsize=8)
    ax_r.legend(fontsize=8, loc="lower right")
    ax_s.set_title(f"{len(config['seeds'])} seed(s), one line per run")
    save(fig, path)
    plt.close(fig)


def guidance(plt, result: dict, path: pathlib.Path) -> None:
    """Samples per guidance scale (first seed), then class precision and within-class coverage against s."""
    config = result["config"]
    seed, scales = config["seeds"][0], config["scales"]
    fig, axes = plt.subplots(1, len(scales) + 1, figsize=(2.7 * (len(scales) + 1), 3.0))
    for ax, scale in zip(axes, scales):
        pts = result["samples"][f"s={scale:g}/seed{seed}"]
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
        row = next(r for r in result["runs"] if r["seed"] == seed and r["scale"] == scale)
        ax.set_title(f"s = {scale:g}: {100 * row['class_precision']:.0f}% in class", fontsize=9)
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    curve = axes[-1]
    s = [row["scale"] for row in result["per_scale"]]
    curve.plot(s, [100 * row["class_precision"] for row in result["per_scale"]], "o-", label="class precision %")
    twin = curve.twinx()
    twin.plot(s, [row["within_class_coverage"] for row in result["per_scale"]], "s--", color="C1",
              label="modes of class covered")
    twin.set_ylim(0, 5.5)
    curve.set_ylim(0, 105)
    curve.set_xlabel("guidance scale s")
    curve.set_title("fidelity vs diversity", fontsize=9)
    curve.legend(loc="center right", fontsize=7)
    twin.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"classifier guidance to class (row) {config['target_class']}, seed {seed}")
    save(fig, path)
    plt.close(fig)
