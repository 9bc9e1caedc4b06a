"""Where a message's documents wait while its jobs are made: a private folder of the spool.

The documents are written out once per message and copied into each job (``faxgw submit``'s
way in). They wait in ``state/smtp-incoming/`` of the spool, not in the system's temporary
folder, so that a service killed half-way through a message leaves nothing outside the
spool, and what it left is removed when the listener starts again. Each folder's name starts
with the host and the process that made it: only folders of this host whose process has
ended are removed, never one that another running listener is using.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..config import Config
from ..fsutil import make_private_folder

__all__ = ["STAGING", "staged", "staging_root", "sweep"]

log = logging.getLogger("faxgw.devices")

STAGING = "smtp-incoming"


def staging_root(config: Config) -> Path:
    """The folder the SMTP intake's messages wait in."""
    return config.spool.dir / "state" / STAGING


def _prefix(pid: int) -> str:
    return f"{socket.gethostname()}-{pid}-"


@contextlib.contextmanager
def staged(config: Config) -> Iterator[Path]:
    """A new private folder for one message's documents, removed afterwards. Before the
    spool exists (the service makes it), the system's temporary folder serves."""
    root = staging_root(config)
    if root.parent.is_dir():
        make_private_folder(root)
        place: Path | None = root
    else:
        place = None
    with tempfile.TemporaryDirectory(prefix=_prefix(os.getpid()), dir=place) as folder:
        yield Path(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    return True


def sweep(config: Config) -> list[str]:
    """Remove what listeners of this host that have ended left waiting; the names removed.
    What cannot be removed is logged and left for the next start."""
    root = staging_root(config)
    host = f"{socket.gethostname()}-"
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        pid_text = name[len(host):].partition("-")[0] if name.startswith(host) else ""
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue  # another host's, a running process's, or not ours at all
        try:
            shutil.rmtree(root / name)
        except OSError as exc:
            log.error("SMTP intake: cannot remove %s left by a stopped service: %s",
                      root / name, exc.strerror or exc)
            continue
        removed.append(name)
    if removed:
        log.warning("SMTP intake: removed %d message(s) a stopped service left half-taken "
                    "(their devices were not told 250 and send them again)", len(removed))
    return removed
