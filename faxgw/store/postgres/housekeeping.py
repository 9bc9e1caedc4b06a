"""The PostgreSQL store's housekeeping: who holds claims, taking back what stopped runners
held, what awaits a report or a notification, and the retention purge.

A mixin of :class:`~faxgw.store.postgres.store.PostgresJobStore` (the same connection and
transactions).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from ...domain import codes
from ...domain.cluster import HANDING_OVER, REQUEUED_DETAIL, UNCONFIRMED_DETAIL
from ...domain.jobs import FINISHED_STATES, Job, JobState
from ...ports import JobStore
from .cluster import PostgresCoordination
from .connection import Connection, StoreConnection
from .rows import EVENT_INSERT, LOCK_IN_ORDER, Row, job_from

_SENDING, _QUEUED = JobState.SENDING.value, JobState.QUEUED.value
_UNCONFIRMED = JobState.UNCONFIRMED.value
#: Whether job ``j`` was being handed over in its present claim: a mark after its last claim.
_HANDED_OVER = ("EXISTS (SELECT 1 FROM history h WHERE h.job_id = j.id AND h.event = %s"
                " AND h.seq > (SELECT max(s.seq) FROM history s WHERE s.job_id = j.id"
                " AND s.event = 'sending'))")
#: The database's time in a statement that times a lease: its ``now()``, or the time its
#: stand-in clock gave (one parameter, NULL for ``now()``: :meth:`~PostgresHousekeeping.
#: _database_now`).
DATABASE_NOW = "coalesce(%s::timestamptz, now())"
#: How long a runner's claims last, until its first claim says: ``[store] lease_seconds``'s
#: default.
DEFAULT_LEASE = timedelta(seconds=60)
#: The shortest silence of a runner's heartbeat that counts as its end, whatever the lease:
#: a service beats every 10 s, so three beats in a row were missed.
SILENT_AT_LEAST = timedelta(seconds=30)


class PostgresHousekeeping(StoreConnection, JobStore):
    """Claims and marks of runners that are gone, notifications due, the purge."""

    _clock: Callable[[], datetime]
    _database_clock: Callable[[], datetime] | None
    _coordinations: list[PostgresCoordination]
    #: The length of the leases this store's runner gives its claims (its last claim's).
    _lease: timedelta = DEFAULT_LEASE

    def _database_now(self) -> datetime | None:
        """The parameter of :data:`DATABASE_NOW`: None (the database's ``now()``), or the
        time of the clock that stands in for it."""
        return None if self._database_clock is None else self._database_clock()

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
        whose lease ended while their message was being handed over become ``unconfirmed``.

        A lease has ended by ``lease_ended_by`` when it is not after the database's
        ``now()`` moved by ``lease_ended_by - clock()``: a host that asks with its own
        clock's time, however far ahead that clock is, takes back only the claims whose lease
        ended by the database's clock."""
        query, args = ("SELECT id, " + _HANDED_OVER + " AS handed FROM jobs j WHERE state = %s",
                       list[object]([HANDING_OVER, _SENDING]))
        if owners is not None:
            wanted = list(owners)
            if not wanted:
                return []
            query += " AND coalesce(owner, '') = ANY(%s::text[])"
            args.append(wanted)
        if lease_ended_by is not None:
            query += f" AND (lease_until IS NULL OR lease_until <= {DATABASE_NOW} + %s)"
            args.extend([self._database_now(), lease_ended_by - self._clock()])

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
        """Clear the ``preparing`` marks of ``owners`` (every mark when None).

        With ``owners`` given, the marks of runners on other hosts whose heartbeat stopped
        are cleared too: such a runner cannot be asked through its lock on this host, so
        its row in ``hosts`` says whether it is alive, and one silent for longer than a lease
        (and at least :data:`SILENT_AT_LEAST`, by the database's clock) has ended. Its jobs
        are then sent by whichever host claims them (rendered when they are sent). A mark
        of a runner without a row (a ``faxgw submit``, which has no heartbeat) waits for its
        own host to judge it by its lock."""
        query, args = "SELECT id FROM jobs WHERE preparing IS NOT NULL", list[object]()
        if owners is not None:
            # The runners of this store's coordinations are this process's own: alive.
            mine = [made.owner for made in self._coordinations]
            query += (" AND (preparing = ANY(%s::text[]) OR preparing IN (SELECT owner"
                      " FROM hosts WHERE host <> %s AND owner <> ALL(%s::text[])"
                      " AND last_seen < now() - %s))")
            args.extend([list(owners), socket.gethostname(), mine,
                         max(self._lease, SILENT_AT_LEAST)])
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
