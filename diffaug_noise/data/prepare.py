"""Convert a raw dataset into the zip StyleGAN2-ADA and ProjectedGAN train on.

Output layout: ``00000/img00000000.png``, ``00000/img00000001.png``, ... (1,000 per folder),
RGB, square, ``resolution`` pixels a side; ``dataset.json`` with ``{"labels": [[name, label], ...]}``
when the source has labels (CIFAR-10, digits, or class subfolders with ``labels="folders"``); and
``diffaug_noise.json``, the manifest that makes a re-run with the same source and settings a no-op.

Each image is decoded, converted to RGB, brought to a square by ``transform`` and resized with
Lanczos filtering to ``resolution`` a side, with StyleGAN2-ADA ``dataset_tool.py``'s geometry:

- ``center-crop`` (default): the centred square of the shorter side.
- ``center-crop-wide``: ``dataset_tool.py --transform=center-crop-wide --width=R --height=H``: the
  centred band of ``round(R h / w)`` rows, resized to ``R x H`` and pasted in the middle of a black
  ``R x R`` canvas; an image narrower than ``R`` or whose band is lower than ``H`` is dropped (with
  ``H = R``, as the official Diffusion-GAN README prepares LSUN Church, every landscape image is).
- ``pad``: the image in the middle of a black square of its longer side (nothing cropped).

Images that fail to decode, or that the transform drops, are skipped, counted and named in the report.
With ``subset=N`` the N images are the first N decodable ones of a permutation of the source fixed
by ``seed``, written in source order: the same seed gives the same subset on every machine.

The zip is written to a temporary file beside the target and renamed at the end: an interrupted
run leaves no partial dataset behind and a rerun starts over (removing the temporary files that
killed runs left). One prepare at a time writes a given zip: a second one fails at once, naming the
first (``<zip>.lock``, held with ``flock``, so a killed run holds nothing). "Up to date" is decided
from the settings and the source's signature: every image's name, size and modification time (a
folder), CRC-32 (a zip), the lmdb files' sizes and times, or a hash of the bundled digits, so an
edited image of equal size is seen; ``force=True`` rebuilds anyway.

Sources are read as untrusted: the name is one path component (:func:`~.registry.check_name`), a
symlink out of a source folder is not followed, and images over :class:`~.sources.Limits` are
skipped before they are read or decoded (listed in the report, as corrupt ones are).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import zipfile
from typing import Callable

import numpy as np

from ..checkpoint import remove_stale_temps, write_atomic
from ..extras import require
from ..knobs import check_knobs, knob
from .datasets import DATASETS, check_name, data_root, data_root_setting
from .errors import DatasetError
from .lock import exclusive
from .sources import SOURCE_FORMATS, ImageTooLarge, Limits, Oversized, decode, open_source

MANIFEST = "diffaug_noise.json"
TRANSFORMS = ("center-crop", "center-crop-wide", "pad")
MAX_MANIFEST_BYTES = 256 * 2**20  # a manifest lists every skipped image's name: megabytes for the largest sets
FORMAT_VERSION = 2  # 2: source signatures by content (names, sizes, times or CRCs), not by count and total size


@dataclasses.dataclass
class PrepareReport:
    """What :func:`prepare` did."""

    path: str  # the prepared zip
    images: int  # images written
    skipped: list  # "key (error)" of each image that failed to decode
    dropped: list  # "key (why)" of each image too small for the transform (as dataset_tool.py drops them)
    up_to_date: bool  # True: the zip already matched source and settings; nothing was written
    resolution: int  # side of the written images
    oversized: list = dataclasses.field(default_factory=list)  # "key (why)" of each image over the limits, not decoded
    # symlinks in the source folder pointing out of it ("name") or in a loop ("name (a symlink loop)"), not followed
    outside: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """What :func:`prepare` takes besides the name: ``diffaug-noise data prepare``'s options, flag for flag."""

    source: pathlib.Path = knob(None, "The downloaded dataset: an LSUN lmdb folder (holding data.mdb), a folder or zip "
                                      "of images, or cifar-10-python.tar.gz. Not needed for bundled datasets (digits). "
                                      "[required otherwise]", kind="exists")
    data_root: pathlib.Path = data_root_setting()
    out: pathlib.Path = knob(None, "Write the zip here instead of DATA_ROOT/NAME-RxR.zip.", kind="file")
    resolution: int = knob(None, "Side of the square output images (dataset_tool.py's --width). [default: the "
                                 "registry's; required for unregistered names]", kind=int, minimum=1)
    transform: str = knob(None, "How an image becomes square, with StyleGAN2-ADA dataset_tool.py's geometry; pad keeps "
                                "the whole image on black. [default: the registry's, else center-crop]", kind=str,
                          choices=TRANSFORMS)
    height: int = knob(None, "center-crop-wide's band height (dataset_tool's --height). [default: --resolution]",
                       kind=int, minimum=1)
    labels: str = knob(None, "Class labels (dataset.json, for conditional training) from the top-level subfolders of "
                             "an image source.", kind=str, choices=("folders",))
    max_images: int = knob(None, "Read only the first N images of the source, counting corrupt ones and those the "
                                 "transform drops, as dataset_tool.py's --max-images does. [default: the registry's, "
                                 "e.g. 200000 for lsun_bedroom]", kind=int, minimum=1)
    subset: int = knob(None, "Keep N images drawn at random with --seed (limited-data runs). [default: the registry's, "
                             "e.g. 2000 for ffhq_2k]", kind=int, minimum=1)
    seed: int = knob(0, "Seed of the --subset draw.", kind=int, minimum=0)
    max_image_bytes: int = knob(Limits.max_image_bytes, "Skip a source image whose declared size (zip header, file "
                                                        "size, lmdb value) is larger, unread.", kind=int, minimum=1)
    max_image_pixels: int = knob(Limits.max_image_pixels, "Skip a source image whose header declares more pixels "
                                                          "(width x height), undecoded: a decompression bomb cannot "
                                                          "exhaust memory.", kind=int, minimum=1)
    force: bool = knob(False, "Rebuild the zip even if it is up to date with the source and settings.", kind=bool)
    source_format: str = knob(None, "How to read --source. [default: the registered dataset's (data list shows it), "
                                    "else read from the path]", kind=str, choices=tuple(SOURCE_FORMATS))

    def __post_init__(self):
        try:
            check_knobs(self)
        except (TypeError, ValueError) as err:  # one kind of error for every bad input to prepare
            raise DatasetError(str(err)) from None


