"""The PostgreSQL job store: one record of truth shared by gateways on several hosts.

Every write is one short transaction (connections are in autocommit mode between them), so
no transaction stays open while a fax is being sent. Each call takes a connection of the
process's pool for its database (:mod:`~faxgw.store.postgres.pool`) for as long as it runs:
the store may be used from several threads at once. A claim reads the due jobs with ``SELECT …
FOR UPDATE SKIP LOCKED`` and marks them in the same transaction: two runners claiming at once
each get other jobs, and neither waits for the other. Outcomes lock the job's row first
(``FOR UPDATE``), so the check of its state and owner and the change are one step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ...domain.errors import JobNotFoundError, JobStateError, StoreError
from ...domain.jobs import (
    UPDATABLE,
    HistoryEvent,
    Job,
    JobState,
    can_transition,
    utcnow,
)
from ...ports import JobStore
from .cluster import PostgresCoordination
from .connection import Connection
from .housekeeping import DATABASE_NOW, PostgresHousekeeping
from .reports import PostgresReports
from .rows import (
    EVENT_INSERT,
    INSERT_COLUMNS,
    LOCK_IN_ORDER,
    column,
    event_from,
    insert_values,
    job_from,
    sender_key,
    utc,
)
from .schema import check
from .status import database_status

_INSERT = (f"INSERT INTO jobs ({', '.join(INSERT_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(INSERT_COLUMNS))})")
_SENDING = JobState.SENDING.value


class PostgresJobStore(PostgresHousekeeping, PostgresReports, JobStore):
    """Jobs, history and reports in PostgreSQL, shared by runners on any number of hosts.

    ``conninfo`` is a libpq URL or ``key=value`` string without a password: ``password`` is
    handed over separately (or libpq reads ``~/.pgpass``); ``ca_file`` makes the connection
    ``sslmode=verify-full`` against that CA. The schema must be at this faxgw's version
    (:func:`~faxgw.store.postgres.schema.migrate`, ``faxgw store migrate``).

    **Two clocks.** ``clock`` is this host's (the engine's): the store's stamps (``updated``,
    a history event's time) are read on it, and the times a caller passes are on it. Leases
    are timed on the database's clock, the one clock every host shares, however far the
    hosts' clocks are apart: a lease is written as the database's ``now()`` plus its length
    (``lease_until`` minus the caller's ``now``, or minus ``clock()`` when the call has no
    ``now``), and a lease has ended when the database's ``now()`` has reached it (a
    ``lease_ended_by`` is moved by its distance from ``clock()``). So a host whose clock runs
    ahead never takes back a claim still held, and one whose clock runs behind never holds a
    claim longer than its lease. ``database_clock`` stands in for the database's clock: None
    (the default) is its own ``now()``; a test gives its fake clock for both, so that
    advancing it ends leases and every time is exactly the one it set (one host, one clock,
    as on SQLite).
    """

    def __init__(self, conninfo: str, *, clock: Callable[[], datetime] = utcnow,
                 database_clock: Callable[[], datetime] | None = None,
                 password: str | None = None, ca_file: Path | None = None) -> None:
        super().__init__(conninfo, password=password, ca_file=ca_file)
        self._clock = clock
        self._database_clock = database_clock
        self._coordinations: list[PostgresCoordination] = []
        try:
            self._read(lambda db: check(db, self.where))
        except BaseException:
            self.close()
            raise

    # -- reading -------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id, or a unique prefix of it."""
        return self._read(lambda db: self._find(db, job_id, lock=False))

    @staticmethod
    def _find(db: Connection, job_id: str, *, lock: bool) -> Job:
        """The job by id or unique prefix; ``lock`` holds its row until the transaction ends."""
        suffix = " FOR UPDATE" if lock else ""
        row = db.execute("SELECT * FROM jobs WHERE id = %s" + suffix, (job_id,)).fetchone()
        if row is None and job_id:
            # starts_with compares characters: a "%" or "_" asked for is itself, never a
            # LIKE wildcard.
            rows = db.execute("SELECT * FROM jobs WHERE starts_with(id, %s) ORDER BY id LIMIT 2"
                              + suffix, (job_id,)).fetchall()
            if len(rows) > 1:
                raise JobNotFoundError(f"job {job_id!r} is ambiguous: give more of its id")
            row = rows[0] if rows else None
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job_from(row)

    def exists(self, job_id: str) -> bool:
        """Whether a job with exactly this id is stored."""
        return bool(self._rows("SELECT 1 FROM jobs WHERE id = %s", (job_id,)))

    def unknown(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` with no job here (one query, the ids as one array)."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return set()
        rows = self._rows("SELECT id FROM jobs WHERE id = ANY(%s::text[])", (wanted,))
        return set(wanted) - {row["id"] for row in rows}

    def list_jobs(
        self, states: Iterable[JobState] | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally only in the given states."""
        query, args = "SELECT * FROM jobs", list[object]()
        if states is not None:
            query += " WHERE state = ANY(%s::text[])"
            args.append([JobState(s).value for s in states])
        query += " ORDER BY created DESC, id DESC"
        if limit is not None:
            query += " LIMIT %s"
            args.append(limit)
        return [job_from(row) for row in self._rows(query, args)]

    def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history, oldest first."""
        rows = self._rows("SELECT * FROM history WHERE job_id = %s ORDER BY seq", (job_id,))
        return [event_from(row) for row in rows]

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        counts = dict.fromkeys(JobState, 0)
        for row in self._rows("SELECT state, count(*) AS n FROM jobs GROUP BY state"):
            counts[JobState(row["state"])] = row["n"]
        return counts

    def next_due_at(self) -> datetime | None:
        """When the earliest deferred job is due."""
        [row] = self._rows("SELECT min(next_attempt_at) AS due FROM jobs WHERE state = %s",
                           (JobState.DEFERRED.value,))
        return utc(row["due"])

    # -- writing -------------------------------------------------------------------------

    def _event(self, db: Connection, job_id: str, event: str, state: JobState | None,
               code: int | None, detail: str) -> None:
        db.execute(EVENT_INSERT, (job_id, self._clock(), event, state.value if state else None,
                            code, detail))

    def add(self, job: Job, *, detail: str = "") -> None:
        """Insert a new job with an ``accepted`` event."""
        self.add_all([(job, detail)])

    def add_all(self, jobs: Sequence[tuple[Job, str]]) -> None:
        """Insert new jobs with their ``accepted`` events, all in one transaction (one round
        trip to the server for the jobs, one for their events)."""
        if not jobs:
            return

        def work(db: Connection) -> None:
            stamp = self._clock()
            try:
                with db.cursor() as cursor:
                    cursor.executemany(_INSERT, [insert_values(job, stamp) for job, _ in jobs])
            except psycopg.errors.UniqueViolation as exc:
                if len(jobs) == 1:
                    raise StoreError(f"job {jobs[0][0].id} is already stored") from None
                raise StoreError(f"one of {len(jobs)} jobs is already stored "
                                 f"({exc.diag.message_detail}); none was stored") from None
            with db.cursor() as cursor:
                cursor.executemany(EVENT_INSERT, [
                    (job.id, stamp, "accepted", job.state.value, job.code, detail)
                    for job, detail in jobs])

        self._transact(work)

    def claim_due(
        self, now: datetime, limit: int, *, owner: str, lease_until: datetime,
        exclude_senders: Iterable[str] = (),
    ) -> list[Job]:
        """Move due jobs to ``sending`` for ``owner`` and return them, oldest first.

        The lease is the database's ``now()`` plus ``lease_until - now`` (see the class).
        Rows another runner is claiming this very moment are skipped, not waited for."""
        excluded = [sender_key(sender) for sender in exclude_senders]
        self._lease = lease_until - now
        database_now = self._database_now()

        def work(db: Connection) -> list[Job]:
            # The due time is compared with the caller's ``now``, not the database's: it is
            # a time a host computed on its own clock (a backoff), read again by hosts
            # (next_due_at, the expiry rules), and it only says when to try again, never who
            # may send: a host whose clock is off retries a little early or late, and the
            # claim below still gives each job to one runner.
            # The lease is worked out with the rows (one ``now()`` per transaction: the same
            # for every job claimed), so that the claim stays two statements.
            rows = db.execute(
                f"SELECT *, {DATABASE_NOW} + %s AS lease FROM jobs"
                " WHERE state IN ('queued', 'deferred')"
                " AND (state = 'queued' OR next_attempt_at <= %s) AND preparing IS NULL"
                " AND sender_key <> ALL(%s::text[])"
                " ORDER BY created, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (database_now, lease_until - now, now, excluded, limit)).fetchall()
            jobs = [job_from(row) for row in rows]
            if not jobs:
                return jobs
            stamp, lease = self._clock(), utc(rows[0]["lease"])
            db.execute("UPDATE jobs SET state = %s, updated = %s, owner = %s, lease_until = %s"
                       " WHERE id = ANY(%s::text[])",
                       (_SENDING, stamp, owner, lease, [job.id for job in jobs]))
            with db.cursor() as cursor:
                cursor.executemany(EVENT_INSERT, [
                    (job.id, stamp, "sending", _SENDING, None, f"attempt {job.attempts + 1}")
                    for job in jobs])
            for job in jobs:
                job.state, job.owner, job.lease_until = JobState.SENDING, owner, lease
                job.updated = stamp
            return jobs

        return self._transact(work)

    def renew(self, owner: str, job_ids: Iterable[str], lease_until: datetime) -> list[str]:
        """Extend ``owner``'s claims to the database's ``now()`` plus ``lease_until -
        clock()`` (see the class); the ids it still holds, in the order given."""
        wanted = list(job_ids)
        if not wanted:
            return []
        length, database_now = lease_until - self._clock(), self._database_now()
        rows = self._transact(lambda db: db.execute(
            f"UPDATE jobs SET lease_until = {DATABASE_NOW} + %s WHERE id IN (SELECT id"
            " FROM jobs WHERE id = ANY(%s::text[]) AND owner = %s AND state = %s"
            f" {LOCK_IN_ORDER}) RETURNING id",
            (database_now, length, wanted, owner, _SENDING)).fetchall())
        held = {row["id"] for row in rows}
        return [job_id for job_id in dict.fromkeys(wanted) if job_id in held]

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
        _check_fields(updates)

        def work(db: Connection) -> Job:
            job = self._find(db, job_id, lock=True)
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
            moved = self._set(db, job.id, updates)
            self._event(db, job.id, event, target, code, detail)
            return moved

        return self._transact(work)

    def update(self, job_id: str, *, event: str = "", detail: str = "", **fields: object) -> Job:
        """Update columns of a job without a state change, optionally with an event."""
        _check_fields(fields)

        def work(db: Connection) -> Job:
            job = self._find(db, job_id, lock=True)
            fields["updated"] = self._clock()
            updated = self._set(db, job.id, fields)
            if event:
                self._event(db, job.id, event, None, None, detail)
            return updated

        return self._transact(work)

    @staticmethod
    def _set(db: Connection, job_id: str, fields: dict[str, object]) -> Job:
        """Set columns (names checked against UPDATABLE or set by the store itself)."""
        if "sender" in fields:
            fields["sender_key"] = sender_key(str(fields["sender"]))
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(name)) for name in fields)
        row = db.execute(
            sql.SQL("UPDATE jobs SET {} WHERE id = %s RETURNING *").format(assignments),
            [column(name, value) for name, value in fields.items()] + [job_id]).fetchone()
        assert row is not None, "the job's row is locked by this transaction"
        return job_from(row)

    def add_event(
        self, job_id: str, event: str, detail: str = "", *, code: int | None = None
    ) -> None:
        """Append an event to a job's history."""
        self._transact(lambda db: self._event(db, job_id, event, None, code, detail))

    def database_status(self) -> dict[str, Any]:
        """The database for the status sheet (:func:`~.status.database_status`): where it
        is, its schema, the hosts working on it, the jobs table's dead row versions."""
        return self._read(lambda db: database_status(db, self.where))

    def coordination(self, owner: str, *, window_seconds: float) -> PostgresCoordination:
        """What runner ``owner`` coordinates with the others through (mailbox slots and
        budgets of ``window_seconds``, turns, its heartbeat): a connection of its own,
        closed with the store."""
        made = PostgresCoordination(self._conninfo, owner=owner, window_seconds=window_seconds,
                                    password=self._password, ca_file=self._ca_file)
        self._coordinations.append(made)
        return made

    def close(self) -> None:
        """Close the database connections (the coordinations' too)."""
        for coordination in self._coordinations:
            coordination.close()
        super().close()


def _check_fields(fields: dict[str, object]) -> None:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise StoreError(f"unknown job fields: {', '.join(sorted(unknown))}")
