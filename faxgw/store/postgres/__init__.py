"""The PostgreSQL job store: one database for gateways on several hosts.

Its schema is created and upgraded only by :func:`migrate_schema` (``faxgw store migrate``);
opening the store checks that the schema is at :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from ...domain.errors import StoreError
from .connect import connect, describe, error_text, scrub
from .schema import SCHEMA_VERSION, migrate
from .store import PostgresJobStore

__all__ = ["SCHEMA_VERSION", "PostgresJobStore", "describe", "migrate_schema"]


def migrate_schema(conninfo: str, *, password: str | None = None,
                   ca_file: Path | None = None) -> tuple[int, int]:
    """Create the store's tables or bring them to :data:`SCHEMA_VERSION` (idempotent, one
    transaction); the versions before (0: no tables) and after."""
    where = describe(conninfo)
    db = connect(conninfo, password=password, ca_file=ca_file)
    try:
        return migrate(db, where)
    except psycopg.Error as exc:
        raise StoreError(f"job store {where}: {scrub(error_text(exc), password)}") from None
    finally:
        db.close()
