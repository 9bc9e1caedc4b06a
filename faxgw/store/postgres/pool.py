"""The connections of one process to one database: a small pool, shared.

The job store, its reports and the documents table of a process draw their connections from
one :class:`psycopg_pool.ConnectionPool` per database (connection string, password and CA
file): a call takes a connection for as long as it runs and gives it back, so the web
console's threads, the intake's thread and the worker's event loop each get a connection of
their own at the same moment, and a process holds a handful of connections however many
parts use the database. The pool is opened by its first user and closed (its connections
and its worker threads with it) when its last user closes.

Pooled connections carry no session settings: each call may get any of them. What needs a
session of its own (the turns' advisory locks, the ``LISTEN`` of the wake-ups) keeps a
connection of its own (:mod:`~faxgw.store.postgres.cluster`,
:mod:`~faxgw.store.postgres.wakeups`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from .connect import CONNECT_TIMEOUT, connect, connection_kwargs

Connection = psycopg.Connection[dict[str, Any]]

#: Connections kept open while the process is idle: the next call needs no new one.
POOL_MIN = 1
#: Connections at most: one per thread using the database at the same moment (the worker,
#: the intake, a few console requests); a further caller waits for one to come back.
POOL_MAX = 4
#: How long a caller waits for a connection (none free, or the database out of reach).
POOL_WAIT_SECONDS = float(CONNECT_TIMEOUT)

_Key = tuple[str, str | None, str | None]


@dataclass
class _Shared:
    pool: ConnectionPool[Connection]
    users: int


_pools: dict[_Key, _Shared] = {}
_lock = threading.Lock()


class PooledConnections:
    """A user's share of the process's pool for one database.

    Opening the first share of a database connects once on its own first: a database out of
    reach is a StoreError at once, saying why (the pool would only wait and time out)."""

    def __init__(self, conninfo: str, *, password: str | None = None,
                 ca_file: Path | None = None) -> None:
        self._key: _Key = (conninfo, password, None if ca_file is None else str(ca_file))
        self._pool: ConnectionPool[Connection] | None = _share(self._key, ca_file)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection of the pool, for this caller alone until the block ends.

        ``psycopg_pool.PoolTimeout`` (an OperationalError) when none comes within
        :data:`POOL_WAIT_SECONDS`."""
        pool = self._pool
        if pool is None:
            raise psycopg.OperationalError("the connections were closed")
        with pool.connection(timeout=POOL_WAIT_SECONDS) as db:
            yield db

    def lost(self) -> None:
        """A connection of the pool ended: the server may have ended the idle ones too (a
        restart, a failover). Each idle one is tried and replaced when it is gone, so that
        the call tried once more gets a working one."""
        if self._pool is not None:
            self._pool.check()

    def close(self) -> None:
        """Give the share back: the last one closes the pool (idempotent)."""
        if self._pool is not None:
            self._pool = None
            _unshare(self._key)


def _share(key: _Key, ca_file: Path | None) -> ConnectionPool[Connection]:
    conninfo, password, _ = key
    with _lock:
        if (shared := _pools.get(key)) is not None:
            shared.users += 1
            return shared.pool
    # Once, to say why the database cannot be reached (raises StoreError); outside the lock,
    # so that a database out of reach holds up no other.
    connect(conninfo, password=password, ca_file=ca_file).close()
    with _lock:
        if (shared := _pools.get(key)) is None:
            pool: ConnectionPool[Connection] = ConnectionPool(
                conninfo, kwargs=connection_kwargs(password, ca_file), min_size=POOL_MIN,
                max_size=POOL_MAX, timeout=POOL_WAIT_SECONDS, name="faxgw",
                # One thread opens the pool's connections: it has few to open.
                num_workers=1, open=False)
            # Opened here, not by the constructor (whose implicit open is deprecated); the
            # first connection is made in the background.
            pool.open()
            shared = _pools[key] = _Shared(pool, 0)
        shared.users += 1
        return shared.pool


def _unshare(key: _Key) -> None:
    with _lock:
        shared = _pools[key]
        shared.users -= 1
        if shared.users:
            return
        del _pools[key]
    # Outside the lock: closing waits for the pool's threads to end.
    shared.pool.close()
