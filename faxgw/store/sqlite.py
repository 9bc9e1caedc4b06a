"""The SQLite job store (WAL): the record of truth for one gateway host.

WAL with ``synchronous=NORMAL`` survives a killed process with every committed transaction
intact; after a power cut the last transactions may be lost, which the spool covers: each
job's folder carries its own ``job.json``, so an accepted job whose row is missing is
registered again at start-up (``Spool.recover``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import JobNotFoundError, JobStateError, StoreError
from ..jobs import HistoryEvent, Job, JobState, can_transition, utcnow
from .base import JobStore

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    state           TEXT NOT NULL,
    code            INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    number          TEXT NOT NULL,
    recipient       TEXT NOT NULL DEFAULT '',
    sender          TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    documents       TEXT NOT NULL DEFAULT '[]',
    pages           INTEGER,
    bytes           INTEGER,
    message_id      TEXT,
    error           TEXT,
    last_reply      TEXT,
    source          TEXT NOT NULL DEFAULT '',
    age_from        TEXT,
    paused_since    TEXT,
    cover           INTEGER
);
-- Queue scans cost in proportion to the due jobs, not to every job ever stored.
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS history (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL,
    at      TEXT NOT NULL,
    event   TEXT NOT NULL,
    state   TEXT,
    code    INTEGER,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_job ON history (job_id, seq);
"""

# Columns a caller may set through ``update``/``transition(fields=...)``.
_UPDATABLE = frozenset(
    {
        "recipient",
        "sender",
        "subject",
        "note",
        "documents",
        "pages",
        "bytes",
        "message_id",
        "error",
        "code",
        "next_attempt_at",
        "attempts",
        "created",
        "last_reply",
        "age_from",
        "paused_since",
    }
)


def _ts(value: datetime | None) -> str | None:
    # One fixed format in UTC, so that text order is time order in SQL comparisons.
    # YYYY-MM-DDTHH:MM:SS.ffffffZ; isoformat() writes it as strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # would, in a tenth of the time (every job read and write goes through here).
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _dt(value: str | None) -> datetime | None:
    if value is None:
        return None
    # fromisoformat reads the trailing "Z" as UTC (Python 3.11+); strptime is far slower.
    return datetime.fromisoformat(value)


def _column(name: str, value: object) -> object:
    if name == "documents":
        return json.dumps(value)
    if isinstance(value, datetime):
        return _ts(value)
    return value


