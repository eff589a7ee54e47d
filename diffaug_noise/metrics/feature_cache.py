"""The real set's features, cached as ``.npz`` under a data root others may write to, and checked before use.

A cache file is ``format`` (an int64), ``digest`` (32 bytes) and one ``layer_<name>`` array of
features per layer, ``[rows, width]`` float32 or float64. Nothing in it runs code (pickling is
refused), and it is used only when all of this holds, checked in this order:

1. every member's ``.npy`` header declares what this evaluation expects (a float32/float64 array of
   ``rows x width``, the width of the fake features just computed) before any data is read, so a
   header declaring a terabyte allocates nothing;
2. ``format`` is this version's and the values are finite;
3. ``digest``, a SHA-256 of the file's own name (which holds the real set's content key, the
   extractor, the count and the seed) and of every array, matches: a damaged file, an edited one,
   or another set's cache renamed to this name fails here;
4. a spot check: :data:`SPOT_CHECK_ROWS` rows drawn afresh from the operating system's random
   source each time are computed now and must equal the cached ones (within 1 %, as a cache
   written on a GPU with TF32 differs from one on a CPU).

A file that fails any of these is rebuilt, with one warning line naming it and why.

Threat model: the data root is a shared folder; anyone who can write there can plant a file under
the cache's name, and can compute the name and the digest (they can read the data and this code).
The digest alone therefore stops accidents (damage, a copy of another set's cache), not a forger.
The spot check stops the forger too: rows they changed are caught unless none of the checked rows
is among them, a chance of ``(1 - share changed) ** 8`` (10 % of the rows changed: 43 % to pass
unseen, but then the score moves little; half of them: 0.4 %). A key kept only by the user (an
HMAC secret in ``$HOME``) would stop every forgery, but it would write outside the data root and
make each user's cache unreadable to the others, which is what a shared cache is for.

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "real-0-pool.npz"
    >>> features = {"pool": torch.arange(12.0).view(4, 3)}
    >>> write_cache(path, features)
    >>> read_cache(path, {"pool": (4, 3)}, lambda rows: {"pool": features["pool"][rows]})["pool"].shape
    torch.Size([4, 3])
"""
from __future__ import annotations

import hashlib
import math
import pathlib
import random
import warnings
import zipfile
from typing import Callable

import numpy as np
import torch

from ..checkpoint import StorageError, storage_error, write_atomic

CACHE_FORMAT = 3  # 3: with a digest, checked before use (2: without; 1: torch-fidelity's unpickled .pt files)
SPOT_CHECK_ROWS = 8  # rows recomputed to check a cache's contents
SPOT_CHECK_TOLERANCE = 1e-2  # |cached row - row now| <= this share of |row now|
FLOATS = (np.dtype("<f4"), np.dtype("<f8"))
MAX_OVERHEAD = 64 * 1024  # bytes of a cache besides its float64 features: .npy headers, the zip's records


class _Refused(Exception):
    """Why a cache file is not used (the warning's text)."""


def read_cache(path: pathlib.Path | None, shapes: dict, recompute: Callable[[list], dict]) -> dict | None:
    """The cached features ``{layer: tensor}`` if the file at ``path`` passes every check (see the module docstring).

    ``shapes`` maps each layer to the shape its features must have; ``recompute(rows)`` computes
    the features of those rows now, for the spot check. A missing file, or ``path`` None, gives
    None silently; a file that fails gives None and one warning.
    """
    if path is None or not path.exists():
        return None
    try:
        if not path.is_file():  # a FIFO would block the read for ever
            raise _Refused("is not a regular file")
        return _checked(path, shapes, recompute)
    except _Refused as why:
        warnings.warn(f"feature cache {str(path)!r} {why}; computing the features afresh and replacing it",
                      stacklevel=3)
        return None


