"""`diffaug-noise run toy`: the 25-Gaussians mode-coverage demo."""
from __future__ import annotations

import click

from diffaug_noise.checkpoint import CheckpointError
from diffaug_noise.demos.toy import ToySettings, train_toy
from diffaug_noise.extras import require

from . import plots
from .io import check_device, ensure_outdir
from .knob_options import RunFolder, settings_from, with_knobs
from .report import span, write_metrics


def format_table(result: dict) -> str:
    """One line per method: median [min-max] over seeds."""
    lines = [f"{'method':<10} {'modes covered /25':<20} {'modes hit /25':<16} {'HQ samples %':<20} {'reverse KL':<20} "
             f"{'NFE':<5} final T", "-" * 106]
    for method, stats in result["summary"].items():
        Ts = sorted(r["final_T"] for r in result["runs"] if r["method"] == method and r["final_T"] is not None)
        lines.append(
            f"{method:<10} {span(stats['modes_covered'], lambda v: f'{v:g}'):<20} "
            f"{span(stats['modes_hit'], lambda v: f'{v:g}'):<16} "
            f"{span(stats['hq_share'], lambda v: f'{100 * v:.1f}'):<20} "
            f"{span(stats['reverse_kl'], lambda v: f'{v:.3f}'):<20} "
            f"{next(r['nfe'] for r in result['runs'] if r['method'] == method):<5} {Ts if Ts else '-'}"
        )
    seeds = result["config"]["seeds"]
    lines.append(f"{len(seeds)} seed(s) {list(seeds)}, {result['config']['iterations']} iterations, "
                 f"{result['wall_seconds']:.1f} s on {result['config']['threads']} thread(s)")
    return "\n".join(lines)


@with_knobs(ToySettings)
@with_knobs(RunFolder, defaults={"outdir": "toy-run", "checkpoint_every": 1000})
@click.command("toy")
def toy_command(**params):
    """Plain GAN vs Diffusion-GAN on a 5x5 grid of Gaussians (no GPU, no data needed).

    Trains every method with the same networks, seeds and iterations, then counts the modes
    each generator covers (PacGAN's protocol, docs/toy.md); `ddgan` (Denoising Diffusion GAN,
    T = 4 generator calls per sample) has its own pair networks and the same data. Writes metrics.json, samples.png
    (real vs generated) and T.png (T and r_d over training) to --outdir and prints a table.
    If the run is killed, rerun the same command with --resume.
    """
    config, folder = settings_from(ToySettings, params), settings_from(RunFolder, params)
    check_device(config.device)
    out_dir = ensure_outdir(folder.outdir)
    tqdm = require("tqdm", "cli").tqdm

    checkpoint = out_dir / "checkpoint.pt"
    if folder.resume and checkpoint.exists():
        click.echo(f"resuming from {checkpoint}", err=True)
    with tqdm(total=config.iterations, desc=f"toy: {len(config.methods)} method(s) x {len(config.seeds)} seed(s)",
              unit="it", leave=False) as bar:
        try:
            result = train_toy(config, on_step=lambda i: bar.update(1), checkpoint=str(checkpoint),
                               checkpoint_every=folder.checkpoint_every, resume=folder.resume)
        except CheckpointError as err:
            raise click.ClickException(str(err))
    if result["already_complete"] and (out_dir / "metrics.json").exists():
        click.echo(f"the run in {out_dir} is complete ({config.iterations} of {config.iterations} iterations); nothing "
                   "to do (its outputs stay as they are; without --resume it trains afresh)")
        return
    written = [write_metrics(out_dir, result, ("config", "wall_seconds", "runs", "summary", "history"), config.threads,
                             config.device)]
    plt = plots.pyplot()
    if plt is not None:
        plots.toy_samples(plt, result, out_dir / "samples.png")
        written.append(out_dir / "samples.png")
        if "diffusion" in config.methods:  # T and r_d exist only for the adaptive runs
            plots.toy_T(plt, result, out_dir / "T.png")
            written.append(out_dir / "T.png")
    click.echo(format_table(result))
    click.echo("wrote " + ", ".join(str(p) for p in written))
