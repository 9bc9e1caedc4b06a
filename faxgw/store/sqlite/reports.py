"""The SQLite store's reports and inbox cursors (the :class:`~faxgw.ports.ReportStore` half).

A mixin of :class:`~faxgw.store.sqlite.store.SQLiteJobStore`: reports share the jobs'
database file and connection, so that one backup holds a job and the reports about it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from ...domain.reports import Report
from ...ports import ReportStore
from .rows import REPORT_COLUMNS, report_from, report_values, ts


class SQLiteReports(ReportStore):
    """Reports and cursors in the store's database (see :class:`ReportStore`)."""

    _db: sqlite3.Connection
    _clock: Callable[[], datetime]
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def add_report(self, report: Report) -> bool:
        """Record ``report`` once; False when its key is known."""
        marks = ",".join("?" * len(REPORT_COLUMNS))
        with self._write():
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO reports ({','.join(REPORT_COLUMNS)}) VALUES ({marks})",
                report_values(report))
            return cursor.rowcount == 1

    def get_report(self, key: str) -> Report | None:
        """The report recorded with this key, if any."""
        row = self._db.execute("SELECT * FROM reports WHERE key = ?", (key,)).fetchone()
        return None if row is None else report_from(row)

    def reports(self, *, job_id: str | None = None, unmatched: bool = False,
                limit: int = 100) -> list[Report]:
        """Reports, newest first."""
        sql, args = "SELECT * FROM reports", []
        if job_id is not None:
            sql += " WHERE job_id = ?"
            args.append(job_id)
        elif unmatched:
            sql += " WHERE job_id IS NULL"
        sql += " ORDER BY seq DESC LIMIT ?"
        return [report_from(row) for row in self._db.execute(sql, [*args, limit])]

    def inbox_cursor(self, mailbox: str) -> str | None:
        """Where the reader of ``mailbox`` left off."""
        row = self._db.execute("SELECT cursor FROM inbox_cursors WHERE mailbox = ?",
                               (mailbox.lower(),)).fetchone()
        return None if row is None else str(row["cursor"])

    def save_inbox_cursor(self, mailbox: str, cursor: str) -> None:
        """Remember where the reader of ``mailbox`` is."""
        with self._write():
            self._db.execute(
                "INSERT INTO inbox_cursors (mailbox, cursor, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (mailbox) DO UPDATE SET cursor = excluded.cursor, "
                "updated = excluded.updated",
                (mailbox.lower(), cursor, ts(self._clock())))
