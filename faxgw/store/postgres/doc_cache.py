"""Bringing a job's files from the database into a local folder, as the spool writes files.

Each file is written under a temporary name in its folder, with a private mode whatever the
umask, fsynced, given the time it was stored as its modification time, and renamed into
place; then the folder is fsynced. A reader (the render process, the console) therefore
sees a file whole or not at all, and two processes bringing the same job at once each
rename a complete copy. A local copy whose size and time match the stored file is kept:
only what changed in the database is read again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from ...fsutil import write_atomic
from .documents import DocumentTable, StoredFile, safe_path

__all__ = ["bring"]


def bring(table: DocumentTable, job_id: str, folder: Path, *, file_mode: int = 0o600,
          dir_mode: int = 0o700) -> bool:
    """Make ``folder`` hold the job's stored files; False (nothing made) when none are
    stored. Raises StoreError when the database cannot be read, OSError when the folder
    cannot be written."""
    stored = table.listing(job_id)
    if not stored:
        return False
    _make_dir(folder, dir_mode)
    for item in stored:
        target = folder / safe_path(item.path)
        if _current(target, item):
            continue
        _make_dir(target.parent, dir_mode)
        _write(table, job_id, item, target, file_mode)
    return True


def _current(target: Path, item: StoredFile) -> bool:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return False
    return st.st_size == item.size and st.st_mtime_ns == item.stamp_ns


def _make_dir(folder: Path, mode: int) -> None:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)  # whatever the umask
        except FileExistsError:
            pass  # made by another process just now


def _write(table: DocumentTable, job_id: str, item: StoredFile, target: Path,
           file_mode: int) -> None:
    def fill(file: BinaryIO) -> None:
        os.fchmod(file.fileno(), file_mode)  # whatever the umask: the spool's group may read
        table.read(job_id, item.path, file.write)

    write_atomic(target, fill, mode=file_mode)
    # The stored time marks the copy as current (see _current); a stop before it costs only
    # one more fetch.
    os.utime(target, ns=(item.stamp_ns, item.stamp_ns), follow_symlinks=False)
