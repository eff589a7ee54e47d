"""`diffaug-noise bench`: the noise forward against bounds measured in the same run; `bench upstream`: a whole loop.

Both commands' options are generated from their settings dataclasses (:class:`~diffaug_noise.benchmark.NoiseBench`,
:class:`~diffaug_noise.integrations.bench.UpstreamBench`, and :class:`.upstream.UpstreamRun`'s where-and-how).
"""
from __future__ import annotations

import dataclasses

import click
import torch

from diffaug_noise.benchmark import NoiseBench, bench_noise
from diffaug_noise.extras import require
from diffaug_noise.integrations import ADAPTERS
from diffaug_noise.integrations.bench import UpstreamBench

from .io import check_device, write_json
from .knob_options import JsonReport, options, settings_from, values, with_knobs
from .upstream import UpstreamRun


@with_knobs(JsonReport)
@with_knobs(NoiseBench)
@click.group("bench", invoke_without_command=True)
@click.pass_context
def bench_command(ctx, **params):
    """Time the noise forward and print ratios to randn_like (the bound), a copy, an unfused baseline
    and a discriminator step; `bench upstream` times a whole upstream training loop instead.

    On CUDA `ours` is the fused Triton kernel; `torch/ours` compares the unfused torch path of the
    same module, `grad/ours` the forward of an x that needs a gradient (a G step's fakes). `ours/copy`
    near 1 means one read and one write of x, the fused kernel's floor.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(NoiseBench, params)
    check_device(settings.device)
    tqdm = require("tqdm", "cli").tqdm

    rows = [bench_noise(dataclasses.replace(settings, shapes=(shape,)))[0]
            for shape in tqdm(settings.shapes, desc="bench", unit="shape", leave=False)]
    cuda = settings.device == "cuda"
    click.echo(f"{'shape':<18} {'ours ms':>9} {'randn ms':>9} {'ours/randn':>11} {'unfused/ours':>13} "
               f"{'ours/copy':>10} {'ours/D step':>12}" + (f" {'torch/ours':>11} {'grad/ours':>10} {'kernel/copy':>12} "
                                         f"{'graphed/randn':>14}"
                                         if cuda else ""))
    for r in rows:
        med, ratio = r["median_s"], r["ratios"]
        share = "-" if ratio["ours/D step"] is None else f"{ratio['ours/D step']:.2e}"
        click.echo(f"{'x'.join(map(str, r['shape'])):<18} {med['ours'] * 1e3:>9.3f} {med['randn'] * 1e3:>9.3f} "
                   f"{ratio['ours/randn']:>11.3f} {ratio['unfused/ours']:>13.3f} {ratio['ours/copy']:>10.2f} "
                   f"{share:>12}"
                   + (f" {ratio['ours_torch/ours']:>11.3f} {ratio['ours_grad/ours']:>10.3f}"
                      f" {ratio.get('kernel/copy', float('nan')):>12.2f}"
                      f" {ratio['ours_graphed/randn']:>14.3f}" if cuda else ""))
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU thread(s)"
    click.echo(f"{where}, torch {torch.__version__}, medians of {settings.repeats} interleaved calls "
               "(D step: a tenth as many)")
    if params["json"] is not None:
        write_json(params["json"], rows)


_RUN_OPTIONS = ("repo", "data", "data_root", "outdir", "gpus", "shims")  # UpstreamRun's, as `run NAME` has them


@bench_command.group("upstream")
def bench_upstream_group():
    """What Diffusion-GAN costs in upstream's own training loop: `bench upstream NAME`, NAME a registered adapter.

    Runs upstream's train.py twice in fresh processes with the same data, flags and seed: `baseline`
    (only the compatibility shims) and `diffusion` (the adapter, with the settings given, named as in
    `diffaug-noise run NAME`). Shows upstream's tick lines as they come, then each run's sec/kimg
    (upstream's own timing, median over the ticks after the warm-up tick 0), their ratio, and the
    noise forward's time per kimg as a share of the diffusion run's sec/kimg (its first call per input
    shape, which compiles, left out). Give upstream enough --kimg, or --seconds-per-run, for at least
    two ticks after tick 0.

    \b
    Example (one GPU, 32 px, custom ops built):
      diffaug-noise bench upstream stylegan2 --repo ~/stylegan2-ada-pytorch --data cifar10 -- --cfg cifar --batch 64
      --kimg 12
    Example (a pair that ends within ten minutes, whatever its speed):
      diffaug-noise bench upstream stylegan2 --seconds-per-run 300 --repo ~/stylegan2-ada-pytorch --data ffhq256 --
      --cfg paper256 --batch 64
    """


def bench_adapter_command(adapter) -> click.Command:
    """``bench upstream NAME`` for one adapter: ``run NAME``'s settings for the diffusion run (and the baseline's
    shims), the bench's own options, upstream's arguments after ``--``."""
    settings_options = options(adapter.settings_class, adapter.presets)

    def callback(upstream_args, **params):
        from diffaug_noise.data import DatasetError, resolve_data
        from diffaug_noise.integrations import UpstreamError
        from diffaug_noise.integrations.bench import bench_upstream

        bench = UpstreamBench(adapter=adapter.name, **values(UpstreamBench, params))
        run = values(UpstreamRun, {k: params[k] for k in _RUN_OPTIONS})
        settings = values(adapter.settings_class, params)
        try:
            data_path = resolve_data(run["data"], run["data_root"])
            result = bench_upstream(bench, run["repo"], ["--data", str(data_path), "--gpus", str(run["gpus"]),
                                                         *upstream_args],
                                    run["outdir"], shims=run["shims"],
                                    on_tick=lambda mode, line: click.echo(f"{mode:<10} {line}"), **settings)
        except (DatasetError, UpstreamError, ValueError, TypeError, RuntimeError) as err:
            raise click.ClickException(str(err))
        _report(result, bench)
        if params["json"] is not None:
            write_json(params["json"], result)

    return click.Command(
        adapter.name, callback=callback, context_settings={"ignore_unknown_options": True},
        help=f"Time {adapter.title} against upstream {adapter.upstream.name} with only the shims (see `bench "
             f"upstream --help`). Settings as `diffaug-noise run {adapter.name}` names them; arguments after `--` go "
             f"to upstream's train.py.",
        params=(options(JsonReport) + options(UpstreamRun, only=_RUN_OPTIONS, defaults={"outdir": "bench-upstream"})
                + options(UpstreamBench, skip=("adapter",)) + settings_options
                + [click.Argument(["upstream_args"], nargs=-1, type=click.UNPROCESSED)]))


def _report(result: dict, bench: UpstreamBench) -> None:
    click.echo(f"{'run':<10} {'sec/kimg':>10} {'ticks used':>11}  upstream's CUDA ops")
    for mode, outcome in result["runs"].items():
        ops = outcome["custom_ops"]
        loaded = ", ".join(name for name, ok in ops.items() if ok) or "none"
        failed = [name for name, ok in ops.items() if not ok]
        click.echo(f"{mode:<10} {outcome['sec_per_kimg']:>10.3f} {len(outcome['sec_per_kimg_ticks']) - 1:>11d}  "
                   f"loaded: {loaded}" + (f"; failed (reference op used): {', '.join(failed)}" if failed else "")
                   + (f"  (stopped at {outcome['kimg']:g} kimg by --seconds-per-run)" if outcome["stopped"] else ""))
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} thread(s)"
    share = ("not measured with --gpus > 1 (the ranks are processes of their own)" if result["noise_share"] is None
             else f"{100 * result['noise_share']:.2f} % of the diffusion run's sec/kimg")
    click.echo(f"diffusion/baseline {result['ratio']:.3f}; noise forward {share} ({bench.adapter}, {where}, "
               f"torch {torch.__version__})")


for _adapter in ADAPTERS.values():
    bench_upstream_group.add_command(bench_adapter_command(_adapter))
