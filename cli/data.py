"""`diffaug-noise data`: the registry of named datasets and the converter to upstream's zip layout."""
from __future__ import annotations

import dataclasses
import pathlib

import click

from diffaug_noise.data import DATASETS, DatasetError, PrepareSettings, prepare
from diffaug_noise.data import data_root as resolve_root
from diffaug_noise.data.datasets import data_root_setting
from diffaug_noise.extras import require

from .knob_options import values, with_knobs


@click.group("data")
def data_group():
    """Named datasets: list them, and prepare a downloaded one for training and evaluation."""


@dataclasses.dataclass
class DataRoot:
    """The folder ``data list`` looks in."""

    data_root: pathlib.Path = data_root_setting()


@with_knobs(DataRoot)
@data_group.command("list")
def list_command(data_root):
    """Show every registered name, its resolution, whether it is prepared, and where its source comes from."""
    root = resolve_root(data_root)
    click.echo(f"data root: {root}")
    width = max(len("name"), *(len(spec.name) for spec in DATASETS.values()))  # lsun_bedroom_full is 17
    click.echo(f"{'name':<{width}} {'res':>5} {'subset':>7}  {'prepared':<9} source")
    for spec in DATASETS.values():
        ready = "yes" if (root / spec.filename).is_file() else "no"
        click.echo(f"{spec.name:<{width}} {spec.resolution:>5} {spec.subset or '-':>7}  {ready:<9} {spec.download}")


@with_knobs(PrepareSettings)
@click.argument("name")
@data_group.command("prepare")
def prepare_command(name, **params):
    """Convert a downloaded dataset into the zip StyleGAN2-ADA and ProjectedGAN read.

    Makes each image square (--transform, dataset_tool.py's geometry), resizes (Lanczos) and writes
    PNGs named 00000/img00000000.png in a stable order,
    plus dataset.json labels where the source has them (CIFAR-10). Corrupt images are skipped and
    listed, as are images over the size limits (skipped before they are read or decoded) and
    symlinks that point out of a source folder (not followed). The zip appears only when complete
    (temp file + rename); rerunning with the same source and settings does nothing (any edited
    image changes the source's signature); a second prepare of the same zip at the same time
    stops at once, naming the first. NAME is a name, not a path: --out writes elsewhere.

    \b
    Example:
      diffaug-noise data prepare lsun_bedroom --source ~/lsun/bedroom_train_lmdb
      diffaug-noise data prepare ffhq_2k --source ~/ffhq/images1024x1024 --seed 0
      diffaug-noise data prepare digits                  # scikit-learn's bundled copy
    """
    tqdm = require("tqdm", "cli").tqdm
    bars = []  # made at the first image, so an error before any work shows no empty bar

    def progress(done, wanted):
        if not bars:
            bars.append(tqdm(desc=f"prepare {name}", unit="img", leave=False, total=wanted))  # source images read
        bars[0].update(done - bars[0].n)

    try:
        report = prepare(name, on_progress=progress, **values(PrepareSettings, params))
    except DatasetError as err:
        raise click.ClickException(str(err))
    finally:
        for bar in bars:
            bar.close()
    if report.outside:
        click.echo(f"warning: did not follow {len(report.outside)} symlink(s) pointing out of the source or in a loop: "
                   f"{_shown(report.outside)}", err=True)
    if report.up_to_date:
        click.echo(f"{report.path} is up to date ({report.images} images); nothing to do (--force rebuilds it)")
        return
    for what, keys in (("corrupt image(s)", report.skipped), ("image(s) too small for the transform", report.dropped),
                       ("image(s) over the size limits", report.oversized)):
        if keys:
            click.echo(f"warning: skipped {len(keys)} {what}: {_shown(keys)}", err=True)
    skipped = len(report.skipped) + len(report.dropped) + len(report.oversized)
    side = report.resolution
    click.echo(f"wrote {report.path}: {report.images} images at {side}x{side}, {skipped} skipped")


def _shown(keys: list) -> str:
    """The first 20 of ``keys`` (names from the source: a stranger's text) with every unprintable character escaped."""
    shown = ["".join(c if c.isprintable() else ascii(c)[1:-1] for c in key) for key in keys[:20]]
    return ", ".join(shown) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