PrepareOptions = PrepareSettings  # the earlier name (CHANGELOG)


def prepare(
    name: str,  # a registered dataset name, or any name when a resolution is given
    source: str | os.PathLike | None = None,  # PrepareSettings.source
    on_progress: Callable[[int, int], None] | None = None,  # called with (source entries read, entries to read)
    **settings,  # the rest of PrepareSettings: data_root, out, resolution, transform, ... (one per CLI flag)
) -> PrepareReport:
    """Prepare ``source`` as dataset ``name``; see the module docstring for the layout and :class:`PrepareSettings`.

    Example:
        >>> import tempfile, PIL.Image
        >>> src = pathlib.Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     PIL.Image.new("RGB", (40, 30), (80 * i, 0, 0)).save(src / f"{i}.png")
        >>> report = prepare("tiny", src, out=src / "tiny.zip", resolution=16)
        >>> report.images, report.skipped, sorted(zipfile.ZipFile(report.path).namelist())[:2]
        (3, [], ['00000/img00000000.png', '00000/img00000001.png'])
    """
    known = {f.name for f in dataclasses.fields(PrepareSettings)}
    if set(settings) - known:
        raise DatasetError(f"unknown prepare setting(s) {sorted(set(settings) - known)}; known: "
                           f"{', '.join(sorted(known))}")
    o = PrepareSettings(source=source, **settings)
    out, resolution, transform, height, labels = o.out, o.resolution, o.transform, o.height, o.labels
    max_images, subset, seed, force, source_format = o.max_images, o.subset, o.seed, o.force, o.source_format
    limits = Limits(o.max_image_bytes, o.max_image_pixels)
    require("PIL.Image", "data")  # here, not in the per-image decode, where a failure reads as a corrupt image
    check_name(name)
    spec = DATASETS.get(name)
    if spec is None and resolution is None:
        raise DatasetError(f"{name!r} is not a registered dataset ({', '.join(DATASETS)}); "
                           f"for other data give the resolution (CLI: --resolution R)")
    resolution = resolution if resolution is not None else spec.resolution
    transform = transform or (spec.transform if spec is not None else "center-crop")
    if max_images is None and subset is None and spec is not None and spec.subset is None:
        max_images = spec.max_images  # the registry's first-N sets (LSUN 200k)
    height = resolution if height is None else height
    if transform != "center-crop-wide" and height != resolution:
        raise DatasetError("height only applies to --transform center-crop-wide (the others write squares)")
    subset = subset if subset is not None else (spec.subset if spec is not None else None)
    if max_images is not None and subset is not None:
        raise DatasetError("use either max_images (the first N images) or subset (N images drawn by seed), not both")
    out = pathlib.Path(out) if out is not None else data_root(o.data_root) / f"{name}-{resolution}x{resolution}.zip"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create {str(out.parent)!r}: {err.strerror}; pass a writable --data-root or "
                           "--out") from err

    if source is None:
        if spec is None or not spec.bundled:
            raise DatasetError(f"dataset {name!r} needs its downloaded source: pass --source PATH")
        reader = SOURCE_FORMATS[spec.source_format](None, limits)
        source_name = reader.source_name
    else:
        reader = open_source(source, limits, source_format or (spec.source_format if spec is not None else None))
        source_name = str(pathlib.Path(source).expanduser().resolve())
    manifest = {
        "format_version": FORMAT_VERSION, "name": name, "source": source_name,
        "source_format": reader.format, "source_signature": reader.signature(), "resolution": resolution,
        "max_images": max_images, "subset": subset, "seed": seed if subset is not None else None,
        **({"transform": transform, "height": height} if transform != "center-crop" else {}),
        **({"labels": labels} if labels is not None else {}),
        **({"limits": dataclasses.asdict(limits)} if limits != Limits() else {}),
    }
    with exclusive(out.with_name(out.name + ".lock"), what=f"data prepare of {out.name}"):
        existing = _read_manifest(out)
        remove_stale_temps(out)  # left by killed runs; no other writer can be at work while we hold the lock
        if existing is not None and existing.get("settings") == manifest and not force:
            return PrepareReport(str(out), existing["images"], existing["skipped"], existing.get("dropped", []), True,
                                 resolution, existing.get("oversized", []), getattr(reader, "outside", []))
        return _write(reader, out, manifest, source, resolution, transform, height, labels, max_images, subset, seed,
                      on_progress, limits)


