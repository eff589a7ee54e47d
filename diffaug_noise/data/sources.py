"""Readers of the raw formats datasets ship in, each yielding ``(key, encoded bytes or array)`` in a stable order.

- :class:`LsunLmdb`: the official LSUN export, an lmdb whose values are encoded images (webp).
- :class:`ImageFiles`: a folder (searched recursively) or a zip of image files, sorted by path.
- :class:`Cifar10Python`: the CIFAR-10 python batches (``cifar-10-python.tar.gz`` or its folder),
  read with an unpickler that admits only numpy arrays, not arbitrary code.
- :class:`SklearnDigits`: scikit-learn's bundled digits (no source path: the package holds them).

:data:`SOURCE_FORMATS` is their registry (a registered dataset's ``source_format`` picks its reader;
each is built as ``Reader(path, limits)``); :func:`open_source` picks one from what an unregistered
dataset's path holds. :class:`ImageDataset` reads a prepared zip or folder back as uint8
``[3, H, W]`` tensors (for evaluation).

Hostile or damaged sources (a shared data root may hold anything) are bounded by :class:`Limits`:
an entry whose *declared* size (a zip member's header, a file's size, an lmdb value's length)
exceeds ``max_image_bytes`` comes back as :class:`Oversized` without being read, and an image whose
header declares more than ``max_image_pixels`` pixels is refused before it is decoded
(:func:`decode`). A symlink inside a source folder that points out of it is not followed
(:attr:`ImageFiles.outside` lists it); a truncated lmdb is refused when opened, not met as a
SIGBUS when its missing pages are read.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import pathlib
import pickle
import re
import tarfile
import zipfile
from typing import Iterator

import numpy as np
import torch

from ..extras import require
from ..registry import Registry
from .errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff", ".gif")


@dataclasses.dataclass(frozen=True)
class Limits:
    """How large one source image may be; larger ones are skipped before they are read or decoded."""

    max_image_bytes: int = 256 * 2**20  # declared size of one encoded image (FFHQ's 1024 px PNGs are ~1.5 MB)
    max_image_pixels: int = 8192 * 8192  # width x height from the image header (a 12000 x 12000 PNG bomb is 144 M)

    def __post_init__(self):
        for name in ("max_image_bytes", "max_image_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DatasetError(f"{name} must be a positive int; got {value!r}")


class Oversized:
    """An entry left unread because its declared size exceeds the limit; ``reason`` says by how much."""

    def __init__(self, size: int, limit: int):
        self.reason = f"declares {size:,} bytes, over the {limit:,}-byte limit (--max-image-bytes)"


def decode(raw, limits: Limits = Limits()):
    """A fully decoded PIL image from encoded bytes or a uint8 array; refuses oversized headers before decoding.

    Raises :class:`ImageTooLarge` when the header declares more than ``limits.max_image_pixels``
    pixels, and the decoder's own error for a corrupt image (surfacing here, not at the first pixel).
    """
    Image = require("PIL.Image", "data")
    if isinstance(raw, Exception):  # the error of reading it (:func:`_member`)
        raise raw
    if isinstance(raw, np.ndarray):
        return Image.fromarray(raw)
    image = Image.open(io.BytesIO(raw))  # reads the header only
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise ImageTooLarge(f"{width}x{height} = {width * height:,} pixels, over the {limits.max_image_pixels:,}-pixel "
                            f"limit (--max-image-pixels)")
    image.load()
    return image


_PIL_FILE = re.compile(r"\s*<_io\.\w+ (?:name='(?P<name>[^']*)'|object at 0x[0-9a-f]+)>")


def decoder_error(err: Exception) -> str:
    """A decoder's error in words, without the file object PIL names (``<_io.BytesIO object at 0x...>``).

    Example:
        >>> decoder_error(OSError("cannot identify image file <_io.BufferedReader name='a/x.png'>"))
        'OSError: cannot identify image file'
    """
    text = _PIL_FILE.sub("", str(err)).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def unreadable_image(err: BaseException) -> str | None:
    """One line for PIL's ``UnidentifiedImageError`` that reached the top (e.g. from upstream's data loader), naming
    the file; None for any other error.

    Example:
        >>> class UnidentifiedImageError(OSError): ...
        >>> err = UnidentifiedImageError("cannot identify image file <_io.BufferedReader name='d/x.png'>")
        >>> unreadable_image(err).split(";")[0]
        "image 'd/x.png' cannot be read (not an image file PIL decodes: corrupt, truncated or another format)"
    """
    if type(err).__name__ != "UnidentifiedImageError":
        return None
    found = _PIL_FILE.search(str(err))
    name = repr(found.group("name")) if found and found.group("name") else "in the data"
    return (f"image {name} cannot be read (not an image file PIL decodes: corrupt, truncated or another format); "
            "remove or replace it, or prepare the folder with `diffaug-noise data prepare NAME --source FOLDER`, "
            "which skips and lists such images")


class ImageTooLarge(DatasetError):
    """An image whose header declares more pixels than the limit (a decompression bomb, or a huge scan)."""


class LsunLmdb:
    """An LSUN lmdb (a folder with ``data.mdb``, or the ``.mdb`` file); keys in lmdb order."""

    format = "lsun_lmdb"

    def __init__(self, path: pathlib.Path, limits: Limits = Limits()):
        lmdb = require("lmdb", "data")  # only needed for LSUN

        self.path, self.limits, self._error = path, limits, lmdb.Error
        try:
            self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir(),
                                 max_readers=8)
        except lmdb.Error as err:
            raise DatasetError(f"cannot open lmdb {str(path)!r}: {err}; pass the folder that holds data.mdb (a folder "
                               "or zip of images instead: --source-format image_folder)") from err
        # lmdb maps the file and trusts its meta page: pages past the end of a truncated file are only
        # found when read, as a SIGBUS that kills the process. The meta page says how many pages there are.
        data = path / "data.mdb" if path.is_dir() else path
        needed = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
        if data.stat().st_size < needed:
            self.env.close()
            raise DatasetError(f"lmdb {str(data)!r} is truncated: {data.stat().st_size:,} bytes where its own index "
                               f"needs {needed:,}; download or copy it again")

    def __len__(self) -> int:
        return self.env.stat()["entries"]

    def keys(self) -> list[bytes]:
        with self.env.begin() as txn:
            return list(txn.cursor().iternext(keys=True, values=False))

    def items(self, keys: list[bytes] | None = None) -> Iterator[tuple[str, bytes | Oversized]]:
        try:
            with self.env.begin(buffers=True) as txn:  # values as views of the map: sized before they are copied
                pairs = txn.cursor() if keys is None else ((key, txn.get(key)) for key in keys)
                for key, value in pairs:
                    key = bytes(key).decode(errors="replace")
                    if len(value) > self.limits.max_image_bytes:
                        yield key, Oversized(len(value), self.limits.max_image_bytes)
                    else:
                        yield key, bytes(value)
        except self._error as err:
            raise DatasetError(f"lmdb {str(self.path)!r} is damaged ({type(err).__name__}: {err}); download or copy it "
                               f"again") from err

    def signature(self) -> list:
        return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(_mdb_files(self.path))] + [len(self)]


def _mdb_files(path: pathlib.Path) -> list[pathlib.Path]:
    return list(path.glob("*.mdb")) if path.is_dir() else [path]


class ImageFiles:
    """Image files in a folder tree or a zip, in sorted path order.

    In a folder, a symlink (to a file or a folder) whose target lies outside the folder is not
    followed: a source is what is inside it. Symlink loops end (a folder read once, a looping file
    link skipped). Those left out are listed in :attr:`outside`, loops as ``"name (a symlink loop)"``.
    """

    format = "image_folder"

    def __init__(self, path: pathlib.Path, limits: Limits = Limits()):
        self.path, self.limits, self.outside = path, limits, []
        if path.is_dir():
            self.names = sorted(self._folder_names(path))
        else:
            try:
                with zipfile.ZipFile(path) as z:
                    self.names = sorted(n for n in z.namelist()
                                        if pathlib.PurePath(n).suffix.lower() in IMAGE_SUFFIXES)
            except (zipfile.BadZipFile, ValueError, NotImplementedError) as err:  # not a zip, or a damaged one
                raise DatasetError(f"{str(path)!r} is neither a folder nor a readable zip of images ({err}); pass a "
                                   "folder or a zip of images (one image is not a set)") from None
        if not self.names:
            raise DatasetError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(path)!r}")

    def _folder_names(self, root: pathlib.Path) -> list[str]:
        real_root, names, visited = root.resolve(), [], set()
        for folder, subfolders, files in os.walk(root, followlinks=True):
            folder = pathlib.Path(folder)
            real = folder.resolve()
            if not real.is_relative_to(real_root):  # reached through a symlinked folder
                self.outside.append(str(folder.relative_to(root)))
                subfolders.clear()
                continue
            if real in visited:  # a symlink back to a folder already read (a loop)
                subfolders.clear()
                continue
            visited.add(real)
            for name in files:
                file = folder / name
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    target = file.resolve()
                except (RuntimeError, OSError) as err:  # RuntimeError before Python 3.13, OSError(ELOOP) since
                    if isinstance(err, OSError) and err.errno != errno.ELOOP:
                        raise
                    self.outside.append(f"{file.relative_to(root)} (a symlink loop)")
                    continue
                if not target.is_relative_to(real_root):
                    self.outside.append(str(file.relative_to(root)))
                elif file.is_file():
                    names.append(str(file.relative_to(root)))
        return names

    def __len__(self) -> int:
        return len(self.names)

    def keys(self) -> list[str]:
        return list(self.names)

    def items(self, keys: list[str] | None = None) -> Iterator[tuple[str, bytes | Oversized]]:
        keys = self.names if keys is None else keys
        limit = self.limits.max_image_bytes
        if self.path.is_dir():
            for name in keys:
                size = (self.path / name).stat().st_size
                yield name, Oversized(size, limit) if size > limit else (self.path / name).read_bytes()
        else:
            with zipfile.ZipFile(self.path) as z:
                for name in keys:
                    size = z.getinfo(name).file_size  # the member's declared size: a zip bomb is not inflated
                    yield name, Oversized(size, limit) if size > limit else _member(z, name)

    def signature(self) -> list:
        """Each image's name, size and modification time (a folder) or CRC-32 (a zip): any edit changes it."""
        if self.path.is_dir():
            stats = [(n, (self.path / n).stat()) for n in self.names]
            return [[n, st.st_size, st.st_mtime_ns] for n, st in stats]
        with zipfile.ZipFile(self.path) as z:
            return [[n, z.getinfo(n).file_size, z.getinfo(n).CRC] for n in self.names]


