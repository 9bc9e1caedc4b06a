"""The SQLite job store: transitions, claims, history, recovery."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from faxgw import codes
from faxgw.errors import JobNotFoundError, JobStateError
from faxgw.jobs import Job, JobState, new_job_id
from faxgw.store import SQLiteJobStore

from .conftest import FakeClock


def _job(**fields: object) -> Job:
    return Job(
        id=new_job_id(),
        number="+4930123456",
        recipient="+4930123456@fax.example.net",
        sender="fax@contoso.com",
        **fields,
    )  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SQLiteJobStore:
    return SQLiteJobStore(tmp_path / "faxgw.db", clock=clock)


def test_database_is_wal(store: SQLiteJobStore) -> None:
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_add_get_by_prefix_and_history(store: SQLiteJobStore) -> None:
    job = _job(documents=["a.pdf", "b.png"])
    store.add(job, detail="from submit")
    got = store.get(job.id[:15])
    assert got.id == job.id and got.state is JobState.QUEUED
    assert got.documents == ["a.pdf", "b.png"]
    [event] = store.history(job.id)
    assert event.event == "accepted" and event.detail == "from submit"
    with pytest.raises(JobNotFoundError):
        store.get("nope")


def test_transitions_are_checked_and_recorded(store: SQLiteJobStore, clock: FakeClock) -> None:
    job = _job()
    store.add(job)
    [claimed] = store.claim_due(clock(), 10)
    assert claimed.state is JobState.SENDING
    store.transition(
        job.id,
        JobState.SENT,
        event="sent",
        code=codes.SENT,
        count_attempt=True,
        detail="250 OK",
        fields={"last_reply": "250 OK"},
    )
    done = store.get(job.id)
    assert (done.state, done.code, done.attempts, done.last_reply) == (
        JobState.SENT,
        100,
        1,
        "250 OK",
    )
    with pytest.raises(JobStateError, match="is sent: cannot cancel"):
        store.transition(job.id, JobState.CANCELLED, event="cancel")
    assert [e.event for e in store.history(job.id)] == ["accepted", "sending", "sent"]


def test_claim_takes_only_due_jobs(store: SQLiteJobStore, clock: FakeClock) -> None:
    early, later = _job(), _job()
    store.add(early)
    store.add(later)
    for job in store.claim_due(clock(), 10):
        store.transition(
            job.id,
            JobState.DEFERRED,
            event="deferred",
            next_attempt_at=clock() + timedelta(seconds=60 if job.id == early.id else 600),
        )
    assert store.claim_due(clock(), 10) == []
    clock.advance(61)
    assert [job.id for job in store.claim_due(clock(), 10)] == [early.id]
    assert store.next_due_at() is not None


def test_claims_never_overlap(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "shared.db"
    seed = SQLiteJobStore(path, clock=clock)
    ids: set[str] = set()
    for _ in range(200):
        job = _job()
        seed.add(job)
        ids.add(job.id)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        own = SQLiteJobStore(path, clock=clock)
        while batch := own.claim_due(clock(), 7):
            with lock:
                claimed.extend(job.id for job in batch)
        own.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_recover_sending(store: SQLiteJobStore, clock: FakeClock) -> None:
    job = _job()
    store.add(job)
    store.claim_due(clock(), 1)
    assert store.recover_sending() == [job.id]
    assert store.get(job.id).state is JobState.QUEUED
    assert store.history(job.id)[-1].event == "recovered"


def test_due_scan_uses_the_index(store: SQLiteJobStore) -> None:
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE (state = 'queued' OR (state = 'deferred'"
        " AND next_attempt_at <= '2030')) ORDER BY created LIMIT 5"
    ).fetchall()
    assert any("jobs_due" in row[3] for row in plan), plan


def test_times_are_stored_as_sortable_utc_text(tmp_path: Path) -> None:
    """One fixed text form in UTC (queries compare times as text), read back exactly."""
    from datetime import UTC, datetime, timezone

    store = SQLiteJobStore(tmp_path / "jobs.db")
    berlin = timezone(timedelta(hours=1))
    due = datetime(2026, 11, 28, 5, 0, 0, 123, tzinfo=berlin)
    job = _job(next_attempt_at=due)
    store.add(job)
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        [(text,)] = db.execute("SELECT next_attempt_at FROM jobs WHERE id = ?", (job.id,))
    assert text == "2026-11-28T04:00:00.000123Z"
    again = store.get(job.id).next_attempt_at
    assert again == due and again is not None and again.utcoffset() == timedelta(0)
    assert datetime.fromisoformat(text) == datetime(2026, 11, 28, 4, 0, 0, 123, tzinfo=UTC)
    store.close()


def test_claim_leaves_excluded_jobs_and_senders_alone(tmp_path: Path, clock: FakeClock) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db", clock=clock)
    rendering, paused, due = _job(), _job(), _job()
    paused.sender = "paused@contoso.com"
    for job in (rendering, paused, due):
        store.add(job)
    claimed = store.claim_due(clock(), 10, exclude_senders=["PAUSED@contoso.com"],
                              exclude_ids={rendering.id})
    assert [job.id for job in claimed] == [due.id]
    assert store.get(rendering.id).state is JobState.QUEUED
    assert [job.id for job in store.claim_due(clock(), 10)] == [rendering.id, paused.id]
    store.close()
