"""`diffaug-noise run toy`: the 25-Gaussians mode-coverage demo."""
from __future__ import annotations

import pathlib

import click

from diffaug_noise.checkpoint import CheckpointError
from diffaug_noise.extras import require
from diffaug_noise.demos.toy import METHODS, ToyConfig, train_toy

from . import plots
from .io import check_device, comma_list, ensure_outdir
from .report import span, write_metrics

_DEFAULTS = ToyConfig()


def _methods(value: str | None, compare: bool) -> tuple:
    if value is None:
        return ("plain", "diffusion") if compare else ("diffusion",)
    return comma_list(value, METHODS, "method", param_hint="--methods")


def format_table(result: dict) -> str:
    """One line per method: median [min-max] over seeds."""
    lines = [f"{'method':<10} {'modes covered /25':<20} {'modes hit /25':<16} {'HQ samples %':<20} {'reverse KL':<20} "
             f"{'NFE':<5} final T", "-" * 106]
    for method, stats in result["summary"].items():
        Ts = sorted(r["final_T"] for r in result["runs"] if r["method"] == method and r["final_T"] is not None)
        lines.append(
            f"{method:<10} {span(stats['modes_covered'], lambda v: f'{v:g}'):<20} {span(stats['modes_hit'], lambda v: f'{v:g}'):<16} "
            f"{span(stats['hq_share'], lambda v: f'{100 * v:.1f}'):<20} "
            f"{span(stats['reverse_kl'], lambda v: f'{v:.3f}'):<20} "
            f"{next(r['nfe'] for r in result['runs'] if r['method'] == method):<5} {Ts if Ts else '-'}"
        )
    seeds = result["config"]["seeds"]
    lines.append(f"{len(seeds)} seed(s) {list(seeds)}, {result['config']['iters']} iterations, "
                 f"{result['wall_seconds']:.1f} s on {result['config']['threads']} thread(s)")
    return "\n".join(lines)


@click.command("toy")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=pathlib.Path), default="toy-run", show_default=True,
              help="Folder for metrics.json, samples.png and T.png (with diffusion runs), created if missing.")
@click.option("--iters", type=click.IntRange(min=1), default=_DEFAULTS.iters, show_default=True,
              help="Training iterations (one D and one G step each).")
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=len(_DEFAULTS.seeds), show_default=True,
              help="Number of seeds (0..K-1); every method trains once per seed.")
@click.option("--methods", type=str, default=None,
              help="Comma-separated subset of plain,fixed,diffusion,ddgan (fixed = Gaussian instance noise, std 0.2; "
                   "ddgan = Denoising Diffusion GAN, 4 denoising steps, docs/ddgan.md).  "
                   "[default: plain,diffusion with --compare, diffusion alone with --no-compare]")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Train the plain GAN beside Diffusion-GAN (same networks, seeds and data).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to train; the toy is small enough for a laptop CPU.")
@click.option("--threads", type=click.IntRange(min=1), default=_DEFAULTS.threads, show_default=True,
              help="torch CPU threads. Results depend on it, so it is fixed and recorded.")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.sigma, show_default=True,
              help="Diffusion noise std in data units (the grid spans ±4).")
@click.option("--target", type=click.FloatRange(-1, 1), default=_DEFAULTS.target, show_default=True,
              help="Controller target for r_d = E[sign D(real)].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Save the whole training state to OUT/checkpoint.pt every N iterations (atomically) and at the end.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/checkpoint.pt (same settings required); the result is bit-identical to an "
                   "uninterrupted run. Starts afresh if there is no checkpoint yet.")
def toy_command(out_dir, iters, n_seeds, methods, compare, device, threads, sigma, target, checkpoint_every, resume):
    """Plain GAN vs Diffusion-GAN on a 5x5 grid of Gaussians (no GPU, no data needed).

    Trains every method with the same networks, seeds and iterations, then counts the modes
    each generator covers (PacGAN's protocol, docs/toy.md); `ddgan` (Denoising Diffusion GAN,
    T = 4 generator calls per sample) has its own pair networks and the same data. Writes metrics.json, samples.png
    (real vs generated) and T.png (T and r_d over training) to --out and prints a table.
    If the run is killed, rerun the same command with --resume.
    """
    check_device(device)
    config = ToyConfig(iters=iters, seeds=tuple(range(n_seeds)), methods=_methods(methods, compare),
                       threads=threads, sigma=sigma, target=target, device=device)
    out_dir = ensure_outdir(out_dir)
    tqdm = require("tqdm", "cli").tqdm

    checkpoint = out_dir / "checkpoint.pt"
    if resume and checkpoint.exists():
        click.echo(f"resuming from {checkpoint}", err=True)
    with tqdm(total=iters, desc=f"toy: {len(config.methods)} method(s) x {n_seeds} seed(s)", unit="it", leave=False) as bar:
        try:
            result = train_toy(config, on_step=lambda i: bar.update(1), checkpoint=str(checkpoint),
                               checkpoint_every=checkpoint_every, resume=resume)
        except CheckpointError as err:
            raise click.ClickException(str(err))
    written = [write_metrics(out_dir, result, ("config", "wall_seconds", "runs", "summary", "history"), threads, device)]
    plt = plots.pyplot()
    if plt is not None:
        plots.toy_samples(plt, result, out_dir / "samples.png")
        written.append(out_dir / "samples.png")
        if "diffusion" in config.methods:  # T and r_d exist only for the adaptive runs
            plots.toy_T(plt, result, out_dir / "T.png")
            written.append(out_dir / "T.png")
    click.echo(format_table(result))
    click.echo("wrote " + ", ".join(str(p) for p in written))
