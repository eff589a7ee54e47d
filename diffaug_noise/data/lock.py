"""One writer at a time for a file: an exclusive ``flock`` on ``<file>.lock``, refused at once when held.

The holder writes its pid, host and start time into the lock file, so the second writer's error
names the first. ``flock`` is released by the kernel when its holder dies, so a killed run holds
nothing; the lock file itself stays (removing it would let a third writer lock a new file while a
second still holds the old one).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "set.zip.lock"
    >>> with exclusive(path, what="data prepare of set.zip"):
    ...     with exclusive(path, what="data prepare of set.zip"):
    ...         pass
    Traceback (most recent call last):
    ...
    diffaug_noise.data.lock.LockedError: another data prepare of set.zip is at work (pid ...); wait for it ...
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import pathlib
import socket

from ..checkpoint import storage_error
from .registry import DatasetError


class LockedError(DatasetError):
    """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def exclusive(path: pathlib.Path, what: str):
    """Hold an exclusive lock on ``path`` while the block runs, or raise :class:`LockedError` at once."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise storage_error(err, path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
            raise LockedError(f"another {what} is at work ({holder}); wait for it to finish, or run this one with "
                              "another --out") from None
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
