"""The pool of a process's connections to the store's database, on a real PostgreSQL: the job
store and the documents table share one pool; the store is used from several threads at once,
each call on a connection of its own; connections the server ended are replaced without an
error reaching the caller; and a closed store leaves no connection or thread behind.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from faxgw.domain.jobs import JobState
from faxgw.store.postgres import PostgresJobStore
from faxgw.store.postgres.documents import DocumentTable
from faxgw.store.postgres.pool import POOL_MAX, PooledConnections

from .conftest import FakeClock
from .test_store_postgres import (  # noqa: F401 - fixtures
    _job,
    migrated,
    pooled_backends,
    schema,
    store,
    terminate_pool,
)

THREADS = POOL_MAX


def _pool_threads() -> list[threading.Thread]:
    """The threads of the pools (named after them)."""
    return [thread for thread in threading.enumerate()
            if thread.name == "faxgw-scheduler" or thread.name.startswith("faxgw-worker-")]


def _pool_threads_settled(seconds: float = 5.0) -> list[threading.Thread]:
    """:func:`_pool_threads`, once those of pools closed by earlier tests have ended (a
    closed pool's threads may take a moment to go): the ones a test may count on."""
    deadline = time.monotonic() + seconds
    for thread in _pool_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    return _pool_threads()


def test_the_store_is_used_from_several_threads_at_once_each_call_on_its_own_connection(
        store: PostgresJobStore, clock: FakeClock) -> None:  # noqa: F811
    """As many calls at once as the pool has connections each get one of their own (all are
    inside their statement together), and jobs written and read from several threads at
    once are all there, each with its own history."""
    meeting = threading.Barrier(THREADS, timeout=30)

    def inside_together(db: psycopg.Connection[dict[str, object]]) -> int:
        row = db.execute("SELECT pg_backend_pid() AS pid").fetchone()
        meeting.wait()  # every caller holds its connection at this moment
        assert row is not None
        return int(str(row["pid"]))

    with ThreadPoolExecutor(THREADS) as threads:
        pids = list(threads.map(lambda _: store._read(inside_together), range(THREADS)))
    assert len(set(pids)) == THREADS

    def work(n: int) -> list[str]:
        made = []
        for _ in range(25):
            job = _job(created=clock(), note=f"thread {n}")
            store.add(job)
            store.add_event(job.id, "note", f"from thread {n}")
            assert store.get(job.id).note == f"thread {n}"
            made.append(job.id)
        return made

    with ThreadPoolExecutor(THREADS) as threads:
        made = [job_id for ids in threads.map(work, range(THREADS)) for job_id in ids]
    assert len(set(made)) == 25 * THREADS
    assert store.counts()[JobState.QUEUED] == 25 * THREADS
    assert store.unknown(made) == set()
    for job_id in made[::10]:
        assert [event.event for event in store.history(job_id)] == ["accepted", "note"]


def test_pooled_connections_the_server_ended_are_replaced_without_an_error(
        store: PostgresJobStore, clock: FakeClock) -> None:  # noqa: F811
    """Every connection of the pool ended by the server (a restart, a failover): the next
    calls work, on new connections, and none of the ended ones is handed out again."""
    job = _job(created=clock())
    store.add(job)
    meeting = threading.Barrier(THREADS, timeout=30)

    def hold(_: int) -> None:
        store._read(lambda db: meeting.wait())

    with ThreadPoolExecutor(THREADS) as threads:
        list(threads.map(hold, range(THREADS)))  # the pool grown to its most
    ended = terminate_pool(store._database)
    assert len(ended) == THREADS
    assert store.get(job.id).id == job.id
    store.add_event(job.id, "note", "after the drop")
    assert [event.detail for event in store.history(job.id)][-1] == "after the drop"
    live = store._read(lambda db: db.info.backend_pid)
    assert live not in ended and not set(pooled_backends(store._database)) & set(ended)


def test_the_store_and_the_documents_table_share_one_pool(migrated: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """One pool per database in a process: a second store and the documents table draw
    from the first store's pool, which closes with its last user."""
    before = _pool_threads_settled()
    first, second = PostgresJobStore(migrated), PostgresJobStore(migrated)
    table = DocumentTable(migrated)
    try:
        pools = {id(source._pool) for source in (first._database.source,
                 second._database.source, table._db().source)
                 if isinstance(source, PooledConnections)}
        assert len(pools) == 1
        document = tmp_path / "a.txt"
        document.write_bytes(b"a")
        table.put("j", [("job.json", document)])
        assert first.counts()[JobState.QUEUED] == 0
    finally:
        first.close()
        table.close()
    assert second.counts()[JobState.QUEUED] == 0  # the pool is still open for the last user
    second.close()
    assert not set(_pool_threads()) - set(before)  # earlier tests' may end meanwhile


def test_stores_opened_and_closed_many_times_leave_nothing_behind(migrated: str  # noqa: F811
                                                                  ) -> None:
    """The pool's threads and connections end with the last store closed (a connection
    left open would be a ResourceWarning, an error here)."""
    before = _pool_threads_settled()
    pools = []
    for _ in range(20):
        opened = PostgresJobStore(migrated)
        opened.counts()
        table = DocumentTable(migrated)
        table.listing("nothing")
        source = opened._database.source
        assert isinstance(source, PooledConnections) and source._pool is not None
        pools.append(source._pool)
        # Counted as threads this test started: those of earlier tests' pools may still
        # be ending (a pool nobody closed ends when it is collected).
        assert set(_pool_threads()) - set(before)
        opened.close()
        table.close()
    assert not set(_pool_threads()) - set(before)
    assert all(pool.closed for pool in pools)
