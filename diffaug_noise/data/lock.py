"""One writer at a time for a file: an exclusive ``flock`` on ``<file>.lock``, refused at once when held.

The holder writes its pid, host and start time into the lock file, so the second writer's error
names the first. ``flock`` is released by the kernel when its holder dies, so a killed run holds
nothing; the next run takes the lock over and says so. A run that ends removes the lock file
while it still holds the lock; a writer that opened the old file meanwhile finds, once it holds
the lock, that the name now belongs to another file (or none), and starts over on the new one.

The lock file sits in a folder others may write to: it is opened with
:func:`~diffaug_noise.safe_paths.open_for_writing` (never through a planted link), and what it
holds is shown as printable ASCII only.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "set.zip.lock"
    >>> with exclusive(path, what="data prepare of set.zip"):
    ...     with exclusive(path, what="data prepare of set.zip"):
    ...         pass
    Traceback (most recent call last):
    ...
    diffaug_noise.data.lock.LockedError: another data prepare of set.zip is at work (pid ...); wait for it ...
    >>> path.exists()
    False
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import pathlib
import re
import socket
import warnings

from ..safe_paths import open_for_writing
from .errors import DatasetError

ATTEMPTS = 20  # lock files a writer may find replaced under it before it gives up


class LockedError(DatasetError):
    """Another process holds the lock; the message names it."""


def printable(raw: bytes, limit: int = 120) -> str:
    """``raw`` as one line of printable ASCII (anything else shown as ``?``), at most ``limit`` characters.

    Example:
        >>> printable(b"pid 7\\n\\x1b[2Jowned")
        'pid 7??[2Jowned'
    """
    text = re.sub(r"[^\x20-\x7e]", "?", raw.decode("ascii", errors="replace")).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _names_fd(path: pathlib.Path, fd: int) -> bool:
    """Whether ``path`` (not followed) is still the file open as ``fd``."""
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def exclusive(path: pathlib.Path, what: str):
    """Hold an exclusive lock on ``path`` while the block runs, or raise :class:`LockedError` at once."""
    path = pathlib.Path(path)
    for _ in range(ATTEMPTS):
        fd = open_for_writing(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = printable(os.pread(fd, 200, 0)) or "pid unknown"
            os.close(fd)
            raise LockedError(f"another {what} is at work ({holder}); wait for it to finish, or run this one with "
                              "another --out") from None
        if _names_fd(path, fd):
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the file the name has now
    else:
        raise LockedError(f"the lock file {str(path)!r} was replaced {ATTEMPTS} times while we waited for it; is "
                          f"something deleting it? Run the {what} again")
    try:
        left = printable(os.pread(fd, 200, 0))
        if left:  # a run that ended removed its lock file: this one's holder was killed, or its host went down
            warnings.warn(f"{what}: taking over the lock {str(path)!r} left by a run that did not finish ({left}); "
                          "it was killed or its machine went down", stacklevel=3)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            if _names_fd(path, fd):
                os.unlink(path)  # while still locked: see the module docstring
        os.close(fd)  # releases the flock