def _write(reader, out, manifest, source, resolution, transform, height, labels, max_images, subset, seed, on_progress,
           limits) -> PrepareReport:
    """Write the zip (see :func:`prepare`, whose checks have passed and whose lock is held)."""
    label_of = _folder_labels(reader) if labels == "folders" else getattr(reader, "label", None)
    skipped: list[str] = []
    dropped: list[str] = []
    oversized: list[str] = []
    keys = None  # all, in source order
    if subset is not None:
        keys = _decodable_subset(reader, subset, seed, skipped, oversized, limits)
    entries = len(reader) if keys is None else len(keys)  # source entries to read
    if max_images is not None:
        entries = min(entries, max_images)
    count = 0

    def write(tmp):
        nonlocal count
        written = []  # [file name, label or None] of every image written
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for position, (key, raw) in enumerate(reader.items(keys)):
                if position == entries:
                    break
                if isinstance(raw, Oversized):
                    oversized.append(f"{key} ({raw.reason})")
                    continue
                try:
                    png = _to_png(raw, resolution, transform, height, limits)
                except ImageTooLarge as err:
                    oversized.append(f"{key} ({err})")
                    continue
                except Exception as err:  # any decoder failure means a corrupt image: reported, not fatal
                    skipped.append(f"{key} ({type(err).__name__})")
                    continue
                if png is None:
                    dropped.append(f"{key} (too small for {transform} {resolution}x{height})")
                    continue
                fname = f"{count // 1000:05d}/img{count:08d}.png"
                z.writestr(fname, png)
                written.append([fname, label_of(key) if label_of is not None else None])
                count += 1
                if on_progress is not None:
                    on_progress(position + 1, entries)
            if count == 0:
                raise DatasetError(f"no image in {str(source)!r} could be used ({len(skipped)} failed to decode, "
                                   f"{len(dropped)} too small for {transform} {resolution}x{height}, {len(oversized)} "
                                   f"over the size limits)")
            if all(label is not None for _, label in written):
                z.writestr("dataset.json", json.dumps({"labels": written}))
            z.writestr(MANIFEST, json.dumps({"settings": manifest, "images": count, "skipped": skipped,
                                             "dropped": dropped, "oversized": oversized}, indent=1))

    write_atomic(out, write)
    return PrepareReport(str(out), count, skipped, dropped, False, resolution, oversized,
                         getattr(reader, "outside", []))


