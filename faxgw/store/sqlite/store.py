"""The SQLite job store (WAL): the record of truth for one gateway host.

WAL with ``synchronous=NORMAL`` survives a killed process with every committed transaction
intact; after a power cut the last transactions may be lost, which the spool covers: each
job's folder carries its own ``job.json``, so an accepted job whose row is missing is
registered again at start-up (``Spool.recover``).

Several processes on one host share the file safely: every write is one ``BEGIN IMMEDIATE``
transaction, so a claim is one atomic read-modify-write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ...domain import codes
from ...domain.cluster import HANDING_OVER, REQUEUED_DETAIL, UNCONFIRMED_DETAIL
from ...domain.errors import JobNotFoundError, JobStateError, StoreError
from ...domain.jobs import FINISHED_STATES, HistoryEvent, Job, JobState, can_transition, utcnow
from ...ports import JobStore
from .connect import connect
from .reports import SQLiteReports
from .rows import (
    INSERT_COLUMNS,
    check_fields,
    column,
    dt,
    event_from,
    insert_values,
    job_from,
    ts,
)
from .schema import migrate

_INSERT = (f"INSERT INTO jobs ({', '.join(INSERT_COLUMNS)}) "
           f"VALUES ({','.join('?' * len(INSERT_COLUMNS))})")
_EVENT = "INSERT INTO history (job_id, at, event, state, code, detail) VALUES (?,?,?,?,?,?)"
#: The jobs a claim may take once due: the WHERE of the jobs_claimable index, which SQLite
#: uses only for a query that names its terms.
_CLAIMABLE = "state IN ('queued', 'deferred') AND preparing IS NULL"
#: Whether job ``j`` was being handed over in its present claim: a mark after its last claim.
_HANDED_OVER = ("EXISTS (SELECT 1 FROM history h WHERE h.job_id = j.id AND h.event = ?"
                " AND h.seq > (SELECT MAX(s.seq) FROM history s WHERE s.job_id = j.id"
                " AND s.event = 'sending'))")


class SQLiteJobStore(SQLiteReports, JobStore):
    """Jobs, history and reports in one SQLite file (WAL), shared safely by processes on one
    host."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = path
        self._clock = clock
        try:
            self._db = connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"job store {path}: {exc}") from None
        try:
            with self._write():
                migrate(self._db, str(path))
        except BaseException as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"job store {path}: {exc}") from None
            raise

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
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"job store {self.path}: {exc}") from None

    # -- reading -------------------------------------------------------------------------

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
        return job_from(row)

    def exists(self, job_id: str) -> bool:
        """Whether a job with exactly this id is stored."""
        return self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def unknown(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` with no job here, asked in batches (one query per 500)."""
        wanted = list(dict.fromkeys(job_ids))
        missing: set[str] = set()
        for start in range(0, len(wanted), 500):
            batch = wanted[start:start + 500]
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(batch))})", batch)
            missing.update(set(batch) - {row["id"] for row in rows})
        return missing

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
        return [job_from(row) for row in self._db.execute(sql, args)]

    def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM history WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
        return [event_from(row) for row in rows]

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
        return dt(row["due"]) if row else None

    # -- writing -------------------------------------------------------------------------

    def _event(
        self, job_id: str, event: str, state: JobState | None, code: int | None, detail: str
    ) -> None:
        self._db.execute(_EVENT, (job_id, ts(self._clock()), event,
                                  state.value if state else None, code, detail))

    def add(self, job: Job, *, detail: str = "") -> None:
        """Insert a new job with an ``accepted`` event."""
        self.add_all([(job, detail)])

    def add_all(self, jobs: Sequence[tuple[Job, str]]) -> None:
        """Insert new jobs with their ``accepted`` events, all in one transaction."""
        with self._write():
            for job, detail in jobs:
                try:
                    self._db.execute(_INSERT, insert_values(job, self._clock()))
                except sqlite3.IntegrityError:
                    raise StoreError(f"job {job.id} is already stored") from None
                self._event(job.id, "accepted", job.state, job.code, detail)

    def claim_due(
        self, now: datetime, limit: int, *, owner: str, lease_until: datetime,
        exclude_senders: Iterable[str] = (),
    ) -> list[Job]:
        """Move due jobs to ``sending`` for ``owner`` and return them, oldest first."""
        excluded = [sender.lower() for sender in exclude_senders]
        where = f"{_CLAIMABLE} AND (state = ? OR (state = ? AND next_attempt_at <= ?))"
        args: list[object] = [JobState.QUEUED.value, JobState.DEFERRED.value, ts(now)]
        if excluded:
            where += f" AND py_lower(sender) NOT IN ({','.join('?' * len(excluded))})"
            args.extend(excluded)
        # Most claims find nothing due (the due jobs are still being prepared): a read says
        # so without waiting for the write lock or taking it from the other runners. What
        # it finds is selected again under the lock, so that the claim stays one atomic
        # read-modify-write across processes. fetchall() ends the read before BEGIN.
        if not self._db.execute(f"SELECT 1 FROM jobs WHERE {where} LIMIT 1", args).fetchall():
            return []
        with self._write():
            rows = self._db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY created, id"
                                    " LIMIT ?", [*args, limit]).fetchall()
            jobs = [job_from(row) for row in rows]
            stamp, lease, sending = ts(self._clock()), ts(lease_until), JobState.SENDING.value
            self._db.executemany(
                "UPDATE jobs SET state = ?, updated = ?, owner = ?, lease_until = ? WHERE id = ?",
                [(sending, stamp, owner, lease, job.id) for job in jobs])
            self._db.executemany(_EVENT, [
                (job.id, ts(self._clock()), "sending", sending, None, f"attempt {job.attempts + 1}")
                for job in jobs])
            for job in jobs:
                job.state, job.owner, job.lease_until = JobState.SENDING, owner, lease_until
        return jobs

    def renew(self, owner: str, job_ids: Iterable[str], lease_until: datetime) -> list[str]:
        """Extend ``owner``'s claims; the ids it still holds."""
        held = []
        with self._write():
            for job_id in job_ids:
                cursor = self._db.execute(
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ? AND state = ?",
                    (ts(lease_until), job_id, owner, JobState.SENDING.value))
                if cursor.rowcount:
                    held.append(job_id)
        return held

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
        owner: str | None = None,
        fields: dict[str, object] | None = None,
    ) -> Job:
        """Move a job to ``target`` and append its history event in one transaction."""
        updates: dict[str, object] = dict(fields or {})
        check_fields(updates)
        with self._write():
            job = self.get(job_id)
            allowed = set(expect) if expect is not None else None
            if (allowed is not None and job.state not in allowed) or not can_transition(
                job.state, target
            ):
                raise JobStateError(f"job {job.id} is {job.state.value}: cannot {event} it")
            if owner is not None and job.owner != owner:
                raise JobStateError(f"job {job.id} is no longer claimed by this runner: "
                                    f"cannot {event} it")
            updates.update(state=target.value, code=code, error=error,
                           next_attempt_at=next_attempt_at, updated=self._clock())
            if target is not JobState.SENDING:
                updates.update(owner=None, lease_until=None)
            if count_attempt:
                updates["attempts"] = job.attempts + 1
            self._set(job.id, updates)
            self._event(job.id, event, target, code, detail)
            return self.get(job.id)

    def update(self, job_id: str, *, event: str = "", detail: str = "", **fields: object) -> Job:
        """Update columns of a job without a state change, optionally with an event."""
        check_fields(fields)
        with self._write():
            job = self.get(job_id)
            fields["updated"] = self._clock()
            self._set(job.id, fields)
            if event:
                self._event(job.id, event, None, None, detail)
            return self.get(job.id)

    def _set(self, job_id: str, fields: dict[str, object]) -> None:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                         [column(name, value) for name, value in fields.items()] + [job_id])

    def add_event(
        self, job_id: str, event: str, detail: str = "", *, code: int | None = None
    ) -> None:
        """Append an event to a job's history."""
        with self._write():
            self._event(job_id, event, None, code, detail)

    def claim_owners(self) -> set[str]:
        """The runners holding a claim or a ``preparing`` mark."""
        rows = self._db.execute(
            "SELECT DISTINCT COALESCE(owner, '') FROM jobs WHERE state = ?"
            " UNION SELECT DISTINCT preparing FROM jobs WHERE preparing IS NOT NULL",
            (JobState.SENDING.value,)).fetchall()
        return {row[0] for row in rows}

    def recover_sending(self, *, owners: Iterable[str] | None = None,
                        lease_ended_by: datetime | None = None) -> list[str]:
        """Return jobs left in ``sending`` to ``queued``, saying so in their history; those
        whose lease ended while their message was being handed over become ``unconfirmed``."""
        sql = f"SELECT id, {_HANDED_OVER} AS handed FROM jobs j WHERE state = ?"
        args: list[object] = [HANDING_OVER, JobState.SENDING.value]
        if owners is not None:
            wanted = list(owners)
            if not wanted:
                return []
            sql += f" AND COALESCE(owner, '') IN ({','.join('?' * len(wanted))})"
            args.extend(wanted)
        if lease_ended_by is not None:
            sql += " AND (lease_until IS NULL OR lease_until <= ?)"
            args.append(ts(lease_ended_by))
        with self._write():
            rows = self._db.execute(sql, args).fetchall()
            stamp = ts(self._clock())
            for row in rows:
                # Only a lease that ran out is judged by the mark: a runner known to be gone
                # (its lock is free) is recovered as one host always has (at least once).
                if row["handed"] and lease_ended_by is not None:
                    state, code, detail = (JobState.UNCONFIRMED, codes.UNCONFIRMED,
                                           UNCONFIRMED_DETAIL)
                else:
                    state, code, detail = JobState.QUEUED, None, REQUEUED_DETAIL
                self._db.execute(
                    "UPDATE jobs SET state = ?, code = COALESCE(?, code), updated = ?,"
                    " owner = NULL, lease_until = NULL WHERE id = ?",
                    (state.value, code, stamp, row["id"]))
                self._event(row["id"], "recovered", state, code, detail)
        return [row["id"] for row in rows]

    def recover_preparing(self, *, owners: Iterable[str] | None = None) -> list[str]:
        """Clear the ``preparing`` marks of ``owners`` (every mark when None)."""
        sql, args = "SELECT id FROM jobs WHERE preparing IS NOT NULL", []
        if owners is not None:
            args = list(owners)
            if not args:
                return []
            sql += f" AND preparing IN ({','.join('?' * len(args))})"
        with self._write():
            ids = [row["id"] for row in self._db.execute(sql, args)]
            self._db.executemany("UPDATE jobs SET preparing = NULL WHERE id = ?",
                                 [(job_id,) for job_id in ids])
        return ids

    def sent_before(self, before: datetime, *, limit: int = 500) -> list[Job]:
        """Jobs in ``sent`` last changed before ``before``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE state = ? AND updated < ? ORDER BY updated LIMIT ?",
            (JobState.SENT.value, ts(before), limit))
        return [job_from(row) for row in rows]

    def to_notify(self, states: Iterable[JobState], *, limit: int = 500) -> list[Job]:
        """Jobs whose outcome has not been told to their ``notify`` address yet."""
        wanted = [JobState(s).value for s in states]
        if not wanted:
            return []
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE notify <> '' AND state IN ({','.join('?' * len(wanted))})"
            " AND notified <> state || ':' || COALESCE(code, '') ORDER BY updated LIMIT ?",
            (*wanted, limit))
        return [job_from(row) for row in rows]

    def purge(self, before: datetime) -> list[str]:
        """Delete finished jobs last changed before ``before``, with their history and
        reports (unmatched reports received before ``before`` too)."""
        finished = sorted(state.value for state in FINISHED_STATES)
        with self._write():
            ids = [
                row["id"]
                for row in self._db.execute(
                    f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(finished))}) "
                    "AND updated < ?",
                    (*finished, ts(before)),
                )
            ]
            for job_id in ids:
                self._db.execute("DELETE FROM history WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM reports WHERE job_id = ?", (job_id,))
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._db.execute("DELETE FROM reports WHERE job_id IS NULL AND received < ?",
                             (ts(before),))
        return ids

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
