"""Reads and transactions that outlive a dropped connection: the one place that decides what
is tried again.

The server may end a connection at any moment (a restart, a failover, an administrator's
``pg_terminate_backend``). A call notices it at its next statement, and gets a new connection
and tries once more wherever that cannot do anything twice:

* a **read** is simply read again;
* a **transaction** that failed before its ``COMMIT`` was sent was rolled back by the server
  with the connection: it is run again from its start on the new connection;
* a transaction whose ``COMMIT`` itself failed may have been committed or not: it is never
  run again; the caller gets a :class:`~faxgw.domain.errors.StoreError` saying so.

Any other driver error (a constraint, a statement timeout) is not retried: it comes back as a
StoreError naming the database, never its password.

Where the connections come from is the caller's choice (a :class:`ConnectionSource`): the
process's pool (:class:`~faxgw.store.postgres.pool.PooledConnections`: the job store, its
reports, the documents table) or one connection of its own (:class:`DedicatedConnection`:
the coordination, whose advisory locks belong to one session).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg

from ...domain.errors import StoreError
from .connect import connect, describe, error_text, scrub
from .pool import PooledConnections
from .rows import Row

log = logging.getLogger("faxgw.store")

Connection = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")


class ConnectionSource(Protocol):
    """Where a :class:`Database` gets its connections."""

    def connection(self) -> AbstractContextManager[Connection]:
        """A connection for one call (StoreError or a driver error when none can be had)."""

    def lost(self) -> None:
        """A connection ended under a call: the next one must be a working one."""

    def close(self) -> None:
        """Close the connections."""


class DedicatedConnection:
    """One connection of its own, opened when first needed and again after the server ended
    it; ``prepare`` runs on each new one before its first use. For one thread at a time."""

    def __init__(self, conninfo: str, *, password: str | None = None,
                 ca_file: Path | None = None,
                 prepare: Callable[[Connection], None] | None = None) -> None:
        self._conninfo, self._password, self._ca_file = conninfo, password, ca_file
        self._prepare = prepare
        self._db: Connection | None = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """The connection; a new one when there is none or the server ended it."""
        if self._db is None or self._db.closed:
            self._open()
        assert self._db is not None
        yield self._db

    def _open(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None  # a failed connect is tried again at the next call
        db = connect(self._conninfo, password=self._password, ca_file=self._ca_file)
        try:
            if self._prepare is not None:
                self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def lost(self) -> None:
        """Nothing to do: the ended connection is replaced when next asked for."""

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._db is not None:
            self._db.close()
            self._db = None


class Database:
    """Reads and transactions on connections from ``source``, with the rule above.

    ``prefix`` begins every error message (it names the database, never its password);
    ``what`` names the connections' user in the log."""

    def __init__(self, source: ConnectionSource, *, where: str, password: str | None,
                 prefix: str, what: str) -> None:
        self.source = source
        self.where = where
        self._password, self._prefix, self._what = password, prefix, what

    def error(self, exc: psycopg.Error, note: str = "") -> StoreError:
        """``exc`` as a StoreError naming the database, never its password."""
        return StoreError(f"{self._prefix}{note}{scrub(error_text(exc), self._password)}")

    def _lost(self, exc: psycopg.Error, db: Connection | None, attempt: int) -> bool:
        """Whether ``exc`` is the end of the connection ``db``, to be tried once more."""
        if attempt > 1 or db is None or not isinstance(exc, psycopg.OperationalError) \
                or not db.closed:
            return False
        log.info("the %s's database connection was lost (%s): connecting again", self._what,
                 scrub(error_text(exc), self._password))
        self.source.lost()
        return True

    def read(self, work: Callable[[Connection], T]) -> T:
        """``work`` (reads only, or statements that may run twice) on a connection; once
        more on a new one when the connection ended."""
        for attempt in (1, 2):
            db: Connection | None = None
            try:
                with self.source.connection() as db:
                    return work(db)
            except psycopg.Error as exc:
                if not self._lost(exc, db, attempt):
                    raise self.error(exc) from None
        raise AssertionError("unreachable")

    def transact(self, work: Callable[[Connection], T], *, pipelined: bool = False) -> T:
        """``work`` in one transaction: committed at its end, rolled back on any error; run
        once more on a new connection when the connection ended before the commit.

        ``pipelined``: the statements go out without waiting for each answer (one
        pipeline, the ``COMMIT`` in it)."""
        for attempt in (1, 2):
            db: Connection | None = None
            committing = False
            try:
                with self.source.connection() as db:
                    pipeline = db.pipeline() if pipelined else nullcontext()
                    with pipeline, db.transaction():
                        result = work(db)
                        committing = True  # the blocks' end sends the COMMIT
                    return result
            except psycopg.Error as exc:
                if committing and isinstance(exc, psycopg.OperationalError):
                    raise self.error(exc, "the connection ended while committing (the change "
                                     "may or may not have been written): ") from None
                if not self._lost(exc, db, attempt):
                    raise self.error(exc) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the source's connections."""
        self.source.close()


class StoreConnection:
    """The job store's connections: the process's pool for its database."""

    def __init__(self, conninfo: str, *, password: str | None = None,
                 ca_file: Path | None = None) -> None:
        self.where = describe(conninfo)
        self._conninfo, self._password, self._ca_file = conninfo, password, ca_file
        self._database = Database(
            PooledConnections(conninfo, password=password, ca_file=ca_file), where=self.where,
            password=password, prefix=f"job store {self.where}: ", what="job store")

    def _error(self, exc: psycopg.Error, note: str = "") -> StoreError:
        return self._database.error(exc, note)

    def _read(self, work: Callable[[Connection], T]) -> T:
        """``work`` (reads only) on a connection, once more on a new one when it dropped."""
        return self._database.read(work)

    def _transact(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction (see :meth:`Database.transact`)."""
        return self._database.transact(work)

    def _rows(self, query: str, args: Iterable[object] = ()) -> list[Row]:
        """The rows of one query."""
        values = tuple(args)
        return self._read(lambda db: db.execute(query, values).fetchall())

    def close(self) -> None:
        """Give the connections back (the last user of the pool closes it)."""
        self._database.close()
