"""Hosts whose clocks disagree, on one PostgreSQL queue: leases are timed by the database's
clock, so a host whose clock runs ahead never takes a claim still held, and one whose clock
runs behind never holds a claim longer than its lease; and a host that stopped beating has
its ``preparing`` marks taken back by the others.

Each host is a store (or a worker) on the real test database given a clock of its own, as
the engine passes its clock's times (``now``, ``now`` + the lease); the database's clock is
its own ``now()``, as in service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from faxgw.app.wiring import build_worker
from faxgw.domain.jobs import Job, JobState, new_job_id, utcnow
from faxgw.engine.worker import Worker
from faxgw.intake.register import register
from faxgw.store.postgres import PostgresJobStore
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, MakeConfig
from .test_store_postgres import migrated, schema  # noqa: F401 - fixtures

#: How far apart the two hosts' clocks are: each is five minutes off the true time.
SKEW = timedelta(minutes=5)
#: Runners on other hosts (the host part of their ids is not this host's name).
BEHIND_RUNNER = "db-host-2.example.net:4242:abcdef"
AHEAD_RUNNER = "db-host-3.example.net:4343:abcdef"
#: The leases the tests wait for (seconds): long enough for a busy machine to ask before
#: they end.
LEASE = 4


def ahead() -> datetime:
    return utcnow() + SKEW


def behind() -> datetime:
    return utcnow() - SKEW


@pytest.fixture
def stores(migrated: str) -> Iterator[dict[str, PostgresJobStore]]:  # noqa: F811
    """Two hosts' stores, ten minutes apart, on the database's clock."""
    made = {"ahead": PostgresJobStore(migrated, clock=ahead),
            "behind": PostgresJobStore(migrated, clock=behind)}
    yield made
    for store in made.values():
        store.close()


def _left(url: str, job_id: str) -> float:
    """Seconds until the job's lease ends, by the database's clock."""
    with psycopg.connect(url) as db:
        row = db.execute("SELECT extract(epoch FROM lease_until - now()) FROM jobs"
                         " WHERE id = %s", (job_id,)).fetchone()
    assert row is not None and row[0] is not None
    return float(row[0])


def _until_ended(url: str, job_id: str, seconds: float = 10.0) -> None:
    """Wait until the job's lease has ended by the database's clock."""
    deadline = time.monotonic() + seconds
    while (left := _left(url, job_id)) > 0:
        assert time.monotonic() < deadline, f"the lease has not ended after {seconds} s"
        time.sleep(min(left + 0.05, 0.5))


def _queue(store: PostgresJobStore, count: int, base: datetime) -> list[str]:
    ids = []
    for n in range(count):
        job = Job(id=new_job_id(), number="+4930123456", created=base + timedelta(seconds=n))
        store.add(job)
        ids.append(job.id)
    return ids


def _claim(store: PostgresJobStore, clock: Callable[[], datetime], owner: str,
           seconds: float = LEASE) -> list[str]:
    """Claim the oldest due job as the engine does: its clock's time and a lease after it."""
    now = clock()
    return [job.id for job in store.claim_due(now, 1, owner=owner,
                                              lease_until=now + timedelta(seconds=seconds))]


def test_a_host_ahead_never_takes_a_claim_still_held(
        stores: dict[str, PostgresJobStore], migrated: str) -> None:  # noqa: F811
    """A claim made by the host whose clock runs behind holds for its lease by the
    database's clock: the host ahead, asking with its own clock's time, does not take it
    back, nor after a renewal; once the lease has ended, it does."""
    early, late = stores["behind"], stores["ahead"]
    [job_id] = _queue(early, 1, utcnow() - timedelta(hours=1))
    assert _claim(early, behind, BEHIND_RUNNER) == [job_id]
    assert 1.0 < _left(migrated, job_id) <= LEASE
    assert late.recover_sending(owners=[BEHIND_RUNNER], lease_ended_by=ahead()) == []
    until = behind() + timedelta(seconds=LEASE)
    assert early.renew(BEHIND_RUNNER, [job_id], until) == [job_id]
    assert 1.0 < _left(migrated, job_id) <= LEASE
    assert early.get(job_id).lease_until != until  # the database's time, not the host's
    assert late.recover_sending(owners=[BEHIND_RUNNER], lease_ended_by=ahead()) == []
    got = late.get(job_id)
    assert (got.state, got.owner) == (JobState.SENDING, BEHIND_RUNNER)
    _until_ended(migrated, job_id)
    assert late.recover_sending(owners=[BEHIND_RUNNER], lease_ended_by=ahead()) == [job_id]
    assert late.get(job_id).state is JobState.QUEUED


