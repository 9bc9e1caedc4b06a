"""The PostgreSQL store's reports and inbox cursors (the :class:`~faxgw.ports.ReportStore`
half).

A mixin of :class:`~faxgw.store.postgres.store.PostgresJobStore`: reports share the jobs'
database and connection, so that one backup holds a job and the reports about it. Each report
is recorded once by its key, whichever host reads it first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ...domain.reports import Report
from ...ports import ReportStore
from .connection import StoreConnection
from .rows import REPORT_COLUMNS, report_from, report_values


class PostgresReports(StoreConnection, ReportStore):
    """Reports and cursors in the store's database (see :class:`ReportStore`)."""

    _clock: Callable[[], datetime]

    def add_report(self, report: Report) -> bool:
        """Record ``report`` once; False when its key is known."""
        marks = ", ".join(["%s"] * len(REPORT_COLUMNS))
        inserted = self._transact(lambda db: db.execute(
            f"INSERT INTO reports ({', '.join(REPORT_COLUMNS)}) VALUES ({marks})"
            " ON CONFLICT (key) DO NOTHING", report_values(report)).rowcount)
        return inserted == 1

    def get_report(self, key: str) -> Report | None:
        """The report recorded with this key, if any."""
        rows = self._rows("SELECT * FROM reports WHERE key = %s", (key,))
        return report_from(rows[0]) if rows else None

    def reports(self, *, job_id: str | None = None, unmatched: bool = False,
                limit: int = 100) -> list[Report]:
        """Reports, newest first."""
        query, args = "SELECT * FROM reports", []
        if job_id is not None:
            query += " WHERE job_id = %s"
            args.append(job_id)
        elif unmatched:
            query += " WHERE job_id IS NULL"
        query += " ORDER BY seq DESC LIMIT %s"
        return [report_from(row) for row in self._rows(query, [*args, limit])]

    def inbox_cursor(self, mailbox: str) -> str | None:
        """Where the reader of ``mailbox`` left off."""
        rows = self._rows("SELECT cursor FROM inbox_cursors WHERE mailbox = %s",
                          (mailbox.lower(),))
        return str(rows[0]["cursor"]) if rows else None

    def save_inbox_cursor(self, mailbox: str, cursor: str) -> None:
        """Remember where the reader of ``mailbox`` is."""
        self._transact(lambda db: db.execute(
            "INSERT INTO inbox_cursors (mailbox, cursor, updated) VALUES (%s, %s, %s)"
            " ON CONFLICT (mailbox) DO UPDATE SET cursor = excluded.cursor,"
            " updated = excluded.updated", (mailbox.lower(), cursor, self._clock())))
