"""Figures of the CLI (matplotlib is an optional extra: `pip install 'diffaug-noise[plot]'`)."""
from __future__ import annotations

import pathlib

import click

from .io import write_atomic


def pyplot():
    """matplotlib.pyplot on a file backend, or None with a warning when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        click.echo("warning: matplotlib is not installed, so no plots; install it with: pip install 'diffaug-noise[plot]'", err=True)
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
        ax.set_title(f"{method}: {run['modes_covered']}/25 covered, {run['modes_hit']} hit, HQ {100 * run['hq_share']:.0f}%", fontsize=9)
    for ax in axes:
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
        ax.set_aspect("equal")
    fig.suptitle(f"25 Gaussians, seed {seed}, {result['config']['iters']} iterations")
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
