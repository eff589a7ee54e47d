"""The datasets of the paper by name, and where their prepared copies live.

A prepared dataset is one zip of square PNGs in the layout StyleGAN2-ADA and ProjectedGAN read
(``00000/img00000000.png``, optional ``dataset.json`` labels), written by
:func:`diffaug_noise.data.prepare`. ``--data`` accepts a registered name (looked up under the data
root) or a path to a zip or an image folder.

The data root is, in order: the ``data_root`` argument (CLI ``--data-root``), the
``DIFFAUG_NOISE_DATA`` environment variable, ``~/.cache/diffaug-noise/data``.

Example:
    >>> DATASETS["lsun_bedroom"].resolution, DATASETS["lsun_bedroom"].source_format
    (256, 'lsun_lmdb')
    >>> DATASETS["ffhq_2k"].subset
    2000
    >>> DATASETS["lsun_church"].max_images, DATASETS["lsun_church"].transform
    (200000, 'center-crop-wide')
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re

from ..knobs import field_of, knob_meta
from ..registry import Registry
from .errors import DatasetError
from .sources import CIFAR10_SOURCE, SOURCE_FORMATS

ENV_VAR = "DIFFAUG_NOISE_DATA"
DEFAULT_ROOT = "~/.cache/diffaug-noise/data"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # one path component, no leading dot or dash


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One named dataset: what the paper trains on and where its source comes from."""

    name: str  # registry key, e.g. "lsun_bedroom"
    resolution: int  # square side of the prepared images
    # a name of sources.SOURCE_FORMATS: its reader reads the source ("lsun_lmdb", "image_folder", ...)
    source_format: str
    download: str  # where the source comes from (shown when it is missing)
    subset: int | None = None  # limited-data subsets: number of images, drawn by seed
    parent: str | None = None  # the full dataset a subset is drawn from
    max_images: int | None = None  # the first N images only (the forks' LSUN 200k sets)
    transform: str = "center-crop"  # how images become square (diffaug_noise.data.prepare)

    @property
    def bundled(self) -> bool:
        """True when an installed package holds the source (its reader says so), so ``prepare`` needs no
        ``--source``."""
        return getattr(SOURCE_FORMATS[self.source_format], "bundled", False)

    @property
    def filename(self) -> str:
        """File name of the prepared zip under the data root."""
        return f"{self.name}-{self.resolution}x{self.resolution}.zip"


_LSUN = ("the official LSUN lmdb export: http://dl.yf.io/lsun/scenes/{0}_train_lmdb.zip "
         "(or python download.py -c {0} from github.com/fyu/lsun), unzipped to a folder holding data.mdb")
_AFHQ = ("AFHQ (StarGAN v2): https://github.com/clovaai/stargan-v2 (bash download.sh afhq-dataset); "
         "use the folder afhq/train/{0}")
_FFHQ = ("FFHQ images1024x1024 from https://github.com/NVlabs/ffhq-dataset (python download_ffhq.py --images); "
         "use the folder images1024x1024")

DATASETS = Registry("dataset", DatasetError)
for _spec in [
    DatasetSpec("cifar10", 32, "cifar10_python", CIFAR10_SOURCE),
    DatasetSpec("celeba", 64, "image_folder",
                "CelebA img_align_celeba from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (folder or zip)"),
    DatasetSpec("stl10", 64, "image_folder",
                "STL-10 unlabeled split exported as images (e.g. torchvision.datasets.STL10(split='unlabeled') saved "
                "as PNGs)"),
    # The paper's LSUN sets, as the official Diffusion-GAN README prepares them with dataset_tool.py:
    # the first 200k images, Bedroom center-cropped, Church with center-crop-wide; the full sets beside them.
    DatasetSpec("lsun_bedroom", 256, "lsun_lmdb", _LSUN.format("bedroom"), max_images=200_000),
    DatasetSpec("lsun_church", 256, "lsun_lmdb", _LSUN.format("church_outdoor"), max_images=200_000,
                transform="center-crop-wide"),
    DatasetSpec("lsun_bedroom_full", 256, "lsun_lmdb", _LSUN.format("bedroom")),
    DatasetSpec("lsun_church_full", 256, "lsun_lmdb", _LSUN.format("church_outdoor")),
    DatasetSpec("afhq_cat", 512, "image_folder", _AFHQ.format("cat")),
    DatasetSpec("afhq_dog", 512, "image_folder", _AFHQ.format("dog")),
    DatasetSpec("afhq_wild", 512, "image_folder", _AFHQ.format("wild")),
    DatasetSpec("ffhq", 1024, "image_folder", _FFHQ),
    # the whole set at 256 px (R3GAN's FFHQ-256, StyleGAN2's paper256)
    DatasetSpec("ffhq_256", 256, "image_folder", _FFHQ),
    DatasetSpec("ffhq_64", 64, "image_folder", _FFHQ),  # the whole set at 64 px (R3GAN's FFHQ-64)
    DatasetSpec("digits", 8, "sklearn_digits",
                "bundled with scikit-learn (pip install 'diffaug-noise[digits]'), no download: diffaug-noise data "
                "prepare digits"),
    *[DatasetSpec(f"ffhq_{label}", 256, "image_folder", _FFHQ, subset=n, parent="ffhq")
      for label, n in [("200", 200), ("500", 500), ("1k", 1000), ("2k", 2000), ("5k", 5000)]],
]:
    DATASETS.register(_spec.name, _spec)


