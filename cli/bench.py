"""`diffaug-noise bench`: the noise forward against bounds measured in the same run."""
from __future__ import annotations

import pathlib

import click
import torch

from diffaug_noise.benchmark import DEFAULT_SHAPES, bench_noise
from diffaug_noise.extras import require

from .io import check_device, write_json


def _shapes(ctx, param, value: str) -> list[tuple[int, ...]]:
    try:
        shapes = [tuple(int(d) for d in s.split("x")) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected shapes like 64x3x32x32,16x3x256x256; got {value!r}")
    if not shapes or any(len(s) < 1 or min(s) < 1 for s in shapes):
        raise click.BadParameter(f"expected positive dimensions; got {value!r}")
    return shapes


@click.command("bench")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Device to time on.")
@click.option("--shapes", callback=_shapes, default=",".join("x".join(map(str, s)) for s in DEFAULT_SHAPES), show_default=True,
              help="Comma-separated input shapes, dimensions joined by x.")
@click.option("--repeats", type=click.IntRange(min=3), default=50, show_default=True, help="Timed calls per method (medians reported).")
@click.option("--d-step/--no-d-step", default=True, show_default=True,
              help="Also time forward+backward of a StyleGAN2-sized discriminator on image shapes (slow on a CPU).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Also write the results to this JSON file.")
def bench_command(device, shapes, repeats, d_step, json_path):
    """Time the noise forward and print ratios to randn_like (the bound), a copy, an unfused baseline
    and a discriminator step.

    On CUDA `ours` is the fused Triton kernel; `torch/ours` compares the unfused torch path of the
    same module. `ours/copy` near 1 means one read and one write of x, the fused kernel's floor.
    """
    check_device(device)
    tqdm = require("tqdm", "cli").tqdm

    rows = [bench_noise(shapes=[s], device=device, repeats=repeats, d_step=d_step)[0]
            for s in tqdm(shapes, desc="bench", unit="shape", leave=False)]
    cuda = device == "cuda"
    click.echo(f"{'shape':<18} {'ours ms':>9} {'randn ms':>9} {'ours/randn':>11} {'unfused/ours':>13} {'ours/copy':>10} "
               f"{'ours/D step':>12}" + (f" {'torch/ours':>11} {'kernel/copy':>12}" if cuda else ""))
    for r in rows:
        med, ratio = r["median_s"], r["ratios"]
        share = "-" if ratio["ours/D step"] is None else f"{ratio['ours/D step']:.2e}"
        click.echo(f"{'x'.join(map(str, r['shape'])):<18} {med['ours'] * 1e3:>9.3f} {med['randn'] * 1e3:>9.3f} "
                   f"{ratio['ours/randn']:>11.3f} {ratio['unfused/ours']:>13.3f} {ratio['ours/copy']:>10.2f} {share:>12}"
                   + (f" {ratio['ours_torch/ours']:>11.3f} {ratio.get('kernel/copy', float('nan')):>12.2f}" if cuda else ""))
    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU thread(s)"
    click.echo(f"{where}, torch {torch.__version__}, medians of {repeats} interleaved calls (D step: a tenth as many)")
    if json_path is not None:
        write_json(json_path, rows)
