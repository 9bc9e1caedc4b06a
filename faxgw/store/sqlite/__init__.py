"""The SQLite job store: one file in the spool's ``state/`` folder, for one gateway host."""

from .schema import SCHEMA_VERSION
from .store import SQLiteJobStore

__all__ = ["SCHEMA_VERSION", "SQLiteJobStore"]
