"""`diffaug-noise run digits`: plain GAN vs instance noise vs Diffusion-GAN on a few hundred real digits."""
from __future__ import annotations

import dataclasses
import io
import pathlib
import statistics
import zipfile

import click

from diffaug_noise.checkpoint import CheckpointError
from diffaug_noise.data import DatasetError
from diffaug_noise.demos.digits import DigitsSettings, train_digits
from diffaug_noise.extras import require
from diffaug_noise.knobs import knob
from diffaug_noise.safe_paths import folder_under

from . import plots
from .io import check_device, ensure_outdir, write_atomic
from .knob_options import RunFolder, settings_from, with_knobs
from .report import span, write_metrics


def format_table(result: dict) -> str:
    """One line per method: median [min-max] over seeds."""
    lines = [f"{'method':<22} {'FD_digits (final)':<22} {'FD_digits (best)':<22} {'classes /10':<12} "
             f"{'final T':<20} max T",
             "-" * 106]
    for method, stats in result["summary"].items():
        rows = [r for r in result["runs"] if r["method"] == method]
        final_T = [r["final_T"] for r in rows if r["final_T"] is not None]
        max_T = [r["max_T"] for r in rows if r["max_T"] is not None]
        lines.append(f"{method:<22} {span(stats['score'], lambda v: f'{v:.1f}'):<22} "
                     f"{span(stats['best_score'], lambda v: f'{v:.1f}'):<22} "
                     f"{span(stats['classes_covered'], lambda v: f'{v:g}'):<12} {str(final_T or '-'):<20} "
                     f"{max_T or '-'}")
    config = result["config"]
    lines.append(f"{len(config['seeds'])} seed(s) {list(config['seeds'])}, {config['train_size']} training digits, "
                 f"{config['iterations']} iterations, {result['wall_seconds']:.1f} s on {config['threads']} thread(s) "
                 f"({result['wall_seconds'] / len(result['runs']):.1f} s per run)")
    return "\n".join(lines)


def _write_samples_zip(path: pathlib.Path, images) -> None:
    """uint8 ``[N, 64]`` digits as PNGs in a zip that `diffaug-noise eval --fake` reads."""
    from PIL import Image

    def write(tmp):
        with zipfile.ZipFile(tmp, "w") as z:
            for i, image in enumerate(images.view(-1, 8, 8).numpy()):
                buffer = io.BytesIO()
                Image.fromarray(image, mode="L").convert("RGB").save(buffer, format="PNG")
                z.writestr(f"{i:05d}.png", buffer.getvalue())
    write_atomic(path, write)


@dataclasses.dataclass
class DigitsOutput:
    """What `run digits` writes besides metrics.json and the plots."""

    save_samples: bool = knob(False, "Also write each run's final samples as OUTDIR/samples/METHOD-seedK.zip, for "
                                     "`diffaug-noise eval`.", kind=bool)


@with_knobs(DigitsSettings)
@with_knobs(DigitsOutput)
@with_knobs(RunFolder, defaults={"outdir": "digits-run"})
@click.command("digits")
def digits_command(**params):
    """Plain GAN vs Gaussian instance noise vs Diffusion-GAN on 200 real 8x8 digits (scikit-learn's).

    With so few images a plain GAN's discriminator memorises them and the generator collapses to
    a few digits; the diffusion noise keeps D honest, and the controller raises T while D
    overfits. Every method trains the same G and D on the same data from the same seed. Scored
    by FD_digits (a Fréchet distance in a digits classifier's features, lower is better) and
    the digit classes covered. Writes metrics.json, samples.png and training.png (FD_digits,
    r_d and T over training) to --outdir and prints a table. About 12 s per run on 2 cores (the
    default, 3 methods x 3 seeds: about 2 minutes); results and every setting tried: docs/digits.md.

    --net conv trains DCGAN-style convolutional G and D on the digits upsampled to 16 px, 100
    training digits, with DiffAugment beside the three (4 methods x 3 seeds: 4-5 min on 2
    cores; add diffusion-fixed and diffaugment+diffusion with --methods); its defaults come from its
    own tuning.
    If the run is killed, rerun the same command with --resume.
    """
    config, folder = settings_from(DigitsSettings, params), settings_from(RunFolder, params)
    save_samples, methods, threads, device = params["save_samples"], config.methods, config.threads, config.device
    check_device(device)
    out_dir = ensure_outdir(folder.outdir)
    tqdm = require("tqdm", "cli").tqdm
    checkpoint = out_dir / "checkpoint.pt"
    if save_samples:  # checked before training too, so a planted link does not cost a run
        folder_under(out_dir, out_dir / "samples")
    if folder.resume and checkpoint.exists():
        click.echo(f"resuming from {checkpoint}", err=True)

    plt = plots.pyplot()

    def write_plots(result):  # at each evaluation and at the end, each file replaced whole (write_atomic)
        if plt is not None:
            plots.digits_samples(plt, result, out_dir / "samples.png")
            plots.digits_training(plt, result, out_dir / "training.png")

    with tqdm(total=config.iterations, desc=f"digits: {len(methods)} method(s) x {len(config.seeds)} seed(s)",
              unit="it", leave=False) as bar:
        def on_step(step, scores):
            bar.update(1)
            if scores and step % config.eval_every == 0:
                medians = {m: statistics.median(v for k, v in scores.items() if k.startswith(m + "/")) for m in methods}
                bar.set_postfix_str("FD_digits " + " ".join(f"{m}={v:.0f}" for m, v in medians.items()), refresh=False)
        try:
            result = train_digits(config, on_step=on_step, checkpoint=checkpoint,
                                  checkpoint_every=folder.checkpoint_every, resume=folder.resume, on_eval=write_plots)
        except (DatasetError, CheckpointError) as err:
            raise click.ClickException(str(err))
    if result["already_complete"] and (out_dir / "metrics.json").exists():
        click.echo(f"the run in {out_dir} is complete ({config.iterations} of {config.iterations} iterations); nothing "
                   "to do (its outputs stay as they are; without --resume it trains afresh)")
        return
    written = [write_metrics(out_dir, result, ("config", "wall_seconds", "runs", "summary", "history"), threads,
                             device)]
    if save_samples:
        folder_under(out_dir, out_dir / "samples")  # never through a link planted in a shared run folder
        for name, images in result["samples"].items():
            _write_samples_zip(out_dir / "samples" / (name.replace("/", "-") + ".zip"), images)
        written.append(out_dir / "samples")
    write_plots(result)
    if plt is not None:
        written += [out_dir / "samples.png", out_dir / "training.png"]
    click.echo(format_table(result))
    click.echo("wrote " + ", ".join(str(p) for p in written))
