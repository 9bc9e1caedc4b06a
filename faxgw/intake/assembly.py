"""A job being assembled in ``tmp/<id>/``, and the lock that says its process still lives.

Several processes may share a spool (a ``faxgw run`` service and a cron ``faxgw run --once``),
so start-up recovery must tell a folder a stopped process left from one another process is
filling right now. Each assembling process holds an exclusive ``flock`` on
``tmp/<id>.lock`` from before the folder exists until after it has been renamed away; the
kernel drops the lock when the process ends, however it ends. Recovery touches a folder only
once it holds that lock itself.

The lock file lies beside the folder, not in it, and is made first: so a folder never exists
without its lock file (but one of a version without locks). A lock file is removed only by a
process that holds its lock and has checked that the name still leads to it, so two processes
can never believe they hold the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from .access import Access
from .layout import DOCS

__all__ = ["LOCK_SUFFIX", "Assembly", "sweep_locks"]

LOCK_SUFFIX = ".lock"
_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the open file ``fd`` (nobody removed or replaced it)."""
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


class Assembly:
    """The folder ``tmp/<id>/`` of a job being assembled, held by this process."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + LOCK_SUFFIX)
        self._fd: int | None = lock_fd

    @classmethod
    def begin(cls, tmp: Path, job_id: str, access: Access) -> Assembly:
        """Lock, then create ``tmp/<job_id>/`` with its ``docs/`` folder."""
        lock = tmp / (job_id + LOCK_SUFFIX)
        while True:
            fd = os.open(lock, _LOCK_FLAGS | os.O_CREAT | os.O_EXCL, access.file_mode)
            # Blocking: a recovering process may hold it for a moment, seeing no folder yet.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_named(fd, lock):
                break
            os.close(fd)  # that process removed it as stale: make it anew
        assembly = cls(tmp / job_id, fd)
        try:
            access.make_dir(assembly.path)
            access.make_dir(assembly.path / DOCS)
        except BaseException:
            shutil.rmtree(assembly.path, ignore_errors=True)
            assembly.release()
            raise
        return assembly

    @classmethod
    def take_over(cls, tmp: Path, name: str) -> Assembly | None:
        """``tmp/<name>/`` if the process that assembled it is gone, now held by this one;
        None while that process lives (or another one is recovering the folder)."""
        lock = tmp / (name + LOCK_SUFFIX)
        try:
            fd = os.open(lock, _LOCK_FLAGS)
        except FileNotFoundError:
            # A folder of a version without locks: lock it now, so that only one process
            # recovers it.
            try:
                fd = os.open(lock, _LOCK_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None  # its process is alive
        assembly = cls(tmp / name, fd)
        if not _still_named(fd, lock):
            os.close(fd)  # someone else recovered it meanwhile
            return None
        if not (tmp / name).is_dir():
            assembly.release()  # the folder went (committed) while we looked
            return None
        return assembly

    def discard(self) -> None:
        """Remove the folder and what is in it, and the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Remove the lock file and drop the lock (once the folder is renamed or removed)."""
        if self._fd is None:
            return
        if _still_named(self._fd, self.lock_path):
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def abandon(self) -> None:
        """Drop the lock and keep everything: what a process that dies leaves behind."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sweep_locks(tmp: Path) -> None:
    """Remove lock files whose folder is gone and whose process has ended (it stopped
    between making the lock and making the folder, or after removing the folder)."""
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if not name.endswith(LOCK_SUFFIX) or (tmp / name.removesuffix(LOCK_SUFFIX)).exists():
            continue
        try:
            fd = os.open(tmp / name, _LOCK_FLAGS)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        assembly = Assembly(tmp / name.removesuffix(LOCK_SUFFIX), fd)
        if (tmp / name.removesuffix(LOCK_SUFFIX)).exists():
            assembly.abandon()  # its folder appeared meanwhile: recovery's, next time
        else:
            assembly.release()
