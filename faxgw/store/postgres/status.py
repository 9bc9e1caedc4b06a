"""The shared database as the status sheet and ``/metrics`` show it: where it is, its schema,
the hosts working on it, and how the hot table is kept (dead row versions, last vacuum)."""

from __future__ import annotations

from typing import Any

import psycopg

from .cluster import hosts
from .schema import schema_version


def database_status(db: psycopg.Connection[dict[str, Any]], where: str) -> dict[str, Any]:
    """The database: ``database`` (named without a password), ``schema_version``,
    ``server_version``, ``jobs_dead_tuples`` and ``jobs_last_autovacuum`` (from the
    statistics), and ``hosts``: each runner's owner id, host name, process, start and last
    heartbeat, and the seconds since it (by the database's clock)."""
    server = db.execute("SELECT current_setting('server_version') AS version").fetchone()
    table = db.execute("SELECT n_dead_tup, last_autovacuum FROM pg_stat_user_tables"
                       " WHERE relid = to_regclass('jobs')").fetchone()
    last_vacuum = table["last_autovacuum"] if table else None
    return {
        "kind": "postgresql",
        "database": where,
        "schema_version": schema_version(db),
        "server_version": server["version"] if server else None,
        "jobs_dead_tuples": int(table["n_dead_tup"]) if table else None,
        "jobs_last_autovacuum": last_vacuum.isoformat(timespec="seconds") if last_vacuum else None,
        "hosts": [{"owner": row["owner"], "host": row["host"], "pid": row["pid"],
                   "started": row["started"].isoformat(timespec="seconds"),
                   "last_seen": row["last_seen"].isoformat(timespec="seconds"),
                   "silent_seconds": round(row["silent"], 1)} for row in hosts(db)],
    }
