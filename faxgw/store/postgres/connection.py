"""The job store's own connection: reads and transactions that outlive a dropped connection.

The server may end a connection at any moment (a restart, a failover, an administrator's
``pg_terminate_backend``). The job store notices it at its next statement, and connects again
and tries once more wherever that cannot do anything twice:

* a **read** is simply read again;
* a **transaction** that failed before its ``COMMIT`` was sent was rolled back by the server
  with the connection: it is run again from its start on the new connection;
* a transaction whose ``COMMIT`` itself failed may have been committed or not: it is never
  run again; the caller gets a :class:`~faxgw.domain.errors.StoreError` saying so.

Any other driver error (a constraint, a statement timeout) is not retried: it comes back as a
StoreError naming the database, never its password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from ...domain.errors import StoreError
from .connect import connect, describe, error_text, scrub
from .rows import Row

log = logging.getLogger("faxgw.store")

Connection = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")


class StoreConnection:
    """One connection to the store's database, opened again when the server dropped it."""

    def __init__(self, conninfo: str, *, password: str | None = None,
                 ca_file: Path | None = None) -> None:
        self.where = describe(conninfo)
        self._conninfo, self._password, self._ca_file = conninfo, password, ca_file
        self._closed = False
        self._db: Connection = connect(conninfo, password=password, ca_file=ca_file)

    @property
    def _conn(self) -> Connection:
        """The connection, opened again when the server dropped it; only ever between
        transactions, never inside one."""
        if self._db.broken and not self._closed:
            self._db.close()
            self._db = connect(self._conninfo, password=self._password, ca_file=self._ca_file)
        return self._db

    def _error(self, exc: psycopg.Error, note: str = "") -> StoreError:
        return StoreError(f"job store {self.where}: {note}"
                          f"{scrub(error_text(exc), self._password)}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors as StoreError, naming the database, never its password."""
        try:
            yield
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _lost(self, exc: psycopg.Error, attempt: int) -> bool:
        """Whether ``exc`` is the connection's end, to be tried once more on a new one."""
        if attempt > 1 or self._closed or not isinstance(exc, psycopg.OperationalError) \
                or not self._db.broken:
            return False
        log.info("the job store's database connection was lost (%s): connecting again",
                 scrub(error_text(exc), self._password))
        return True

    def _read(self, work: Callable[[Connection], T]) -> T:
        """``work`` (reads only) on the connection, once more on a new one when it dropped."""
        for attempt in (1, 2):
            try:
                return work(self._conn)
            except psycopg.Error as exc:
                if not self._lost(exc, attempt):
                    raise self._error(exc) from None
        raise AssertionError("unreachable")

    def _transact(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction: committed at its end, rolled back on any error; run
        once more on a new connection when the connection dropped before the commit."""
        for attempt in (1, 2):
            committing = False
            try:
                db = self._conn
                with db.transaction():
                    result = work(db)
                    committing = True  # the block's end sends the COMMIT
                return result
            except psycopg.Error as exc:
                if committing and isinstance(exc, psycopg.OperationalError):
                    raise self._error(exc, "the connection ended while committing (the change "
                                      "may or may not have been written): ") from None
                if not self._lost(exc, attempt):
                    raise self._error(exc) from None
        raise AssertionError("unreachable")

    def _rows(self, query: str, args: Iterable[object] = ()) -> list[Row]:
        """The rows of one query."""
        values = tuple(args)
        return self._read(lambda db: db.execute(query, values).fetchall())

    def close(self) -> None:
        """Close the connection."""
        self._closed = True
        self._db.close()
