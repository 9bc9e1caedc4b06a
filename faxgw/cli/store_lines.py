"""The job store's lines of ``faxgw status``: the database and, when several hosts share it,
each host with its last heartbeat."""

from __future__ import annotations

from typing import Any


def store_lines(store: dict[str, Any]) -> list[str]:
    """The lines for the sheet's ``store`` part (labels right-aligned as the sheet's)."""
    if store.get("kind") != "postgresql":
        return [f"{'Job store':>24}: SQLite {store.get('database')}"]
    lines = [f"{'Job store':>24}: {store['database']} (schema {store['schema_version']}, "
             f"PostgreSQL {store['server_version']})"]
    if store.get("jobs_dead_tuples") is not None:
        vacuumed = store.get("jobs_last_autovacuum") or "not yet"
        lines.append(f"{'Jobs table':>24}: {store['jobs_dead_tuples']} dead row versions, "
                     f"last autovacuum {vacuumed}")
    hosts = store.get("hosts") or []
    if not hosts:
        lines.append(f"{'Hosts':>24}: none running (no heartbeat)")
    for index, host in enumerate(hosts):
        label = "Hosts" if index == 0 else ""
        lines.append(f"{label:>24}: {host['host']} ({host['owner']}), last heartbeat "
                     f"{host['silent_seconds']:g} s ago")
    return lines
