"""What gateways on several hosts coordinate through in PostgreSQL, beside the jobs.

One connection of its own per runner (autocommit), apart from the store's pool: the turns
are session advisory locks, which belong to the one session that took them (a pooled
connection would hand them to whichever call gets it next, and a lock taken on one pooled
connection could not be released or even seen from another); the slots, budgets and
heartbeats go over it too, written without waiting for the WAL flush (see
:meth:`PostgresCoordination._prepare`), which the job store's writes must never be:

* **Connection slots** of a sending mailbox are rows of ``mailbox_slots``, one per (mailbox,
  slot), held by a runner for :data:`SLOT_LEASE_SECONDS` and renewed while its session is
  open. They are data, not part of a connection: when the database connection drops, the
  runner's sessions keep their slots and nobody else can take them, for as long as the lease
  lasts. A runner gives a slot back when its session closes, and all of them when it stops;
  a killed host's slots are free once their lease ends. The runner's own deadline for a slot
  is measured on its monotonic clock from *before* the statement that renewed it, so it
  always ends before the database's ``until``: the engine stops using a slot in time
  (:mod:`faxgw.engine.limits`).
* **The message budget** of a mailbox is a sliding window of rows in ``mailbox_sends``: a
  reservation is counted from the moment it is made, and from the server's answer once
  there is one; a reservation never answered (its runner died) ages out after
  :data:`UNANSWERED_SECONDS`. Reservations of one mailbox are serialised by a transaction
  advisory lock, so two hosts never both take the last place.
* **Turns** (:class:`~faxgw.domain.cluster.Singletons`): a session advisory lock per name.
  Lock keys include the schema's name, so that faxgw installations in two schemas of one
  database never share a lock.
* **Hosts**: each runner writes its owner id, host name and a heartbeat into ``hosts``.
* **Wake-ups**: a ``LISTEN`` connection of its own (:mod:`~faxgw.store.postgres.wakeups`).

Session advisory locks do not survive a connection pooler in transaction mode (PgBouncer):
faxgw connects to PostgreSQL itself or through session pooling. When the connection drops,
the turns are gone: the next call connects again and takes back what it held, logging what
another runner took meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ...domain.errors import StoreError
from .connect import describe
from .connection import Connection, Database, DedicatedConnection
from .rows import Row, utc
from .wakeups import listen

log = logging.getLogger("faxgw.store")

T = TypeVar("T")

#: A reservation whose runner never reported the answer stops counting after this long.
UNANSWERED_SECONDS = 600.0
#: Host rows not heard from for this long are removed (a host taken out of service).
FORGET_HOSTS_SECONDS = 7 * 86400.0
#: How long a connection slot stays a runner's without being renewed: how long a killed
#: host's slots stay taken, and how long a runner's sessions outlast a database out of reach.
SLOT_LEASE_SECONDS = 30.0

_LOCK = "pg_try_advisory_lock(hashtext(current_schema() || %s), %s)"


class PostgresCoordination:
    """Mailbox slots and budgets, turns and the hosts table, for one runner (``owner``).

    Implements :class:`~faxgw.domain.cluster.MailboxLimits` and
    :class:`~faxgw.domain.cluster.Singletons`; every call is short and never waits for
    another runner (a busy slot or turn is a "no", to be asked again)."""

    def __init__(self, conninfo: str, *, owner: str, window_seconds: float,
                 password: str | None = None, ca_file: Path | None = None,
                 slot_lease_seconds: float = SLOT_LEASE_SECONDS) -> None:
        self.where = describe(conninfo)
        self.owner = owner
        self.window_seconds = window_seconds
        self.slot_lease_seconds = slot_lease_seconds
        self._conninfo, self._password, self._ca_file = conninfo, password, ca_file
        self._database = Database(
            DedicatedConnection(conninfo, password=password, ca_file=ca_file,
                                prepare=self._prepare),
            where=self.where, password=password, prefix=f"job store {self.where}: ",
            what="coordination")
        #: Advisory locks held (turns): (key text, number).
        self._held: set[tuple[str, int]] = set()
        #: Connection slots held, (mailbox, slot), with the moment (this process's monotonic
        #: clock) until which they are surely still this runner's; 0 once lost. A lost slot
        #: stays here until its session gives it back: its number is not this runner's to
        #: take again while that session may be open.
        self._slots: dict[tuple[str, int], float] = {}
        #: When the slots were last renewed, or that was tried (monotonic).
        self._renewed = float("-inf")
        #: Reservations not answered yet, by mailbox (their row ids, oldest first).
        self._reserved: dict[str, deque[int]] = {}
        self._closed = False

    # -- the connection ------------------------------------------------------------------

    def _run(self, work: Callable[[Connection], T], *, transaction: bool = False) -> T:
        """``work`` on the connection (in one transaction when ``transaction``); once more
        on a new one (which first takes back the locks held) when the server dropped it
        (:class:`~faxgw.store.postgres.connection.Database`). Driver errors as StoreError,
        naming the database, never its password."""
        if self._closed:
            raise StoreError(f"job store {self.where}: the coordination is closed")
        if transaction:
            return self._database.transact(work)
        return self._database.read(work)

    def _prepare(self, db: Connection) -> None:
        """A new connection, before its first use: its settings, and the locks held."""
        # Slots are rows, not locks: they outlive the connection (see the module's notes).
        # What this connection writes (message budgets, heartbeats) may be lost in a crash of
        # the database server without harm: a budget a few messages generous for a minute.
        # Not waiting for the WAL flush saves a disk flush per message.
        db.execute("SET synchronous_commit = off")
        # The reservations made on the old connection were committed: they stay counted
        # and age out; only the locks went with the connection.
        for key, number in sorted(self._held):
            row = db.execute(f"SELECT {_LOCK} AS got", (key, number)).fetchone()
            if row is None or not row["got"]:
                self._held.discard((key, number))
                log.warning("! lost %s #%d while the database connection was down: another "
                            "runner holds it now", key.lstrip(":"), number)

    # -- connection slots ----------------------------------------------------------------

    def take_slot(self, mailbox: str, slots: int) -> int | None:
        """Take a free one of ``mailbox``'s first ``slots`` slots; None when all are held.

        A slot is free when nobody holds it or its holder's lease ended (by the database's
        clock); the conditional upsert makes taking it one step, so two runners asking at
        once never both get it."""

        def work(db: Connection) -> int | None:
            for number in range(max(1, slots)):
                if (mailbox, number) in self._slots:
                    continue
                asked = time.monotonic()
                row = db.execute(
                    "INSERT INTO mailbox_slots AS held (mailbox, slot, owner, until)"
                    " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
                    " ON CONFLICT (mailbox, slot) DO UPDATE SET owner = excluded.owner,"
                    " until = excluded.until"
                    " WHERE held.until < now() OR held.owner = excluded.owner"
                    " RETURNING slot", (mailbox, number, self.owner, self.slot_lease_seconds),
                ).fetchone()
                if row is not None:
                    self._slots[mailbox, number] = asked + self.slot_lease_seconds
                    return number
            return None

        return self._run(work)

    def keep_slot(self, mailbox: str, slot: int) -> float:
        """Seconds for which ``slot`` is surely still this runner's (0 when it is lost).

        Every slot this runner holds is renewed at once (one statement) when the last
        renewal is a sixth of the lease old; a database out of reach renews nothing, and
        what is left of the lease is the answer (it is logged, not raised)."""
        if (mailbox, slot) not in self._slots:
            return 0.0
        now = time.monotonic()
        if now - self._renewed >= self.slot_lease_seconds / 6:
            # Tried at that pace whatever the outcome: a database out of reach is not asked
            # again at every look at a session (each try may wait for the connect timeout).
            self._renewed = now
            try:
                self._renew_slots(now)
            except StoreError as exc:
                log.warning("! connection slots not renewed (they last until their lease "
                            "ends): %s", exc)
        return max(0.0, self._slots.get((mailbox, slot), 0.0) - time.monotonic())

    def _renew_slots(self, asked: float) -> None:
        held = [key for key, until in self._slots.items() if until > 0]
        if not held:
            return

        def work(db: Connection) -> set[tuple[str, int]]:
            rows = db.execute(
                "UPDATE mailbox_slots SET until = now() + make_interval(secs => %s)"
                " WHERE owner = %s AND (mailbox, slot) IN (SELECT * FROM unnest("
                "%s::text[], %s::int[])) RETURNING mailbox, slot",
                (self.slot_lease_seconds, self.owner, [m for m, _ in held],
                 [n for _, n in held])).fetchall()
            return {(row["mailbox"], row["slot"]) for row in rows}

        renewed = self._run(work)
        for key in held:
            if key in renewed:
                self._slots[key] = asked + self.slot_lease_seconds
            elif key in self._slots:
                self._slots[key] = 0.0
                log.warning("! %s: connection slot %d was lost (its lease ended and another "
                            "runner took it)", key[0], key[1])

    def release_slot(self, mailbox: str, slot: int) -> None:
        """Give a slot back (one that was lost is only forgotten)."""
        until = self._slots.pop((mailbox, slot), None)
        if until is None or self._closed:
            return
        self._run(lambda db: db.execute(
            "DELETE FROM mailbox_slots WHERE mailbox = %s AND slot = %s AND owner = %s",
            (mailbox, slot, self.owner)))

    # -- the message budget --------------------------------------------------------------

    def reserve_message(self, mailbox: str, per_minute: int) -> float:
        """Reserve a place in ``mailbox``'s budget: 0 when reserved, else seconds to wait."""

        def work(db: Connection) -> tuple[float, int | None]:
            db.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || %s), 0)",
                       (f":budget:{mailbox}",))
            db.execute("DELETE FROM mailbox_sends WHERE mailbox = %s AND (answered AND"
                       " at <= now() - make_interval(secs => %s)"
                       " OR at <= now() - make_interval(secs => %s))",
                       (mailbox, self.window_seconds, UNANSWERED_SECONDS))
            row = db.execute(
                "SELECT count(*) AS n, extract(epoch FROM min(at) FILTER (WHERE answered)"
                " + make_interval(secs => %s) - now()) AS wait"
                " FROM mailbox_sends WHERE mailbox = %s",
                (self.window_seconds, mailbox)).fetchone()
            assert row is not None
            if row["n"] >= per_minute:
                # Every place under way (no answer to wait for yet): ask again soon.
                wait = float(row["wait"]) if row["wait"] is not None else 0.25
                return max(0.05, wait), None
            made = db.execute("INSERT INTO mailbox_sends (mailbox, at) VALUES (%s, now())"
                              " RETURNING id", (mailbox,)).fetchone()
            assert made is not None
            return 0.0, int(made["id"])

        wait, reservation = self._run(work, transaction=True)
        if reservation is not None:
            self._reserved.setdefault(mailbox, deque()).append(reservation)
        return wait

    def message_answered(self, mailbox: str) -> None:
        """A reserved message was answered: it counts from now."""
        waiting = self._reserved.get(mailbox)
        if not waiting:
            return
        reservation = waiting.popleft()
        self._run(lambda db: db.execute(
            "UPDATE mailbox_sends SET at = now(), answered = true WHERE id = %s",
            (reservation,)))

    # -- turns -----------------------------------------------------------------------------

    def take_turn(self, name: str) -> bool:
        """Whether this runner does ``name`` now (it keeps the turn once it has it)."""
        key = f":turn:{name}"

        def work(db: Connection) -> bool:
            # A connection opened again has taken the turn back, or found it taken.
            if (key, 0) in self._held:
                return True
            row = db.execute(f"SELECT {_LOCK} AS got", (key, 0)).fetchone()
            if row is not None and row["got"]:
                self._held.add((key, 0))
                return True
            return False

        return self._run(work)

    # -- hosts -----------------------------------------------------------------------------

    def beat(self) -> None:
        """Say this runner is alive (``hosts``: owner, host name, process, last heartbeat)."""

        def work(db: Connection) -> None:
            db.execute("INSERT INTO hosts (owner, host, pid) VALUES (%s, %s, %s)"
                       " ON CONFLICT (owner) DO UPDATE SET last_seen = now()",
                       (self.owner, socket.gethostname(), os.getpid()))
            db.execute("DELETE FROM hosts WHERE last_seen < now()"
                       " - make_interval(secs => %s)", (FORGET_HOSTS_SECONDS,))

        self._run(work, transaction=True)

    def leave(self) -> None:
        """This runner stops: its row goes."""
        self._run(lambda db: db.execute("DELETE FROM hosts WHERE owner = %s", (self.owner,)))

    async def listen(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``wake`` whenever a job becomes due on any host, until ``stop`` is set (on a
        connection of its own: :mod:`~faxgw.store.postgres.wakeups`)."""
        await listen(self._conninfo, wake, stop, password=self._password,
                     ca_file=self._ca_file)

    def close(self) -> None:
        """Give back the slots still held (their sessions are closed by now) and close the
        connection: every slot and turn it held is free for the others."""
        if self._slots and not self._closed:
            try:
                self._run(lambda db: db.execute(
                    "DELETE FROM mailbox_slots WHERE owner = %s", (self.owner,)))
            except StoreError as exc:  # they are free when their lease ends
                log.info("connection slots not given back: %s", exc)
        self._closed = True
        self._held.clear()
        self._slots.clear()
        self._database.close()


def hosts(db: Connection) -> list[Row]:
    """The runners that said they are alive, most recently heard from first, with the
    seconds since (by the database's clock)."""
    rows = db.execute("SELECT owner, host, pid, started, last_seen,"
                      " extract(epoch FROM now() - last_seen) AS silent FROM hosts"
                      " ORDER BY last_seen DESC, owner").fetchall()
    for row in rows:
        row["started"], row["last_seen"] = utc(row["started"]), utc(row["last_seen"])
        row["silent"] = float(row["silent"])
    return rows
