"""The PostgreSQL store's housekeeping: who holds claims, taking back what stopped runners
held, what awaits a report or a notification, and the retention purge.

A mixin of :class:`~faxgw.store.postgres.store.PostgresJobStore` (the same connection and
transactions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from ...domain import codes
from ...domain.cluster import HANDING_OVER, REQUEUED_DETAIL, UNCONFIRMED_DETAIL
from ...domain.jobs import FINISHED_STATES, Job, JobState
from ...ports import JobStore
from .connection import Connection, StoreConnection
from .rows import EVENT_INSERT, LOCK_IN_ORDER, Row, job_from

_SENDING, _QUEUED = JobState.SENDING.value, JobState.QUEUED.value
_UNCONFIRMED = JobState.UNCONFIRMED.value
#: Whether job ``j`` was being handed over in its present claim: a mark after its last claim.
_HANDED_OVER = ("EXISTS (SELECT 1 FROM history h WHERE h.job_id = j.id AND h.event = %s"
                " AND h.seq > (SELECT max(s.seq) FROM history s WHERE s.job_id = j.id"
                " AND s.event = 'sending'))")


class PostgresHousekeeping(StoreConnection, JobStore):
    """Claims and marks of runners that are gone, notifications due, the purge."""

    _clock: Callable[[], datetime]

    def claim_owners(self) -> set[str]:
        """The runners holding a claim or a ``preparing`` mark."""
        rows = self._rows(
            "SELECT DISTINCT coalesce(owner, '') AS owner FROM jobs WHERE state = %s"
            " UNION SELECT DISTINCT preparing FROM jobs WHERE preparing IS NOT NULL",
            (_SENDING,))
        return {row["owner"] for row in rows}

    def recover_sending(self, *, owners: Iterable[str] | None = None,
                        lease_ended_by: datetime | None = None) -> list[str]:
        """Return jobs left in ``sending`` to ``queued``, saying so in their history; those
        whose lease ended while their message was being handed over become ``unconfirmed``."""
        query, args = ("SELECT id, " + _HANDED_OVER + " AS handed FROM jobs j WHERE state = %s",
                       list[object]([HANDING_OVER, _SENDING]))
        if owners is not None:
            wanted = list(owners)
            if not wanted:
                return []
            query += " AND coalesce(owner, '') = ANY(%s::text[])"
            args.append(wanted)
        if lease_ended_by is not None:
            query += " AND (lease_until IS NULL OR lease_until <= %s)"
            args.append(lease_ended_by)

        def work(db: Connection) -> list[Row]:
            # Locked first: a runner recording an outcome now finishes it, and a job it
            # moved out of sending meanwhile is then no longer taken.
            rows = db.execute(f"{query} {LOCK_IN_ORDER}", args).fetchall()
            if not rows:
                return rows
            stamp = self._clock()
            # Only a lease that ran out is judged by the mark: a runner known to be gone (its
            # lock on this host is free) is recovered as one host always has (at least once).
            handed = {row["id"] for row in rows if row["handed"] and lease_ended_by is not None}
            requeued = [row["id"] for row in rows if row["id"] not in handed]
            db.execute("UPDATE jobs SET state = %s, updated = %s, owner = NULL,"
                       " lease_until = NULL WHERE id = ANY(%s::text[])",
                       (_QUEUED, stamp, requeued))
            db.execute("UPDATE jobs SET state = %s, code = %s, updated = %s, owner = NULL,"
                       " lease_until = NULL WHERE id = ANY(%s::text[])",
                       (_UNCONFIRMED, codes.UNCONFIRMED, stamp, sorted(handed)))
            with db.cursor() as cursor:
                cursor.executemany(EVENT_INSERT, [
                    (job_id, stamp, "recovered", _QUEUED, None, REQUEUED_DETAIL)
                    for job_id in requeued] + [
                    (job_id, stamp, "recovered", _UNCONFIRMED, codes.UNCONFIRMED,
                     UNCONFIRMED_DETAIL) for job_id in sorted(handed)])
            return rows

        return [row["id"] for row in self._transact(work)]

    def recover_preparing(self, *, owners: Iterable[str] | None = None) -> list[str]:
        """Clear the ``preparing`` marks of ``owners`` (every mark when None)."""
        query, args = "SELECT id FROM jobs WHERE preparing IS NOT NULL", []
        if owners is not None:
            wanted = list(owners)
            if not wanted:
                return []
            query += " AND preparing = ANY(%s::text[])"
            args.append(wanted)
        rows = self._transact(lambda db: db.execute(
            f"UPDATE jobs SET preparing = NULL WHERE id IN ({query} {LOCK_IN_ORDER})"
            " RETURNING id", args).fetchall())
        return [row["id"] for row in rows]

    def sent_before(self, before: datetime, *, limit: int = 500) -> list[Job]:
        """Jobs in ``sent`` last changed before ``before``, oldest first."""
        rows = self._rows("SELECT * FROM jobs WHERE state = %s AND updated < %s"
                          " ORDER BY updated, id LIMIT %s",
                          (JobState.SENT.value, before, limit))
        return [job_from(row) for row in rows]

    def to_notify(self, states: Iterable[JobState], *, limit: int = 500) -> list[Job]:
        """Jobs whose outcome has not been told to their ``notify`` address yet."""
        wanted = [JobState(s).value for s in states]
        if not wanted:
            return []
        rows = self._rows(
            "SELECT * FROM jobs WHERE notify <> '' AND state = ANY(%s::text[])"
            " AND notified <> state || ':' || coalesce(code::text, '')"
            " ORDER BY updated, id LIMIT %s", (wanted, limit))
        return [job_from(row) for row in rows]

    def purge(self, before: datetime) -> list[str]:
        """Delete finished jobs last changed before ``before``, with their history and
        reports (unmatched reports received before ``before`` too)."""
        finished = sorted(state.value for state in FINISHED_STATES)

        def work(db: Connection) -> list[str]:
            # SKIP LOCKED: a job someone is changing now (a retry) is left to the next purge,
            # and purges on two hosts at once share the work instead of waiting for each other.
            ids = [row["id"] for row in db.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = ANY(%s::text[])"
                " AND updated < %s FOR UPDATE SKIP LOCKED) RETURNING id",
                (finished, before)).fetchall()]
            if ids:
                db.execute("DELETE FROM history WHERE job_id = ANY(%s::text[])", (ids,))
                db.execute("DELETE FROM reports WHERE job_id = ANY(%s::text[])", (ids,))
            db.execute("DELETE FROM reports WHERE seq IN (SELECT seq FROM reports"
                       " WHERE job_id IS NULL AND received < %s FOR UPDATE SKIP LOCKED)",
                       (before,))
            return ids

        return self._transact(work)
