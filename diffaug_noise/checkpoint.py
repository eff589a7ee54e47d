"""Checkpoints that survive a crash and load without running foreign code.

Writing goes to a temporary file beside the target, is flushed to disk, then renamed over the
target: a reader sees the old checkpoint or the new one, never half of one, even after SIGKILL
or a power cut mid-write.

Reading uses ``torch.load(weights_only=True)``, which accepts tensors, numbers, strings and
containers of them and refuses anything that would import and call code. Pickles written by
other training code (a StyleGAN2-ADA ``network-snapshot-*.pkl`` holds whole module objects) need
``trust_pickle=True``: unpickling them runs whatever code they name, so only do it for files
you made or trust.

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.pt"
    >>> save_checkpoint({"step": 3, "w": torch.ones(2)}, path)
    >>> load_checkpoint(path)["step"]
    3
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import pathlib
import pickle
import tempfile
import warnings
import zipfile

import torch


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (0666 minus umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated, unsafe to load or from other settings."""


class StorageError(OSError):
    """Writing failed for a reason of the machine (disk full, read-only, permissions); the message names the path and
    the fix."""


_FIXES = {
    errno.ENOSPC: "the disk is full: free some space there, or write elsewhere",
    errno.EDQUOT: "your disk quota is used up: free some space, or write elsewhere",
    errno.EROFS: "that file system is read-only: write to a writable folder",
    errno.EACCES: "you may not write there: choose a folder you own, or fix its permissions",
    errno.EPERM: "you may not write there: choose a folder you own, or fix its permissions",
}


def storage_error(err: OSError, path) -> StorageError:
    """The one-line :class:`StorageError` for ``err``, raised while writing ``path``."""
    name = errno.errorcode.get(err.errno, "error")
    fix = _FIXES.get(err.errno, "check that the folder exists and is writable")
    return StorageError(err.errno, f"cannot write {str(path)!r}: {err.strerror or err} ({name}); {fix}")


def _is_write_failure(err: OSError, *paths) -> bool:
    """An error of writing one of ``paths`` (or of an open file, which has no name), not of reading another file."""
    return err.filename is None or str(err.filename) in {str(p) for p in paths}


def write_atomic(path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, flush it to disk, rename it into place.

    The file gets the mode a plain ``open()`` would give it; on any error the target is untouched
    and the temporary file removed. A failure to write (disk full, read-only, permissions) raises
    :class:`StorageError` naming ``path`` and the fix.
    """
    path = pathlib.Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise storage_error(err, path) from None
    os.close(fd)
    try:
        os.chmod(tmp, default_file_mode())  # mkstemp's 0600 would make the output private
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if isinstance(err, StorageError) or not _is_write_failure(err, tmp, path):
            raise
        raise storage_error(err, path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(path) -> list:
    """Remove the temporary files of :func:`write_atomic` that killed writers of ``path`` left; returns them.

    Only for a caller that knows no other writer of ``path`` is at work (it holds a lock, or owns the folder).
    A folder of that name is not ours (temporary files are files) and is left alone.
    """
    path = pathlib.Path(path)
    stale = sorted(p for p in path.parent.glob(f".{glob_escape(path.name)}.*.tmp") if not _is_real_folder(p))
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a link is removed, never followed
    return stale


def _is_real_folder(path: pathlib.Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters quoted."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def save_checkpoint(state, path) -> None:
    """Write ``state`` with ``torch.save`` atomically (see :func:`write_atomic`)."""
    buffer = io.BytesIO()  # serialised first: written to a full disk, torch's own writer fails with an
    torch.save(state, buffer)  # "inline_container.cc ... unexpected pos" RuntimeError instead of an OSError

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
    write_atomic(path, write)


def load_checkpoint(path, trust_pickle: bool = False, map_location="cpu"):
    """Load a checkpoint safely; raise :class:`CheckpointError` with the reason and the fix.

    Args:
        path: file written by :func:`save_checkpoint` or ``torch.save``/``pickle``.
        trust_pickle: allow arbitrary pickled objects (this executes code named in the file).
        map_location: where tensors go, as in ``torch.load``.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would block the read for ever
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file; remove it, or check the path")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path or start without resuming")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (a crash during a non-atomic write?); delete it")
    try:
        if trust_pickle:
            return _load_trusted(path, map_location)
        with warnings.catch_warnings():  # plain pickles warn about their protocol before failing below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        with open(path, "rb") as f:
            plain_pickle = f.read(1) == b"\x80"  # protocol >= 2 opcode: pickle.dump, not torch.save's zip
        if "global" in str(err).lower() or plain_pickle:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds pickled Python objects, and unpickling them runs code named in the "
                f"file; only if you trust where it came from, pass trust_pickle=True (CLI: --trust-pickle)") from err
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt (not a checkpoint or pickle); delete it or restore "
                              "a copy") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, pickle.UnpicklingError) as err:
        detail = str(err).splitlines()[0] if str(err) else "no detail"
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated ({type(err).__name__}: {detail}); "
                              f"delete it or restore a copy") from err


def _load_trusted(path: pathlib.Path, map_location):
    """``torch.load`` without restrictions, or ``pickle.load`` for plain pickles (upstream snapshots)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except RuntimeError as err:
        if "magic number" not in str(err):
            raise
    with open(path, "rb") as f:
        return pickle.load(f)


def load_training_state(path, config: dict, keys, map_location="cpu") -> dict:
    """A training loop's checkpoint, checked to hold ``keys`` and to come from a run with ``config``.

    Raises :class:`CheckpointError` naming each setting that differs (``sigma: checkpoint 2.0 vs
    now 1.5``) or what is missing; ``config`` is compared as JSON would store it (tuples as lists).
    """
    saved = load_checkpoint(path, map_location=map_location)
    missing = sorted((set(keys) | {"config"}) - set(saved)) if isinstance(saved, dict) else ["everything"]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is not this command's training state (it lacks "
                              f"{', '.join(missing)}); delete it, or use another output folder")
    mine = json_safe(config)
    if not isinstance(saved["config"], dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no settings; delete it, or use another output folder")
    diff = sorted(k for k in set(saved["config"]) | set(mine) if saved["config"].get(k) != mine.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved['config'].get(k)!r} vs now {mine.get(k)!r}" for k in diff)
        raise CheckpointError(f"checkpoint {str(path)!r} was written with other settings ({details}); "
                              f"rerun with the checkpoint's settings, or use another output folder to start afresh")
    return saved


@contextlib.contextmanager
def restoring(path):
    """Turn any error of putting a checkpoint's values into a run's objects into one :class:`CheckpointError`.

    A checkpoint that loads safely can still be the wrong shape (an edited or foreign file): its
    values then fail in ``load_state_dict``, in a generator's ``set_state`` or by a missing key.
    """
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit this run ({type(err).__name__}: {detail}); "
                              f"delete it, or use another output folder to start afresh") from err


def json_safe(config: dict) -> dict:
    """Tuples as lists, so a config compares equal after a round trip through a checkpoint or JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def pairs(mine: list, saved) -> list:
    """``zip(mine, saved)`` of equal lengths, or ``ValueError`` (inside :func:`restoring`: a checkpoint of another
    run)."""
    if not isinstance(saved, (list, tuple)) or len(saved) != len(mine):
        raise ValueError(f"expected {len(mine)} saved entries, found "
                         f"{len(saved) if isinstance(saved, (list, tuple)) else saved!r}")
    return list(zip(mine, saved))
