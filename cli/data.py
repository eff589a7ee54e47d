"""`diffaug-noise data`: the registry of named datasets and the converter to upstream's zip layout."""
from __future__ import annotations

import pathlib

import click

from diffaug_noise.data import DATASETS, SOURCE_FORMATS, DatasetError, prepare
from diffaug_noise.data import data_root as resolve_root
from diffaug_noise.data.sources import Limits
from diffaug_noise.extras import require

from .io import DATA_ROOT_HELP


@click.group("data")
def data_group():
    """Named datasets: list them, and prepare a downloaded one for training and evaluation."""


@data_group.command("list")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help=DATA_ROOT_HELP)
def list_command(data_root):
    """Show every registered name, its resolution, whether it is prepared, and where its source comes from."""
    root = resolve_root(data_root)
    click.echo(f"data root: {root}")
    width = max(len("name"), *(len(spec.name) for spec in DATASETS.values()))  # lsun_bedroom_full is 17
    click.echo(f"{'name':<{width}} {'res':>5} {'subset':>7}  {'prepared':<9} source")
    for spec in DATASETS.values():
        ready = "yes" if (root / spec.filename).is_file() else "no"
        click.echo(f"{spec.name:<{width}} {spec.resolution:>5} {spec.subset or '-':>7}  {ready:<9} {spec.download}")


@data_group.command("prepare")
@click.argument("name")
@click.option("--source", default=None, type=click.Path(exists=True, path_type=pathlib.Path),
              help="The downloaded dataset: an LSUN lmdb folder (holding data.mdb), a folder or zip of images, "
                   "or cifar-10-python.tar.gz. Not needed for bundled datasets (digits).  [required otherwise]")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help=DATA_ROOT_HELP)
@click.option("--out", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Write the zip here instead of DATA_ROOT/NAME-RxR.zip.")
@click.option("--resolution", type=click.IntRange(min=1), default=None,
              help="Side of the square output images. [default: the registry's; required for unregistered names]")
@click.option("--transform", type=click.Choice(["center-crop", "center-crop-wide", "pad"]), default=None,
              help="How an image becomes square, with StyleGAN2-ADA dataset_tool.py's geometry (--resolution is its "
                   "--width); pad keeps the whole image on black. [default: the registry's, else center-crop]")
@click.option("--height", type=click.IntRange(min=1), default=None,
              help="center-crop-wide's band height (dataset_tool's --height). [default: --resolution]")
@click.option("--labels", type=click.Choice(["folders"]), default=None,
              help="Class labels (dataset.json, for conditional training) from the top-level subfolders of an image "
                   "source.")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="Read only the first N images of the source, counting corrupt ones and those the transform drops, "
                   "as dataset_tool.py's --max-images does. [default: the registry's, e.g. 200000 for lsun_bedroom]")
@click.option("--subset", type=click.IntRange(min=1), default=None,
              help="Keep N images drawn at random with --seed (limited-data runs). [default: the registry's, e.g. "
                   "2000 for ffhq_2k]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --subset draw.")
@click.option("--max-image-bytes", type=click.IntRange(min=1), default=Limits.max_image_bytes, show_default=True,
              help="Skip a source image whose declared size (zip header, file size, lmdb value) is larger, unread.")
@click.option("--max-image-pixels", type=click.IntRange(min=1), default=Limits.max_image_pixels, show_default=True,
              help="Skip a source image whose header declares more pixels (width x height), undecoded: a "
                   "decompression bomb cannot exhaust memory.")
@click.option("--force", is_flag=True, help="Rebuild the zip even if it is up to date with the source and settings.")
@click.option("--source-format", type=click.Choice(SOURCE_FORMATS.names()), default=None,
              help="How to read --source. [default: the registered dataset's (data list shows it), else read from "
                   "the path]")
def prepare_command(name, source, data_root, out, resolution, transform, height, labels, max_images, subset, seed,
                    max_image_bytes, max_image_pixels, force, source_format):
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
        report = prepare(name, source, out=out, data_root_arg=data_root, resolution=resolution, transform=transform,
                         height=height, labels=labels, max_images=max_images, subset=subset, seed=seed,
                         on_progress=progress, limits=Limits(max_image_bytes, max_image_pixels), force=force,
                         source_format=source_format)
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