def _checked(path: pathlib.Path, shapes: dict, recompute) -> dict:
    expected = {"digest": ((32,), (np.dtype("u1"),)),
                **{f"layer_{layer}": (tuple(shape), FLOATS) for layer, shape in shapes.items()}}
    largest = sum(8 * math.prod(shape) for shape in shapes.values()) + MAX_OVERHEAD
    if path.stat().st_size > largest:  # before the zip's directory is parsed: a million planted members take memory
        raise _Refused(f"is {path.stat().st_size:,} bytes, more than a cache of these features can be ({largest:,})")
    try:
        with zipfile.ZipFile(path) as z:
            _check_header(z, "format", (), (np.dtype("<i8"),))
            version = int(_read(z, "format"))
            if version != CACHE_FORMAT:
                raise _Refused(f"was written by another version (format {version}, this one reads {CACHE_FORMAT})")
            for name, (shape, dtypes) in expected.items():
                _check_header(z, name, shape, dtypes)
            arrays = {name: _read(z, name) for name in expected}
    except _Refused:
        raise
    except Exception as err:  # a stranger's file: BadZipFile, zlib.error, encrypted or unknown compression, EOF...
        detail = str(err).splitlines()[0] if str(err) else "no detail"
        raise _Refused(f"is not a readable cache ({type(err).__name__}: {detail})") from None
    features = {layer: arrays[f"layer_{layer}"] for layer in shapes}
    if not all(np.isfinite(v).all() for v in features.values()):
        raise _Refused("holds NaN or inf")
    if arrays["digest"].tobytes() != _digest(path.name, features):
        raise _Refused("does not match its digest (damaged, edited, or another set's cache under this name)")
    features = {layer: torch.from_numpy(v.copy()) for layer, v in features.items()}
    count = next(iter(features.values())).shape[0]
    rows = sorted(random.SystemRandom().sample(range(count), min(SPOT_CHECK_ROWS, count)))  # unpredictable to a forger
    now = recompute(rows)
    for layer, cached in features.items():
        fresh = now[layer].to(cached.dtype).flatten(1)
        gap = (cached[rows].flatten(1) - fresh).norm(dim=1)
        if not bool((gap <= SPOT_CHECK_TOLERANCE * fresh.norm(dim=1) + 1e-6 * math.sqrt(fresh.shape[1])).all()):
            raise _Refused(f"holds features of rows {rows} that do not match the features computed now (another "
                           "set's, or edited with a recomputed digest)")
    return features


def _check_header(z: zipfile.ZipFile, name: str, shape: tuple, dtypes: tuple) -> None:
    """Refuse member ``name`` unless its ``.npy`` header declares ``shape`` and one of ``dtypes``; reads the header
    only."""
    try:
        info = z.getinfo(f"{name}.npy")
    except KeyError:
        raise _Refused(f"lacks {name}") from None
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise _Refused(f"holds {name} in .npy version {version}, which this program does not write")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            declared, fortran_order, dtype = read_header(f)
        except _Refused:
            raise
        except Exception as err:  # numpy parses the header's text: ValueError, SyntaxError, tokenize's TokenError
            raise _Refused(f"has an unreadable .npy header for {name} ({type(err).__name__})") from None
    if declared != shape or dtype not in dtypes or fortran_order:
        allowed = " or ".join(str(d) for d in dtypes)
        raise _Refused(f"declares {name} as {dtype} {declared} where {allowed} {shape} is expected")


def _read(z: zipfile.ZipFile, name: str) -> np.ndarray:
    with z.open(f"{name}.npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _digest(name: str, features: dict) -> bytes:
    """SHA-256 of the file name and of each layer's name, dtype, shape and values."""
    digest = hashlib.sha256(name.encode())
    for layer in sorted(features):
        value = np.ascontiguousarray(features[layer])
        digest.update(f"\n{layer}:{value.dtype.str}:{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.digest()


def write_cache(path: pathlib.Path | None, features: dict) -> None:
    """Cache ``features`` ``{layer: tensor}`` at ``path``; a data root that cannot be written is a warning, not a
    failure."""
    if path is None:
        return
    arrays = {layer: v.numpy() for layer, v in features.items()}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, format=np.int64(CACHE_FORMAT),
                     digest=np.frombuffer(_digest(path.name, arrays), dtype=np.uint8),
                     **{f"layer_{k}": v for k, v in arrays.items()})
    try:
        write_atomic(path, write)
    except OSError as err:  # a read-only or full data root: the score is the same, only not cached
        message = str(err) if isinstance(err, StorageError) else str(storage_error(err, path))
        warnings.warn(f"{message}; the real features are not cached (--no-cache does not try)", stacklevel=2)
