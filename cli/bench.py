"""`diffaug-noise bench`: the noise forward against bounds measured in the same run."""
from __future__ import annotations

import pathlib

import click
import torch

from diffaug_noise.benchmark import DEFAULT_SHAPES, bench_noise

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
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Also write the results to this JSON file.")
def bench_command(device, shapes, repeats, json_path):
    """Time the noise forward and print ratios to randn_like (the bound), a copy and an unfused baseline."""
    check_device(device)
    rows = bench_noise(shapes=shapes, device=device, repeats=repeats)
    click.echo(f"{'shape':<18} {'ours ms':>9} {'randn ms':>9} {'ours/randn':>11} {'unfused/ours':>13} {'ours/copy':>10}")
    for r in rows:
        med, ratio = r["median_s"], r["ratios"]
        click.echo(f"{'x'.join(map(str, r['shape'])):<18} {med['ours'] * 1e3:>9.3f} {med['randn'] * 1e3:>9.3f} "
                   f"{ratio['ours/randn']:>11.3f} {ratio['unfused/ours']:>13.3f} {ratio['ours/copy']:>10.2f}")
    click.echo(f"device {device}, {torch.get_num_threads()} thread(s), medians of {repeats} interleaved calls")
    if json_path is not None:
        write_json(json_path, rows)
