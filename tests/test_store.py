"""The SQLite job store: the job-store contract, and what only SQLite has (WAL, the due index,
times as text, schema migrations)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from faxgw.domain.errors import StoreError
from faxgw.domain.jobs import Job, JobState, new_job_id
from faxgw.ports import JobStore
from faxgw.store import SQLiteJobStore
from faxgw.store.sqlite import SCHEMA_VERSION
from faxgw.store.sqlite.schema import _TABLES

from .conftest import FakeClock
from .store_contract import JobStoreContract, MakeStore

ROOT = Path(__file__).resolve().parent.parent


class TestSQLiteJobStore(JobStoreContract):
    """The contract, on one database file per test."""

    @pytest.fixture
    def make_store(self, tmp_path: Path, clock: FakeClock) -> Iterator[MakeStore]:
        made: list[tuple[SQLiteJobStore, int]] = []

        def make() -> JobStore:
            store = SQLiteJobStore(tmp_path / "faxgw.db", clock=clock)
            made.append((store, threading.get_ident()))
            return store

        yield make
        for store, thread in made:
            if thread == threading.get_ident():  # a thread closes the handles it made
                store.close()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteJobStore]:
    store = SQLiteJobStore(tmp_path / "faxgw.db", clock=clock)
    yield store
    store.close()


def _job(**fields: object) -> Job:
    return Job(id=new_job_id(), number="+4930123456",
               recipient="+4930123456@fax.example.net", sender="fax@contoso.com",
               **fields)  # type: ignore[arg-type]


def test_database_is_wal(store: SQLiteJobStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _state_seen_by_another_process(path: Path, job_id: str) -> str:
    """The job's state as a process of its own reads it, opening and closing the store."""
    code = ("import sys; from pathlib import Path; from faxgw.store import SQLiteJobStore; "
            "store = SQLiteJobStore(Path(sys.argv[1])); "
            "print(store.get(sys.argv[2]).state.value); store.close()")
    done = subprocess.run([sys.executable, "-c", code, str(path), job_id], capture_output=True,
                          text=True, timeout=60, check=True, cwd=ROOT)
    return done.stdout.strip()


def test_a_store_opened_and_closed_beside_another_leaves_its_writes_seen_by_all(
        store: SQLiteJobStore) -> None:
    """A store opened and closed in the process of a running one (the SMTP intake opens one
    per message) must not drop the running one's locks: other processes that open and
    close the store then took themselves for the last user, deleted the WAL, and every
    later write of the running store went to the deleted file, seen by nobody."""
    job = _job()
    store.add(job)
    SQLiteJobStore(store.path).close()
    assert _state_seen_by_another_process(store.path, job.id) == "queued"
    store.transition(job.id, JobState.SENDING, event="sending")
    assert _state_seen_by_another_process(store.path, job.id) == "sending"
    store.transition(job.id, JobState.SENT, event="sent")
    assert _state_seen_by_another_process(store.path, job.id) == "sent"
    assert store.path.with_name(store.path.name + "-wal").exists()


def test_claim_reads_only_claimable_jobs_from_their_index(store: SQLiteJobStore,
                                                          clock: FakeClock) -> None:
    """Both SELECTs a real claim runs (the look, then the claim under the lock; caught with
    a trace callback, so the test follows the store's SQL as it changes) are answered from
    ``jobs_claimable``, which holds no job being prepared: not by a scan of every job, nor
    by reading each queued row to see its mark."""
    for _ in range(3):
        store.add(_job(preparing="render-1"))
    due = _job()
    store.add(due)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        claimed = store.claim_due(clock(), 5, owner="runner-a",
                                  lease_until=clock() + timedelta(minutes=5),
                                  exclude_senders=["paused@contoso.com"])
    finally:
        store._db.set_trace_callback(None)
    assert [job.id for job in claimed] == [due.id]
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, selects
    for select in selects:
        assert "preparing IS NULL" in select and "next_attempt_at <=" in select, select
        plan = [row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + select)]
        assert any("jobs_claimable" in step for step in plan), plan
        assert not any(step.startswith("SCAN jobs") for step in plan), plan
    [(held,)] = store._db.execute(
        "SELECT COUNT(*) FROM jobs INDEXED BY jobs_claimable"
        " WHERE state IN ('queued', 'deferred') AND preparing IS NULL").fetchall()
    assert held == 0  # the claimed job left the index, the prepared ones never were in it


def test_a_claim_finding_nothing_due_takes_no_write_lock(store: SQLiteJobStore,
                                                        clock: FakeClock) -> None:
    """With nothing due (the queued job is being prepared) a claim returns at once while
    another process holds the write lock; with a job due it waits for the lock, as a claim
    is one read-modify-write under it."""
    job = _job(preparing="render-1")
    store.add(job)
    store._db.execute("PRAGMA busy_timeout=50")  # waiting for the lock fails the test fast
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        lease = clock() + timedelta(minutes=5)
        assert store.claim_due(clock(), 5, owner="runner-a", lease_until=lease) == []
        other.execute("UPDATE jobs SET preparing = NULL WHERE id = ?", (job.id,))
        other.execute("COMMIT")
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            store.claim_due(clock(), 5, owner="runner-a", lease_until=lease)
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert store.get(job.id).state is JobState.QUEUED
    assert [j.id for j in store.claim_due(clock(), 5, owner="runner-a",
                                          lease_until=lease)] == [job.id]


