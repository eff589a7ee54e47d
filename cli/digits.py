"""`diffaug-noise run digits`: plain GAN vs instance noise vs Diffusion-GAN on a few hundred real digits."""
from __future__ import annotations

import io
import pathlib
import statistics
import zipfile

import click

from diffaug_noise.checkpoint import CheckpointError
from diffaug_noise.data import DatasetError
from diffaug_noise.demos.digits import METHODS, DigitsConfig, train_digits
from diffaug_noise.demos.digits.networks import CONDITIONINGS
from diffaug_noise.extras import require
from diffaug_noise.timesteps import T_DISTS

from . import plots
from .io import check_device, comma_list, ensure_outdir, write_atomic
from .report import span, write_metrics

_DEFAULTS = DigitsConfig()


def format_table(result: dict) -> str:
    """One line per method: median [min-max] over seeds."""
    lines = [f"{'method':<16} {'FD_digits (final)':<22} {'FD_digits (best)':<22} {'classes /10':<12} {'final T':<20} max T",
             "-" * 100]
    for method, stats in result["summary"].items():
        rows = [r for r in result["runs"] if r["method"] == method]
        final_T = [r["final_T"] for r in rows if r["final_T"] is not None]
        max_T = [r["max_T"] for r in rows if r["max_T"] is not None]
        lines.append(f"{method:<16} {span(stats['score'], lambda v: f'{v:.1f}'):<22} "
                     f"{span(stats['best_score'], lambda v: f'{v:.1f}'):<22} "
                     f"{span(stats['classes_covered'], lambda v: f'{v:g}'):<12} {str(final_T or '-'):<20} {max_T or '-'}")
    config = result["config"]
    lines.append(f"{len(config['seeds'])} seed(s) {list(config['seeds'])}, {config['train_size']} training digits, "
                 f"{config['steps']} steps, {result['wall_seconds']:.1f} s on {config['threads']} thread(s) "
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


@click.command("digits")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=pathlib.Path), default="digits-run",
              help="Folder for metrics.json, samples.png and training.png (created if missing).")
@click.option("--methods", callback=lambda ctx, param, value: comma_list(value, METHODS, "method"), default=",".join(_DEFAULTS.methods),
              help="Comma-separated subset of plain, instance (Gaussian instance noise), diffusion (adaptive T), "
                   "diffusion-fixed (T = --fixed-T, no controller).")
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=len(_DEFAULTS.seeds),
              help="Number of seeds (0..K-1); each seed draws its own training subset and initial weights.")
@click.option("--train-size", type=click.IntRange(min=10, max=1797), default=_DEFAULTS.train_size,
              help="Training digits per seed, a stratified draw from the 1,797 (the limited-data knob).")
@click.option("--steps", type=click.IntRange(min=1), default=_DEFAULTS.steps, help="Training steps (one D and one G step each).")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.sigma,
              help="Diffusion noise std, in pixel units ([-1, 1] images).")
@click.option("--instance-sigma", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.instance_sigma,
              help="Std of the Gaussian instance noise of the 'instance' baseline.")
@click.option("--target", type=click.FloatRange(-1, 1), default=_DEFAULTS.target, help="Controller target for r_d = E[sign D(real)].")
@click.option("--kimg", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.kimg,
              help="Controller speed: thousands of images for p (and so T) to go from t_min to t_max.")
@click.option("--t-dist", type=click.Choice(T_DISTS), default=_DEFAULTS.t_dist, help="Law of t over 1..T.")
@click.option("--clean-prob", type=click.FloatRange(0, 1), default=_DEFAULTS.clean_prob, help="Share of D's inputs left clean (t = 0).")
@click.option("--t-max", type=click.IntRange(min=1), default=_DEFAULTS.t_max, help="Largest T the controller may reach.")
@click.option("--fixed-T", "fixed_T", type=click.IntRange(min=1), default=_DEFAULTS.fixed_T, help="T of the 'diffusion-fixed' method.")
@click.option("--conditioning", type=click.Choice(CONDITIONINGS), default=_DEFAULTS.conditioning,
              help="How D sees t: a projection head, or film (AdaGN-style scale and shift of every hidden layer).")
