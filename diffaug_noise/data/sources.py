"""Readers of the raw formats datasets ship in, each yielding ``(key, encoded bytes or array)`` in a stable order.

- :class:`LsunLmdb`: the official LSUN export, an lmdb whose values are encoded images (webp).
- :class:`ImageFiles`: a folder (searched recursively) or a zip of image files, sorted by path.
- :class:`Cifar10Python`: the CIFAR-10 python batches (``cifar-10-python.tar.gz`` or its folder),
  read with an unpickler that admits only numpy arrays, not arbitrary code.
- :class:`SklearnDigits`: scikit-learn's bundled digits (no source path: the package holds them).

:func:`open_source` picks the reader from what the path holds. :class:`ImageDataset` reads a
prepared zip or folder back as uint8 ``[3, H, W]`` tensors (for evaluation).
"""
from __future__ import annotations

import io
import os
import pathlib
import pickle
import tarfile
import zipfile
from typing import Iterator

import numpy as np
import torch

from ..extras import require
from .registry import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff", ".gif")


class LsunLmdb:
    """An LSUN lmdb (a folder with ``data.mdb``, or the ``.mdb`` file); keys in lmdb order."""

    format = "lsun_lmdb"

    def __init__(self, path: pathlib.Path):
        lmdb = require("lmdb", "data")  # only needed for LSUN

        self.path = path
        try:
            self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir(), max_readers=8)
        except lmdb.Error as err:
            raise DatasetError(f"cannot open lmdb {str(path)!r}: {err}; pass the folder that holds data.mdb") from err

    def __len__(self) -> int:
        return self.env.stat()["entries"]

    def keys(self) -> list[bytes]:
        with self.env.begin() as txn:
            return list(txn.cursor().iternext(keys=True, values=False))

    def items(self, keys: list[bytes] | None = None) -> Iterator[tuple[str, bytes]]:
        with self.env.begin() as txn:
            if keys is None:
                for key, value in txn.cursor():
                    yield key.decode(errors="replace"), bytes(value)
            else:
                for key in keys:
                    yield key.decode(errors="replace"), bytes(txn.get(key))

    def signature(self) -> list:
        return [os.stat(f).st_size for f in sorted(_mdb_files(self.path))] + [len(self)]


def _mdb_files(path: pathlib.Path) -> list[pathlib.Path]:
    return list(path.glob("*.mdb")) if path.is_dir() else [path]


class ImageFiles:
    """Image files in a folder tree or a zip, in sorted path order."""

    format = "image_folder"

    def __init__(self, path: pathlib.Path):
        self.path = path
        if path.is_dir():
            self.names = sorted(str(p.relative_to(path)) for p in path.rglob("*")
                                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            with zipfile.ZipFile(path) as z:
                self.names = sorted(n for n in z.namelist() if pathlib.PurePath(n).suffix.lower() in IMAGE_SUFFIXES)
        if not self.names:
            raise DatasetError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(path)!r}")

    def __len__(self) -> int:
        return len(self.names)

    def keys(self) -> list[str]:
        return list(self.names)

    def items(self, keys: list[str] | None = None) -> Iterator[tuple[str, bytes]]:
        keys = self.names if keys is None else keys
        if self.path.is_dir():
            for name in keys:
                yield name, (self.path / name).read_bytes()
        else:
            with zipfile.ZipFile(self.path) as z:
                for name in keys:
                    yield name, z.read(name)

    def signature(self) -> list:
        if self.path.is_dir():
            return [len(self.names), sum((self.path / n).stat().st_size for n in self.names)]
        return [len(self.names), self.path.stat().st_size]


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


class Cifar10Python(LabelledArrays):
    """CIFAR-10's five training batches (50,000 32x32 images with labels 0-9)."""

    format = "cifar10_python"
    BATCHES = [f"data_batch_{i}" for i in range(1, 6)]

    def __init__(self, path: pathlib.Path):
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
                raise DatasetError(f"{str(self.path)!r} lacks CIFAR-10 batches {missing}")
            return [found[b].read_bytes() for b in self.BATCHES]
        with tarfile.open(self.path) as tar:
            members = {pathlib.PurePath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [b for b in self.BATCHES if b not in members]
            if missing:
                raise DatasetError(f"{str(self.path)!r} lacks CIFAR-10 batches {missing}")
            return [tar.extractfile(members[b]).read() for b in self.BATCHES]

    def signature(self) -> list:
        return [len(self.images), self.path.stat().st_size if self.path.is_file() else 0]


class SklearnDigits(LabelledArrays):
    """scikit-learn's bundled digits (1,797 8x8 images with labels 0-9) as RGB uint8 arrays; no download."""

    format = "sklearn_digits"

    def __init__(self):
        from .digits import load_digits, to_uint8

        images, labels = load_digits()
        self.images = to_uint8(images).squeeze(1).unsqueeze(-1).expand(-1, -1, -1, 3).numpy()
        self.labels = labels.tolist()

    def signature(self) -> list:
        return [len(self.images), int(self.images.sum())]


def open_source(path: str | os.PathLike):
    """The reader for ``path``: lmdb if it holds ``*.mdb``, CIFAR-10 batches, else image files."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"source {str(path)!r} does not exist; pass the downloaded dataset with --source")
    if path.suffix == ".mdb" or (path.is_dir() and any(path.glob("*.mdb"))):
        return LsunLmdb(path)
    if (path.is_dir() and any(path.rglob("data_batch_1"))) or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return Cifar10Python(path)
    if path.is_dir() or zipfile.is_zipfile(path):
        return ImageFiles(path)
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

    def __init__(self, path: str | os.PathLike):
        self.files = ImageFiles(pathlib.Path(path))
        self._zip = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        Image = require("PIL.Image", "data")
        name = self.files.names[i]
        if self.files.path.is_dir():
            raw = (self.files.path / name).read_bytes()
        else:
            if self._zip is None:  # opened lazily, per worker process
                self._zip = zipfile.ZipFile(self.files.path)
            raw = self._zip.read(name)
        image = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
        return torch.from_numpy(image.copy()).permute(2, 0, 1)

    def __getstate__(self):
        return {**self.__dict__, "_zip": None}