def _folder_labels(reader):
    """``key -> class index`` from each image's top-level folder (classes in sorted folder order)."""
    if reader.format != "image_folder":
        raise DatasetError(f"labels from folders need a folder or zip of images; {reader.format} sources carry their "
                           "own")
    tops = {key: pathlib.PurePath(key).parts for key in reader.keys()}
    loose = [key for key, parts in tops.items() if len(parts) < 2]
    if loose:
        raise DatasetError(f"labels from folders: {loose[0]!r} (and {len(loose) - 1} more) is not inside a class "
                           "folder; put every image in a subfolder named after its class")
    classes = sorted({parts[0] for parts in tops.values()})
    return lambda key: classes.index(tops[key][0])


def _decodable_subset(reader, subset: int, seed: int, skipped: list, oversized: list, limits: Limits) -> list:
    """The first ``subset`` decodable keys of the ``seed`` permutation, in source order."""
    keys = reader.keys()
    if subset > len(keys):
        raise DatasetError(f"subset={subset} is larger than the source ({len(keys)} images)")
    position = {k: i for i, k in enumerate(keys)}
    chosen = []
    permuted = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    for key, (name, raw) in zip(permuted, reader.items(permuted)):
        if isinstance(raw, Oversized):
            oversized.append(f"{name} ({raw.reason})")
            continue
        try:
            decode(raw, limits)
        except ImageTooLarge as err:
            oversized.append(f"{name} ({err})")
            continue
        except Exception as err:  # corrupt: reported, and the next one of the permutation is taken
            skipped.append(f"{name} ({type(err).__name__})")
            continue
        chosen.append(key)
        if len(chosen) == subset:
            return sorted(chosen, key=position.__getitem__)
    raise DatasetError(f"only {len(chosen)} of the {subset} images asked for decode ({len(skipped)} corrupt)")


def _read_manifest(path: pathlib.Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as z:
            if z.getinfo(MANIFEST).file_size > MAX_MANIFEST_BYTES:  # declared size: a planted bomb is not inflated
                return None
            manifest = json.loads(z.read(MANIFEST))
    except Exception:  # not ours, damaged or hostile (zipfile and json raise many kinds): rebuild it
        return None
    lists = ("skipped", "dropped", "oversized")
    ours = (isinstance(manifest, dict) and isinstance(manifest.get("settings"), dict)
            and isinstance(manifest.get("images"), int) and not isinstance(manifest["images"], bool)
            and all(isinstance(manifest.get(key, []), list) for key in lists))
    return manifest if ours else None


def transform_image(image, resolution: int, transform: str = "center-crop", height: int | None = None):
    """A PIL RGB image made square by ``transform`` and resized (Lanczos) to ``resolution``; None if dropped."""
    Image = require("PIL.Image", "data")
    w, h = image.size
    if transform == "center-crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        return image if side == resolution else image.resize((resolution, resolution), Image.LANCZOS)
    if transform == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas if side == resolution else canvas.resize((resolution, resolution), Image.LANCZOS)
    height = resolution if height is None else height
    band = int(np.round(resolution * h / w))  # dataset_tool's center_crop_wide, to the pixel
    if w < resolution or band < height:
        return None
    image = image.crop((0, (h - band) // 2, w, (h + band) // 2)).resize((resolution, height), Image.LANCZOS)
    canvas = Image.new("RGB", (resolution, resolution))
    canvas.paste(image, (0, (resolution - height) // 2))
    return canvas


def _to_png(raw, resolution: int, transform: str = "center-crop", height: int | None = None,
            limits: Limits = Limits()) -> bytes | None:
    """Decode, RGB, :func:`transform_image`, encode as PNG; None if the transform drops the image."""
    image = transform_image(decode(raw, limits).convert("RGB"), resolution, transform, height)
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
