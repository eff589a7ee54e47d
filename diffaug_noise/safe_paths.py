"""Writing under a folder other people can write to, never through a link someone planted there.

A shared data root (a lab file system) may hold anything a stranger put there, among it a
symbolic link named like a file or folder we are about to write: ``ROOT/set.zip.lock -> ~/thesis.tex``
would have the lock truncate the thesis. So:

- a file opened for writing in place (the prepare lock) goes through :func:`open_for_writing`:
  ``O_NOFOLLOW`` refuses a link there, dangling or not, and only a regular file with no other
  hard link is accepted;
- files that are replaced (zips, caches, checkpoints, plots) are written to a fresh temporary file
  (``O_EXCL``) and renamed over the name (:func:`~diffaug_noise.checkpoint.write_atomic`): the
  rename replaces a link, it never writes through one;
- a folder created or written into below a root (``fidelity-cache``, a run's ``samples``) comes
  from :func:`folder_under`, which refuses a link, or anything but a folder, at it or between it and
  the root.

The refusal is a :class:`~diffaug_noise.checkpoint.StorageError` (``ELOOP``) in one line naming the
path. What this does not stop: someone who can rename entries of the root can still swap a folder
for a link between our check and our write (a race of microseconds; a root with the sticky bit,
as ``/tmp`` has, forbids renaming other people's entries). The root itself is the user's choice
and may be a link.

Example:
    >>> import tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> folder_under(root, root / "cache" / "features").is_dir()
    True
    >>> (root / "elsewhere").symlink_to(tempfile.mkdtemp())
    >>> folder_under(root, root / "elsewhere")
    Traceback (most recent call last):
    ...
    diffaug_noise.checkpoint.StorageError: [Errno 40] refusing to write through '...elsewhere': ...
"""
from __future__ import annotations

import errno
import os
import pathlib
import stat

from .checkpoint import StorageError, storage_error


def link_refused(path) -> StorageError:
    """The one-line error for a link found where we were about to write."""
    return StorageError(errno.ELOOP, f"refusing to write through {str(path)!r}: it is a symbolic link (in a shared "
                                     "folder, anyone may have planted it); remove it, or use another folder")


def _planted(path, found: str) -> StorageError:
    return StorageError(errno.EEXIST, f"refusing to write {str(path)!r}: {found} is there (not something this "
                                      "program writes); remove it, or use another folder")


def open_for_writing(path, flags: int = os.O_RDWR | os.O_CREAT, mode: int = 0o666) -> int:
    """``os.open(path, flags)`` that never follows a link at ``path`` and opens a regular file only; returns the fd.

    A link (also a dangling one), a folder, a FIFO or a device there is refused, and so is a file
    with other hard links (writing would change it under its other names too).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: what some BSDs give for O_NOFOLLOW on a link
            raise link_refused(path) from None
        if err.errno == errno.EISDIR:
            raise _planted(path, "a folder") from None
        raise storage_error(err, path) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise _planted(path, "a file with other hard links" if stat.S_ISREG(info.st_mode) else "a special file")
    return fd


def folder_under(root, folder) -> pathlib.Path:
    """Create ``folder`` (inside ``root``) and the folders between, refusing a link or a non-folder on the way.

    ``root`` is made if missing (it may itself be a link: the user named it). Returns ``folder``.
    """
    root, folder = pathlib.Path(root), pathlib.Path(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_error(err, root) from None
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        try:
            os.mkdir(current)
        except FileExistsError:
            pass
        except OSError as err:
            raise storage_error(err, current) from None
        mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            raise link_refused(current)
        if not stat.S_ISDIR(mode):
            raise _planted(current, "a file")
    return folder