def _member(z: zipfile.ZipFile, name: str) -> bytes | Exception:
    """A zip member's bytes, or the error of reading it (encrypted, an unknown compression, a bad CRC), which
    :func:`decode` raises: a corrupt image, skipped or named like one that does not decode."""
    try:
        return z.read(name)
    except Exception as err:  # a damaged or hostile zip: zipfile raises RuntimeError, NotImplementedError, zlib.error
        return err


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DatasetError(f"CIFAR-10 batch refers to {module}.{name}, which a CIFAR-10 batch never does; "
                           f"is it the real cifar-10-python archive?")


class LabelledArrays:
    """A source held in memory: ``images`` (uint8 ``[N, H, W, 3]``) and ``labels``, keyed by index."""

    images: np.ndarray
    labels: list

    def __len__(self) -> int:
        return len(self.images)

    def keys(self) -> list[int]:
        return list(range(len(self.images)))

    def items(self, keys: list[int] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        for i in (self.keys() if keys is None else keys):
            yield f"{i:05d}", self.images[i]

    def label(self, key: str) -> int:
        return self.labels[int(key)]


CIFAR10_SOURCE = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (the .tar.gz itself or its unpacked "
                  "folder)")


class Cifar10Python(LabelledArrays):
    """CIFAR-10's five training batches (50,000 32x32 images with labels 0-9)."""

    format = "cifar10_python"
    BATCHES = [f"data_batch_{i}" for i in range(1, 6)]

    def __init__(self, path: pathlib.Path, limits: Limits = Limits()):
        self.path = path
        images, labels = [], []
        for raw in self._batches():
            batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(int(v) for v in batch[b"labels"])
        self.images, self.labels = np.concatenate(images), labels

    def _batches(self) -> list[bytes]:
        if self.path.is_dir():
            found = {p.name: p for p in self.path.rglob("data_batch_*")}
            missing = [b for b in self.BATCHES if b not in found]
            if missing:
                raise DatasetError(self._missing(missing))
            return [found[b].read_bytes() for b in self.BATCHES]
        with tarfile.open(self.path) as tar:
            members = {pathlib.PurePath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [b for b in self.BATCHES if b not in members]
            if missing:
                raise DatasetError(self._missing(missing))
            return [tar.extractfile(members[b]).read() for b in self.BATCHES]

    def _missing(self, batches: list) -> str:
        return (f"{str(self.path)!r} lacks CIFAR-10 batches {batches}; they come from {CIFAR10_SOURCE}: pass that "
                f"with --source")

    def signature(self) -> list:
        files = [self.path] if self.path.is_file() else sorted(self.path.rglob("*_batch*"))
        return [len(self.images)] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


class SklearnDigits(LabelledArrays):
    """scikit-learn's bundled digits (1,797 8x8 images with labels 0-9) as RGB uint8 arrays; no download."""

    format = "sklearn_digits"
    bundled = True  # the installed package holds the source: `data prepare digits` needs no --source
    source_name = "sklearn.datasets.load_digits"

    def __init__(self, path=None, limits: Limits = Limits()):
        from .digits import load_digits, to_uint8

        if path is not None:
            raise DatasetError(f"the digits come with scikit-learn; prepare them without --source (got {str(path)!r})")
        images, labels = load_digits()
        self.images = to_uint8(images).squeeze(1).unsqueeze(-1).expand(-1, -1, -1, 3).numpy()
        self.labels = labels.tolist()

    def signature(self) -> list:
        return [len(self.images), hashlib.sha256(np.ascontiguousarray(self.images).tobytes()).hexdigest()]


SOURCE_FORMATS = Registry("source format", DatasetError)  # DatasetSpec.source_format -> its reader
for _reader in (LsunLmdb, ImageFiles, Cifar10Python, SklearnDigits):
    SOURCE_FORMATS.register(_reader.format, _reader)


def open_source(path: str | os.PathLike, limits: Limits = Limits(), source_format: str | None = None):
    """The reader for ``path``: the ``source_format``'s, else lmdb if it holds ``*.mdb``, CIFAR-10 batches, else image
    files."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"source {str(path)!r} does not exist; pass the downloaded dataset with --source")
    if source_format is not None:
        return SOURCE_FORMATS[source_format](path, limits)
    if path.suffix == ".mdb" or (path.is_dir() and any(path.glob("*.mdb"))):
        return LsunLmdb(path, limits)
    if (path.is_dir() and any(path.rglob("data_batch_1"))) or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return Cifar10Python(path, limits)
    if path.is_dir() or zipfile.is_zipfile(path):
        return ImageFiles(path, limits)
    raise DatasetError(f"cannot read {str(path)!r}: expected an LSUN lmdb folder, a folder or zip of images, "
                       f"or cifar-10-python.tar.gz")


class ImageDataset(torch.utils.data.Dataset):
    """A prepared zip or an image folder as uint8 ``[3, H, W]`` tensors, in sorted file order.

    Example:
        >>> import tempfile, PIL.Image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> PIL.Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "a.png")
        >>> ImageDataset(folder)[0][:, 0, 0].tolist()
        [255, 0, 0]
    """

    def __init__(self, path: str | os.PathLike, limits: Limits = Limits()):
        self.files = ImageFiles(pathlib.Path(path), limits)
        self._zip = None
        self._size = None  # (width, height) of the first image: every image must have it (they are batched)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self._image(i)
        if self._size is None:
            self._size = image.size if i == 0 else self._image(0).size
        if image.size != self._size:
            raise DatasetError(f"image {self.files.names[i]!r} in {str(self.files.path)!r} is {image.width}x"
                               f"{image.height}, but {self.files.names[0]!r} is {self._size[0]}x{self._size[1]}; the "
                               "images of a set must have one size: resize them (data prepare does)")
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def _image(self, i: int):
        """Image ``i`` decoded as RGB, or a :class:`DatasetError` naming it."""
        name = self.files.names[i]
        if self.files.path.is_dir():
            raw = next(self.files.items([name]))[1]
        else:
            if self._zip is None:  # opened lazily, per worker process
                self._zip = zipfile.ZipFile(self.files.path)
            size, limit = self._zip.getinfo(name).file_size, self.files.limits.max_image_bytes
            raw = Oversized(size, limit) if size > limit else _member(self._zip, name)
        where = f"{name!r} in {str(self.files.path)!r}"
        if isinstance(raw, Oversized):
            raise DatasetError(f"image {where} {raw.reason}; remove it, or raise the limit")
        try:
            return decode(raw, self.files.limits).convert("RGB")
        except ImageTooLarge as err:
            raise DatasetError(f"image {where} is {err}; remove it, or raise the limit") from None
        except Exception as err:  # any decoder failure: name the file, not the decoder's internals
            raise DatasetError(f"image {where} cannot be read ({decoder_error(err)}); remove or replace it") from None

    def __getstate__(self):
        return {**self.__dict__, "_zip": None}
