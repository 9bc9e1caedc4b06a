"""Opening the SQLite job store's file: private from its creation, WAL, explicit transactions.

The file is opened by SQLite alone. Closing any descriptor of a database file drops every
POSIX lock the process holds on it, the SQLite connections' too (SQLite keeps track of its
own descriptors, not of others'): a store opened beside a running one (the SMTP intake opens
one per message) would leave the running one's connection unlocked. The next process to
close its connection would then take itself for the last one, fold the WAL into the
database and delete it, and every later commit of the running store would go to the
deleted file, seen by nobody and lost. So the file is touched by descriptor only to create
it, when it is missing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["connect"]


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store at ``path`` (its folder and file made private when
    missing): rows as :class:`sqlite3.Row`, WAL, ``synchronous=NORMAL``, a 30 s busy
    timeout, transactions begun explicitly (``isolation_level=None``), and ``py_lower``
    for comparing senders. Raises :class:`OSError` or :class:`sqlite3.Error`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _create_private(path)
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        # SQLite's lower() folds ASCII only; senders are compared as Python folds them.
        db.create_function("py_lower", 1, _lower, deterministic=True)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        db.close()
        raise
    return db


def _create_private(path: Path) -> None:
    """Create the database file 0600 when it is missing: SQLite gives its -wal and -shm
    files the database file's permissions. An existing file is never opened here."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        pass  # made before (or by another process just now): SQLite opens it as it is


def _lower(text: str | None) -> str | None:
    return text.lower() if text is not None else None
