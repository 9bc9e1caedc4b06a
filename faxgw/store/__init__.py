"""Job stores: the record of truth for every accepted job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..config import Config
from ..jobs import utcnow
from ..layout import SpoolLayout
from .base import JobStore
from .sqlite import SQLiteJobStore

__all__ = ["JobStore", "SQLiteJobStore", "open_store"]


def open_store(config: Config, *, clock: Callable[[], datetime] = utcnow) -> JobStore:
    """The job store for this configuration (SQLite in the spool's state folder)."""
    return SQLiteJobStore(SpoolLayout(config.spool.dir).database, clock=clock)
