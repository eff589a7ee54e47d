"""`diffaug-noise bench`: the noise forward against bounds measured in the same run."""
from __future__ import annotations

import pathlib

import click
import torch

from diffaug_noise.benchmark import DEFAULT_SHAPES, bench_noise
from diffaug_noise.extras import require

from .io import DATA_ROOT_HELP, check_device, write_json
from .upstream import settings_from_pairs


def _shapes(ctx, param, value: str) -> list[tuple[int, ...]]:
    try:
        shapes = [tuple(int(d) for d in s.split("x")) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected shapes like 64x3x32x32,16x3x256x256; got {value!r}")
    if not shapes or any(len(s) < 1 or min(s) < 1 for s in shapes):
        raise click.BadParameter(f"expected positive dimensions; got {value!r}")
    return shapes


@click.group("bench", invoke_without_command=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Device to time on.")
@click.option("--shapes", callback=_shapes, default=",".join("x".join(map(str, s)) for s in DEFAULT_SHAPES), show_default=True,
              help="Comma-separated input shapes, dimensions joined by x.")
@click.option("--repeats", type=click.IntRange(min=3), default=50, show_default=True, help="Timed calls per method (medians reported).")
@click.option("--d-step/--no-d-step", default=True, show_default=True,
              help="Also time forward+backward of a StyleGAN2-sized discriminator on image shapes (slow on a CPU).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Also write the results to this JSON file.")
@click.pass_context
def bench_command(ctx, device, shapes, repeats, d_step, json_path):
    """Time the noise forward and print ratios to randn_like (the bound), a copy, an unfused baseline
    and a discriminator step; `bench upstream` times a whole upstream training loop instead.

    On CUDA `ours` is the fused Triton kernel; `torch/ours` compares the unfused torch path of the
    same module, `grad/ours` the forward of an x that needs a gradient (a G step's fakes). `ours/copy`
    near 1 means one read and one write of x, the fused kernel's floor.
    """
    if ctx.invoked_subcommand is not None:
        return
    check_device(device)
    tqdm = require("tqdm", "cli").tqdm

    rows = [bench_noise(shapes=[s], device=device, repeats=repeats, d_step=d_step)[0]
            for s in tqdm(shapes, desc="bench", unit="shape", leave=False)]
    cuda = device == "cuda"
    click.echo(f"{'shape':<18} {'ours ms':>9} {'randn ms':>9} {'ours/randn':>11} {'unfused/ours':>13} {'ours/copy':>10} "
               f"{'ours/D step':>12}" + (f" {'torch/ours':>11} {'grad/ours':>10} {'kernel/copy':>12} {'graphed/randn':>14}"
                                         if cuda else ""))
    for r in rows:
        med, ratio = r["median_s"], r["ratios"]
        share = "-" if ratio["ours/D step"] is None else f"{ratio['ours/D step']:.2e}"
        click.echo(f"{'x'.join(map(str, r['shape'])):<18} {med['ours'] * 1e3:>9.3f} {med['randn'] * 1e3:>9.3f} "
                   f"{ratio['ours/randn']:>11.3f} {ratio['unfused/ours']:>13.3f} {ratio['ours/copy']:>10.2f} {share:>12}"
                   + (f" {ratio['ours_torch/ours']:>11.3f} {ratio['ours_grad/ours']:>10.3f}"
                      f" {ratio.get('kernel/copy', float('nan')):>12.2f}"
                      f" {ratio['ours_graphed/randn']:>14.3f}" if cuda else ""))
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU thread(s)"
    click.echo(f"{where}, torch {torch.__version__}, medians of {repeats} interleaved calls (D step: a tenth as many)")
    if json_path is not None:
        write_json(json_path, rows)


@bench_command.command("upstream", context_settings={"ignore_unknown_options": True})
@click.option("--adapter", default="stylegan2", show_default=True, help="A registered adapter (`diffaug-noise run --help`).")
@click.option("--repo", default=None, metavar="PATH", help="Your upstream checkout. [default: the adapter's environment variable]")
@click.option("--data", required=True, help="Dataset name or a zip/folder in upstream's layout.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False, path_type=pathlib.Path), metavar="DIR",
              help=DATA_ROOT_HELP)
@click.option("--outdir", default="bench-upstream", show_default=True, help="Where both runs write their run folders.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="GPUs per run.")
@click.option("--shims/--no-shims", default=True, show_default=True, help="The compatibility shims, in both runs.")
@click.option("--seconds-per-run", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop each run after this many seconds (startup included) and measure it on the ticks it logged, so "
                   "the pair fits a known time. [default: no limit; each run trains its --kimg]")
@click.option("--option", "option_pairs", multiple=True, metavar="NAME=VALUE",
              help="An adapter setting for both runs, named as `diffaug-noise run ADAPTER --help` spells it without the "
                   "dashes: preset=stylegan2, pretrained=false, ... Repeatable. [default: the adapter's defaults]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Also write the results to this JSON file.")
@click.argument("upstream_args", nargs=-1, type=click.UNPROCESSED)
def bench_upstream_command(adapter, repo, data, data_root, outdir, gpus, shims, seconds_per_run, option_pairs, json_path,
                           upstream_args):
    """What Diffusion-GAN costs in upstream's own training loop: the same run without and with the adapter.

    Runs upstream's train.py twice in fresh processes with the same data, flags and seed: `baseline`
    (only the compatibility shims) and `diffusion` (the adapter, its defaults or --option's settings). Shows
    upstream's tick lines as they come, then each run's sec/kimg (upstream's own timing, median over
    the ticks after the warm-up tick 0), their ratio, and the noise forward's time per kimg as a share
    of the diffusion run's sec/kimg (its first call per input shape, which compiles, left out). Give
    upstream enough --kimg, or --seconds-per-run, for at least two ticks after tick 0.

    \b
    Example (one GPU, 32 px, custom ops built):
      diffaug-noise bench upstream --repo ~/stylegan2-ada-pytorch --data cifar10 -- --cfg cifar --batch 64 --kimg 12
    Example (a pair that ends within ten minutes, whatever its speed):
      diffaug-noise bench upstream --seconds-per-run 300 --repo ~/stylegan2-ada-pytorch --data ffhq256 -- --cfg paper256 --batch 64
    """
    from diffaug_noise.data import DatasetError, resolve_data
    from diffaug_noise.integrations import ADAPTERS, UpstreamError
    from diffaug_noise.integrations.bench import bench_upstream

    if adapter not in ADAPTERS:
        raise click.BadParameter(f"unknown adapter {adapter!r}; choose one of {', '.join(ADAPTERS)}", param_hint="--adapter")
    settings = settings_from_pairs(ADAPTERS[adapter], option_pairs)
    try:
        data_path = resolve_data(data, data_root)
        result = bench_upstream(adapter, repo, ["--data", str(data_path), "--gpus", str(gpus), *upstream_args], outdir,
                                shims=shims, on_tick=lambda mode, line: click.echo(f"{mode:<10} {line}"),
                                seconds_per_run=seconds_per_run, **settings)
    except (DatasetError, UpstreamError, ValueError, RuntimeError) as err:
        raise click.ClickException(str(err))
    click.echo(f"{'run':<10} {'sec/kimg':>10} {'ticks used':>11}  upstream's CUDA ops")
    for mode, run in result["runs"].items():
        ops = run["custom_ops"]
        loaded = ", ".join(name for name, ok in ops.items() if ok) or "none"
        failed = [name for name, ok in ops.items() if not ok]
        click.echo(f"{mode:<10} {run['sec_per_kimg']:>10.3f} {len(run['sec_per_kimg_ticks']) - 1:>11d}  loaded: {loaded}"
                   + (f"; failed (reference op used): {', '.join(failed)}" if failed else "")
                   + (f"  (stopped at {run['kimg']:g} kimg by --seconds-per-run)" if run["stopped"] else ""))
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} thread(s)"
    share = ("not measured with --gpus > 1 (the ranks are processes of their own)" if result["noise_share"] is None
             else f"{100 * result['noise_share']:.2f} % of the diffusion run's sec/kimg")
    click.echo(f"diffusion/baseline {result['ratio']:.3f}; noise forward {share} ({adapter}, {where}, torch {torch.__version__})")
    if json_path is not None:
        write_json(json_path, result)