def data_root(data_root: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder prepared datasets live in (argument, then ``$DIFFAUG_NOISE_DATA``, then the default)."""
    return pathlib.Path(data_root or os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


_root_folder = data_root  # for the functions whose argument of the same name hides it


def data_root_setting():
    """The ``data_root`` field of a settings dataclass (``--data-root``): declared here once, for every command."""
    return field_of(None, knob_meta(f"Folder of prepared datasets and of eval's caches. [default: ${ENV_VAR}, else "
                                    f"{DEFAULT_ROOT}]", kind="dir"))


def check_name(name) -> str:
    """``name`` if it is a dataset name: 1-64 letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit.

    A name becomes a file name under the data root, so it must never be a path (``../x``, ``/abs``),
    empty, or hidden.

    Example:
        >>> check_name("ffhq_2k")
        'ffhq_2k'
        >>> check_name("../escaped")
        Traceback (most recent call last):
        ...
        diffaug_noise.data.errors.DatasetError: dataset name '../escaped' is not a name: ...
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise DatasetError(f"dataset name {name!r} is not a name: use 1-64 letters, digits, '.', '_' or '-', starting "
                           f"with a letter or digit (it becomes a file name under the data root; to write elsewhere "
                           f"pass --out PATH)")
    return name


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or a :class:`DatasetError` listing the names."""
    if name not in DATASETS:
        raise _unknown(name)
    return DATASETS[name]


def _unknown(name) -> DatasetError:
    return DatasetError(f"unknown dataset {str(name)!r}; choose one of {', '.join(DATASETS)}, "
                        f"or pass a path to a zip or a folder of images")


def resolve_data(data: str | os.PathLike, data_root: str | os.PathLike | None = None) -> pathlib.Path:
    """Turn ``--data`` (a name or a path) into the path of a zip or image folder that exists.

    Example:
        >>> resolve_data("no_such_set")
        Traceback (most recent call last):
        ...
        diffaug_noise.data.errors.DatasetError: unknown dataset 'no_such_set'; choose one of cifar10, ...
    """
    path = pathlib.Path(data).expanduser()
    if path.exists():
        if path.is_dir() or path.suffix == ".zip":
            return path
        raise DatasetError(f"--data {str(data)!r} is neither a folder nor a .zip; prepare it with diffaug-noise data "
                           "prepare")
    if isinstance(data, str) and data in DATASETS:
        spec, root = DATASETS[data], _root_folder(data_root)
        prepared = root / spec.filename
        if prepared.is_file():
            return prepared
        others = sorted(root.glob(f"{data}-*x*.zip"))  # prepared at another --resolution
        if len(others) == 1:
            return others[0]
        if others:
            raise DatasetError(f"dataset {data!r} is prepared at several resolutions "
                               f"({', '.join(p.name for p in others)}) but not at {spec.resolution}; pass --data with "
                               "the path of the one you want")
        source = "--source PATH_TO_FFHQ_IMAGES" if spec.parent else "" if spec.bundled else "--source PATH"
        fetch = "It is bundled with scikit-learn; run: " if spec.bundled else f"Download {spec.download}, then run: "
        raise DatasetError(
            f"dataset {data!r} is not prepared: {str(prepared)!r} does not exist. {fetch}"
            f"diffaug-noise data prepare {data} {source}{' ' if source else ''}--data-root {str(root)!r} "
            f"(or point --data-root / ${ENV_VAR} at the folder that holds {spec.filename})")
    if any(sep in str(data) for sep in ("/", os.sep)) or path.suffix:
        raise DatasetError(f"--data {str(data)!r} does not exist; check the path, or use a registered name "
                           f"({', '.join(DATASETS)})")
    raise _unknown(data)