class SQLiteJobStore(JobStore):
    """Jobs and history in one SQLite file (WAL), shared safely by processes on one host."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), so a
            # claim is one atomic read-modify-write even with several worker processes.
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"job store {path}: {exc}") from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"job store {self.path}: {exc}") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"],
            number=row["number"],
            state=JobState(row["state"]),
            code=row["code"],
            created=_dt(row["created"]) or utcnow(),
            updated=_dt(row["updated"]) or utcnow(),
            attempts=row["attempts"],
            next_attempt_at=_dt(row["next_attempt_at"]),
            recipient=row["recipient"],
            sender=row["sender"],
            subject=row["subject"],
            note=row["note"],
            documents=json.loads(row["documents"]),
            pages=row["pages"],
            bytes=row["bytes"],
            message_id=row["message_id"],
            error=row["error"],
            last_reply=row["last_reply"],
            source=row["source"],
            age_from=_dt(row["age_from"]),
            paused_since=_dt(row["paused_since"]),
            cover=None if row["cover"] is None else bool(row["cover"]),
        )

    def get(self, job_id: str) -> Job:
        """The job with this id, or a unique prefix of it."""
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None and job_id:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                (job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
            ).fetchall()
            if len(rows) > 1:
                raise JobNotFoundError(f"job {job_id!r} is ambiguous: give more of its id")
            row = rows[0] if rows else None
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return self._job(row)

    def exists(self, job_id: str) -> bool:
        """Whether a job with exactly this id is stored."""
        return self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def list_jobs(
        self, states: Iterable[JobState] | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally only in the given states."""
        sql = "SELECT * FROM jobs"
        args: list[object] = []
        if states is not None:
            wanted = [JobState(s).value for s in states]
            sql += f" WHERE state IN ({','.join('?' * len(wanted))})"
            args.extend(wanted)
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._job(row) for row in self._db.execute(sql, args)]

    def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM history WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
        return [
            HistoryEvent(
                job_id=row["job_id"],
                at=_dt(row["at"]) or utcnow(),
                event=row["event"],
                state=JobState(row["state"]) if row["state"] else None,
                code=row["code"],
                detail=row["detail"],
            )
            for row in rows
        ]

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        counts = dict.fromkeys(JobState, 0)
        for row in self._db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[JobState(row["state"])] = row["n"]
        return counts

    def next_due_at(self) -> datetime | None:
        """When the earliest deferred job is due."""
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) AS due FROM jobs WHERE state = ?",
            (JobState.DEFERRED.value,),
        ).fetchone()
        return _dt(row["due"]) if row else None

    # -- writing -------------------------------------------------------------------------

    def _event(
        self, job_id: str, event: str, state: JobState | None, code: int | None, detail: str
    ) -> None:
        self._db.execute(
            "INSERT INTO history (job_id, at, event, state, code, detail) VALUES (?,?,?,?,?,?)",
            (job_id, _ts(self._clock()), event, state.value if state else None, code, detail),
        )

    def add(self, job: Job, *, detail: str = "") -> None:
        """Insert a new job with an ``accepted`` event."""
        now = self._clock()
        with self._write():
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, created, updated, state, code, attempts,"
                    " next_attempt_at, number, recipient, sender, subject, note, documents,"
                    " pages, bytes, message_id, error, last_reply, source, age_from, cover)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        job.id,
                        _ts(job.created),
                        _ts(now),
                        job.state.value,
                        job.code,
                        job.attempts,
                        _ts(job.next_attempt_at),
                        job.number,
                        job.recipient,
                        job.sender,
                        job.subject,
                        job.note,
                        json.dumps(job.documents),
                        job.pages,
                        job.bytes,
                        job.message_id,
                        job.error,
                        job.last_reply,
                        job.source,
                        _ts(job.age_from or job.created),
                        job.cover,
                    ),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"job {job.id} is already stored") from None
            self._event(job.id, "accepted", job.state, job.code, detail)

    def claim_due(
        self, now: datetime, limit: int, *, exclude_senders: Iterable[str] = (),
        exclude_ids: Iterable[str] = (),
    ) -> list[Job]:
        """Move due jobs to ``sending`` and return them, oldest first."""
        excluded = list(exclude_senders)
        sql = "SELECT * FROM jobs WHERE (state = ? OR (state = ? AND next_attempt_at <= ?))"
        args: list[object] = [JobState.QUEUED.value, JobState.DEFERRED.value, _ts(now)]
        if excluded:
            sql += f" AND lower(sender) NOT IN ({','.join('?' * len(excluded))})"
            args.extend(sender.lower() for sender in excluded)
        skipped = list(exclude_ids)
        if skipped:
            sql += f" AND id NOT IN ({','.join('?' * len(skipped))})"
            args.extend(skipped)
        sql += " ORDER BY created, id LIMIT ?"
        args.append(limit)
        with self._write():
            rows = self._db.execute(sql, args).fetchall()
            jobs = [self._job(row) for row in rows]
            clock_now = self._clock()
            stamp = _ts(clock_now)
            for job in jobs:
                if job.paused_since is not None:
                    # Time spent waiting for the account does not count towards max_age.
                    waited = max(now, job.paused_since) - job.paused_since
                    job.age_from = (job.age_from or job.created) + waited
                    job.paused_since = None
                self._db.execute(
                    "UPDATE jobs SET state = ?, updated = ?, age_from = ?, paused_since = NULL"
                    " WHERE id = ?",
                    (JobState.SENDING.value, stamp, _ts(job.age_from or job.created), job.id),
                )
                self._event(
                    job.id, "sending", JobState.SENDING, None, f"attempt {job.attempts + 1}"
                )
                job.state = JobState.SENDING
        return jobs

    def transition(
        self,
        job_id: str,
        target: JobState,
        *,
        event: str,
        detail: str = "",
        code: int | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        count_attempt: bool = False,
        expect: Iterable[JobState] | None = None,
        fields: dict[str, object] | None = None,
    ) -> Job:
        """Move a job to ``target`` and append its history event in one transaction."""
        with self._write():
            job = self.get(job_id)
            allowed = set(expect) if expect is not None else None
            if (allowed is not None and job.state not in allowed) or not can_transition(
                job.state, target
            ):
                raise JobStateError(f"job {job.id} is {job.state.value}: cannot {event} it")
            updates: dict[str, object] = dict(fields or {})
            unknown = set(updates) - _UPDATABLE
            if unknown:
                raise StoreError(f"unknown job fields: {', '.join(sorted(unknown))}")
            updates.update(
                state=target.value,
                code=code,
                error=error,
                next_attempt_at=next_attempt_at,
                updated=self._clock(),
            )
            if count_attempt:
                updates["attempts"] = job.attempts + 1
            assignments = ", ".join(f"{name} = ?" for name in updates)
            self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ?",
                [_column(name, value) for name, value in updates.items()] + [job.id],
            )
            self._event(job.id, event, target, code, detail)
            return self.get(job.id)

    def update(self, job_id: str, *, event: str = "", detail: str = "", **fields: object) -> Job:
        """Update columns of a job without a state change, optionally with an event."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise StoreError(f"unknown job fields: {', '.join(sorted(unknown))}")
        with self._write():
            job = self.get(job_id)
            fields["updated"] = self._clock()
            assignments = ", ".join(f"{name} = ?" for name in fields)
            self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ?",
                [_column(name, value) for name, value in fields.items()] + [job.id],
            )
            if event:
                self._event(job.id, event, None, None, detail)
            return self.get(job.id)

    def add_event(
        self, job_id: str, event: str, detail: str = "", *, code: int | None = None
    ) -> None:
        """Append an event to a job's history."""
        with self._write():
            self._event(job_id, event, None, code, detail)

    def recover_sending(self) -> list[str]:
        """Return jobs left in ``sending`` to ``queued``, saying so in their history."""
        with self._write():
            ids = [
                row["id"]
                for row in self._db.execute(
                    "SELECT id FROM jobs WHERE state = ?", (JobState.SENDING.value,)
                )
            ]
            stamp = _ts(self._clock())
            for job_id in ids:
                self._db.execute(
                    "UPDATE jobs SET state = ?, updated = ? WHERE id = ?",
                    (JobState.QUEUED.value, stamp, job_id),
                )
                self._event(
                    job_id,
                    "recovered",
                    JobState.QUEUED,
                    None,
                    "the gateway stopped while this job was being sent; queued again "
                    "(if the server had already accepted it, the fax may arrive twice)",
                )
        return ids

    def purge(self, before: datetime) -> list[str]:
        """Delete finished jobs last changed before ``before``, with their history."""
        finished = [JobState.SENT.value, JobState.FAILED.value, JobState.CANCELLED.value]
        with self._write():
            ids = [
                row["id"]
                for row in self._db.execute(
                    "SELECT id FROM jobs WHERE state IN (?,?,?) AND updated < ?",
                    (*finished, _ts(before)),
                )
            ]
            for job_id in ids:
                self._db.execute("DELETE FROM history WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return ids

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