@click.option("--eval-every", type=click.IntRange(min=1), default=_DEFAULTS.eval_every, help="Steps between FD_digits evaluations.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Where to train; small enough for a laptop CPU.")
@click.option("--threads", type=click.IntRange(min=1), default=_DEFAULTS.threads,
              help="torch CPU threads (recorded; measured fastest on 2 cores, see docs/digits.md).")
@click.option("--save-samples", is_flag=True,
              help="Also write each run's final samples as OUT/samples/METHOD-seedK.zip, for `diffaug-noise eval`.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="Save the whole training state to OUT/checkpoint.pt every N steps (atomically) and at the end.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/checkpoint.pt (same settings required); the result is bit-identical to an "
                   "uninterrupted run. Starts afresh if there is no checkpoint yet.")
@click.pass_context
def digits_command(ctx, out_dir, methods, n_seeds, train_size, steps, sigma, instance_sigma, target, kimg, t_dist, clean_prob,
                   t_max, fixed_T, conditioning, eval_every, device, threads, save_samples, checkpoint_every, resume):
    """Plain GAN vs Gaussian instance noise vs Diffusion-GAN on 200 real 8x8 digits (scikit-learn's).

    With so few images a plain GAN's discriminator memorises them and the generator collapses to
    a few digits; the diffusion noise keeps D honest, and the controller raises T while D
    overfits. Every method trains the same G and D on the same data from the same seed. Scored
    by FD_digits (a Fréchet distance in a digits classifier's features, lower is better) and
    the digit classes covered. Writes metrics.json, samples.png and training.png (FD_digits,
    r_d and T over training) to --out and prints a table. About 11 s per run on 2 cores (the
    default, 3 methods x 3 seeds: about 100 s); results and every setting tried: docs/digits.md.
    If the run is killed, rerun the same command with --resume.
    """
    check_device(device)
    if fixed_T > t_max:
        raise click.BadParameter(f"--fixed-T {fixed_T} exceeds --t-max {t_max}; lower it or raise --t-max", param_hint="--fixed-T")
    config = DigitsConfig(steps=steps, seeds=tuple(range(n_seeds)), methods=methods, train_size=train_size, sigma=sigma,
                          instance_sigma=instance_sigma, target=target, kimg=kimg, t_dist=t_dist, clean_prob=clean_prob,
                          t_max=t_max, fixed_T=fixed_T, conditioning=conditioning, eval_every=eval_every, threads=threads,
                          device=device)
    out_dir = ensure_outdir(out_dir)
    tqdm = require("tqdm", "cli").tqdm
    checkpoint = out_dir / "checkpoint.pt"
    if resume and checkpoint.exists():
        click.echo(f"resuming from {checkpoint}", err=True)

    with tqdm(total=steps, desc=f"digits: {len(methods)} method(s) x {n_seeds} seed(s)", unit="step", leave=False) as bar:
        def on_step(step, scores):
            bar.update(1)
            if scores and step % config.eval_every == 0:
                medians = {m: statistics.median(v for k, v in scores.items() if k.startswith(m + "/")) for m in methods}
                bar.set_postfix_str("FD_digits " + " ".join(f"{m}={v:.0f}" for m, v in medians.items()), refresh=False)
        try:
            result = train_digits(config, on_step=on_step, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                  resume=resume)
        except (DatasetError, CheckpointError) as err:
            raise click.ClickException(str(err))
    written = [write_metrics(out_dir, result, ("config", "wall_seconds", "runs", "summary", "history"), threads, device)]
    if save_samples:
        (out_dir / "samples").mkdir(exist_ok=True)
        for name, images in result["samples"].items():
            _write_samples_zip(out_dir / "samples" / (name.replace("/", "-") + ".zip"), images)
        written.append(out_dir / "samples")
    plt = plots.pyplot()
    if plt is not None:
        plots.digits_samples(plt, result, out_dir / "samples.png")
        plots.digits_training(plt, result, out_dir / "training.png")
        written += [out_dir / "samples.png", out_dir / "training.png"]
    click.echo(format_table(result))
    click.echo("wrote " + ", ".join(str(p) for p in written))
