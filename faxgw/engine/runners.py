"""Runners: every worker process is one, with an id, and says it is alive by holding a lock.

Any number of runners may share a spool and a job store (a ``faxgw run`` service beside a
cron ``faxgw run --once``, two services). A runner's claims and ``preparing`` marks carry its
id, ``host:pid:random``. On its own host a runner holds an exclusive ``flock`` on
``state/runners/<id>.lock`` for as long as it lives; the kernel drops the lock when the
process ends, however it ends (SIGKILL, out of memory), so whether a runner on this host is
gone is a fact, not a guess from a clock. A runner on another host cannot be asked: its
claims are taken back only when their lease has ended.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import secrets
import socket
from pathlib import Path

__all__ = ["Liveness", "RunnerLock", "liveness", "runner_id"]


def runner_id() -> str:
    """A name for this runner that no other process, here or on another host, has."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _lock_path(folder: Path, owner: str) -> Path:
    return folder / (owner.replace("/", "_") + ".lock")


class Liveness(enum.Enum):
    """What can be known about a runner."""

    ALIVE = "alive"        # on this host, holding its lock
    GONE = "gone"          # on this host, its lock free (or never taken), or no owner at all
    ELSEWHERE = "elsewhere"  # on another host: its lease decides


class RunnerLock:
    """This runner's lock, held until :meth:`release` (or the process's end)."""

    def __init__(self, folder: Path, owner: str) -> None:
        self.owner = owner
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = _lock_path(folder, owner)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        """Give the lock up and remove its file (this runner is done)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def liveness(folder: Path, owner: str) -> Liveness:
    """Whether the runner ``owner`` is alive, gone, or on another host."""
    host, _, rest = owner.partition(":")
    if not owner or not rest:
        return Liveness.GONE  # a claim made before runners had ids, or a foreign mark
    if host != socket.gethostname():
        return Liveness.ELSEWHERE
    path = _lock_path(folder, owner)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return Liveness.GONE
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return Liveness.ALIVE
    else:
        # Ours now: nobody holds it. Remove the stale file while holding the lock, so that
        # the next look finds nothing rather than racing for it.
        with contextlib.suppress(OSError):
            path.unlink()
        return Liveness.GONE
    finally:
        os.close(fd)
