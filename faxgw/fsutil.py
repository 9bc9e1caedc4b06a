"""Durable file writes, the way Maildir and Postfix's queue make them.

A file is written under a temporary dot-name in its final folder (so scanners skip it and the
rename stays on one file system), flushed and fsynced, renamed over the target, and the
folder is fsynced so that the rename itself survives a crash. A reader sees the old file or
the new one, never a part of either.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX; elsewhere as durable as the OS makes it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], object], *,
                 mode: int = 0o644) -> int:
    """Replace ``path`` with ``data`` (bytes, or a function writing to a binary file).

    The file has ``mode`` from its creation, so a secret (mode 0600) is never readable by
    others, not even for a moment. Returns the size written.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never write through a file (or a link) someone else prepared under that name.
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size