def test_a_host_behind_never_holds_a_lease_longer_than_its_length(
        stores: dict[str, PostgresJobStore], migrated: str) -> None:  # noqa: F811
    """The lease of a claim made by the host whose clock runs behind ends after its length
    by the database's clock; and the host behind takes back the claim of the host ahead as
    soon as its lease has ended by the database's clock, not only once its own clock
    reaches the time the host ahead would have written."""
    early, late = stores["behind"], stores["ahead"]
    mine, theirs = _queue(early, 2, utcnow() - timedelta(hours=1))
    assert _claim(early, behind, BEHIND_RUNNER) == [mine]
    assert _claim(late, ahead, AHEAD_RUNNER) == [theirs]
    for job_id in (mine, theirs):
        assert 1.0 < _left(migrated, job_id) <= LEASE
    assert early.recover_sending(owners=[AHEAD_RUNNER], lease_ended_by=behind()) == []
    _until_ended(migrated, theirs)
    assert early.recover_sending(owners=[AHEAD_RUNNER], lease_ended_by=behind()) == [theirs]
    # The claim of the host behind was not renewed: it has ended for everyone too.
    _until_ended(migrated, mine)
    assert late.recover_sending(owners=[BEHIND_RUNNER], lease_ended_by=ahead()) == [mine]


# -- through the engine ----------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FaxSMTPServer]:
    with FaxSMTPServer(users={USER: PASSWORD}) as running:
        yield running


def _worker(make_config: MakeConfig, server: FaxSMTPServer, url: str,
            clock: Callable[[], datetime] = utcnow) -> Worker:
    """A worker as ``faxgw run`` builds it: its store on the database's clock."""
    return build_worker(make_config(server, store={"url": url}), clock=clock)


def _register(worker: Worker, samples: Path, count: int,
              preparing: list[str | None] | None = None) -> list[str]:
    marks = preparing or [None] * count
    return [register(worker.spool.submit(f"+49301234{n:03d}", [samples / "note.txt"]),
                     config=worker.config, store=worker.store, documents=worker.spool,
                     preparing=marks[n]).id
            for n in range(count)]


def test_a_worker_ahead_sends_only_what_a_lease_ended_on(
        migrated: str, make_config: MakeConfig, samples: Path,  # noqa: F811
        server: FaxSMTPServer, stores: dict[str, PostgresJobStore]) -> None:
    """A worker whose clock runs ahead reaps and runs: the job another host (behind) holds
    with a live lease is left to it, the one whose lease ended is sent once."""
    worker = _worker(make_config, server, migrated, clock=ahead)
    try:
        held, lapsed = _register(worker, samples, 2)
        early = stores["behind"]
        assert _claim(early, behind, BEHIND_RUNNER, seconds=60) == [held]
        assert _claim(early, behind, BEHIND_RUNNER) == [lapsed]
        worker.startup()
        assert worker.store.get(lapsed).state is JobState.SENDING
        _until_ended(migrated, lapsed)
        worker.reap()  # as a running service does every few seconds
        summary = asyncio.run(worker.run_once())
        assert summary.sent == 1 and len(server.messages) == 1
        assert worker.store.get(lapsed).state is JobState.SENT
        got = worker.store.get(held)
        assert (got.state, got.owner) == (JobState.SENDING, BEHIND_RUNNER)
    finally:
        worker.close()


def test_a_silent_hosts_preparing_marks_are_taken_back(
        migrated: str, make_config: MakeConfig, samples: Path,  # noqa: F811
        server: FaxSMTPServer) -> None:
    """A runner on another host registered a job and stopped before rendering it: once its
    heartbeat has been silent for longer than a lease, any host's reaping clears its mark
    and sends the job. The marks of a runner still beating, and of one that never beats (a
    ``faxgw submit``, judged on its own host by its lock), are left."""
    silent, beating = BEHIND_RUNNER, AHEAD_RUNNER
    unlisted = "db-host-4.example.net:4444:abcdef"
    with psycopg.connect(migrated, autocommit=True) as db:
        db.execute("INSERT INTO hosts (owner, host, pid, last_seen) VALUES"
                   " (%s, 'db-host-2.example.net', 4242, now() - interval '61 seconds'),"
                   " (%s, 'db-host-3.example.net', 4343, now() - interval '5 seconds')",
                   (silent, beating))
    worker = _worker(make_config, server, migrated)
    try:
        gone, alive, submitted = _register(worker, samples, 3, [silent, beating, unlisted])
        summary = asyncio.run(worker.run_once())
        assert summary.sent == 1 and len(server.messages) == 1
        assert worker.store.get(gone).state is JobState.SENT
        for job_id, owner in ((alive, beating), (submitted, unlisted)):
            got = worker.store.get(job_id)
            assert (got.state, got.preparing) == (JobState.QUEUED, owner)
        assert worker.store.claim_owners() == {beating, unlisted}
    finally:
        worker.close()