def test_a_job_claimed_between_the_look_and_the_lock_is_claimed_once(
        tmp_path: Path, clock: FakeClock) -> None:
    """The claim selects again under the write lock: a job another runner claimed after
    this one saw it due (just before this one's BEGIN) is left to that runner."""
    runner_a = SQLiteJobStore(tmp_path / "faxgw.db", clock=clock)
    runner_b = SQLiteJobStore(tmp_path / "faxgw.db", clock=clock)
    try:
        job = _job()
        runner_a.add(job)
        lease = clock() + timedelta(minutes=5)
        taken_by_b: list[Job] = []

        def on_statement(sql: str) -> None:
            if sql.startswith("BEGIN") and not taken_by_b:
                taken_by_b.extend(runner_b.claim_due(clock(), 5, owner="runner-b",
                                                     lease_until=lease))

        runner_a._db.set_trace_callback(on_statement)
        assert runner_a.claim_due(clock(), 5, owner="runner-a", lease_until=lease) == []
        runner_a._db.set_trace_callback(None)
        assert [j.id for j in taken_by_b] == [job.id]
        assert runner_a.get(job.id).owner == "runner-b"
        assert [e.event for e in runner_a.history(job.id)] == ["accepted", "sending"]
    finally:
        runner_a.close()
        runner_b.close()


def test_times_are_stored_as_sortable_utc_text(store: SQLiteJobStore) -> None:
    """One fixed text form in UTC (queries compare times as text), read back exactly."""
    berlin = timezone(timedelta(hours=1))
    due = datetime(2026, 11, 28, 5, 0, 0, 123, tzinfo=berlin)
    job = _job(next_attempt_at=due, created=datetime(2026, 11, 27, 23, 30, tzinfo=UTC))
    store.add(job)
    with sqlite3.connect(store.path) as db:
        [(text, created)] = db.execute(
            "SELECT next_attempt_at, created FROM jobs WHERE id = ?", (job.id,))
    assert text == "2026-11-28T04:00:00.000123Z"
    assert created == "2026-11-27T23:30:00.000000Z"
    assert created < text  # text order is time order
    again = store.get(job.id).next_attempt_at
    assert again == due and again is not None and again.utcoffset() == timedelta(0)


# -- migrations ------------------------------------------------------------------------------

V1_ID = "0193a4f2c1d0-9f3b2a71"
V1_JOB: dict[str, object] = {
    "id": V1_ID, "created": "2026-01-05T09:00:00.000000Z",
    "updated": "2026-01-05T09:00:01.000000Z", "state": "queued", "number": "+4930123456",
    "recipient": "+4930123456@fax.example.net", "sender": "fax@contoso.com",
    "documents": '["a.pdf"]', "cover": 0,
}


def _version_1_database(path: Path) -> None:
    """A database as faxgw wrote it at schema version 1, with one queued job."""
    with sqlite3.connect(path) as db:
        db.executescript(_TABLES)
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        assert "owner" not in columns and "preparing" not in columns, "_TABLES is not v1"
        db.execute(f"INSERT INTO jobs ({', '.join(V1_JOB)}) "
                   f"VALUES ({', '.join('?' * len(V1_JOB))})", tuple(V1_JOB.values()))
        db.execute("INSERT INTO history (job_id, at, event, state, detail) VALUES (?,?,?,?,?)",
                   (V1_ID, V1_JOB["created"], "accepted", "queued", "from v1"))
        db.execute("PRAGMA user_version=1")
    db.close()


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    return version


def test_new_database_is_at_the_current_version(store: SQLiteJobStore) -> None:
    assert _user_version(store.path) == SCHEMA_VERSION == 4


def test_version_1_database_is_upgraded_and_keeps_its_jobs(tmp_path: Path,
                                                           clock: FakeClock) -> None:
    """Opening a v1 file adds the claim and preparing columns, sets user_version, keeps the
    job and its history, and the job can be claimed with an owner and a lease."""
    path = tmp_path / "old.db"
    _version_1_database(path)
    store = SQLiteJobStore(path, clock=clock)
    try:
        assert _user_version(path) == SCHEMA_VERSION
        indexes = {row[0] for row in store._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_due", "jobs_preparing", "jobs_notify", "jobs_claimable"} <= indexes
        job = store.get(V1_ID)
        assert (job.state, job.documents, job.cover, job.owner, job.lease_until,
                job.preparing) == (JobState.QUEUED, ["a.pdf"], False, None, None, None)
        assert job.created == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        lease = clock() + timedelta(minutes=5)
        [claimed] = store.claim_due(clock(), 10, owner="runner-a", lease_until=lease)
        assert claimed.id == job.id
        stored = store.get(job.id)
        assert (stored.state, stored.owner, stored.lease_until) == (
            JobState.SENDING, "runner-a", lease)
        assert [(e.event, e.detail) for e in store.history(job.id)] == [
            ("accepted", "from v1"), ("sending", "attempt 1")]
    finally:
        store.close()
    again = SQLiteJobStore(path, clock=clock)  # an up-to-date file opens as it is
    try:
        assert again.get(V1_ID).owner == "runner-a"
        assert _user_version(path) == SCHEMA_VERSION
    finally:
        again.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    """An older faxgw must not write to a database a newer one has migrated."""
    path = tmp_path / "newer.db"
    _version_1_database(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteJobStore(path)
    assert _user_version(path) == SCHEMA_VERSION + 1
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    db.close()
    assert "owner" not in columns
