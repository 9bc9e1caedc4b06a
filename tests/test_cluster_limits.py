"""Several runners on one PostgreSQL queue: a mailbox's limits hold for all of them together,
work that runs once at a time runs on one of them, and a claim whose lease ran out while its
message was being handed over is not sent again.

The runners are real workers (or ``faxgw run`` processes) on one schema of the test database
(see ``test_store_postgres``), sending through the test SMTP server, which records how many
sessions each user had open at once and refuses messages beyond a per-minute rate.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from faxgw.app.wiring import build_worker
from faxgw.domain import codes
from faxgw.domain.cluster import HANDING_OVER
from faxgw.domain.errors import StoreError
from faxgw.domain.jobs import Job, JobState, new_job_id
from faxgw.engine.limits import message_budget, session_in_slot
from faxgw.engine.outcomes import RunSummary
from faxgw.engine.pacing import WINDOW_SECONDS, MailboxPacer
from faxgw.engine.worker import Worker
from faxgw.intake.register import register
from faxgw.ports import Session
from faxgw.store.postgres import SCHEMA_VERSION, PostgresJobStore
from faxgw.store.postgres.cluster import PostgresCoordination, hosts
from faxgw.store.postgres.wakeups import listen
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.web.api import GatewayCollector

from .conftest import PASSWORD, USER, FakeClock, MakeConfig
from .test_store_postgres import migrated, schema  # noqa: F401 - fixtures

MAILBOX = USER.lower()
#: A runner on another host (the host part of its id is not this host's name).
ELSEWHERE = "db-host-2.example.net:4242:abcdef"


@pytest.fixture
def coordinations(migrated: str) -> Iterator[list[PostgresCoordination]]:  # noqa: F811
    """Two runners' coordinations (two connections, as two hosts have), with a 2 s window."""
    made = [PostgresCoordination(migrated, owner=f"host-{n}", window_seconds=2.0)
            for n in (1, 2)]
    yield made
    for coordination in made:
        coordination.close()


def _soon(check: Callable[[], object], seconds: float = 5.0) -> object:
    """``check()`` once it is true (a closed connection's locks are freed as its server
    process ends, a moment after the client closed it)."""
    deadline = time.monotonic() + seconds
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def _queue(worker: Worker, samples: Path, count: int) -> list[str]:
    return [register(worker.spool.submit(f"+49301234{n:03d}", [samples / "note.txt"]),
                     config=worker.config, store=worker.store, documents=worker.spool).id
            for n in range(count)]


# -- the coordination itself -----------------------------------------------------------------


def test_a_mailboxs_slots_are_shared_by_every_runner(
        coordinations: list[PostgresCoordination]) -> None:
    """Three slots for two runners: whoever asks first gets one until all are held; a slot
    given back, or held by a runner that stopped, is free again."""
    first, second = coordinations
    assert [first.take_slot(MAILBOX, 3), first.take_slot(MAILBOX, 3)] == [0, 1]
    assert second.take_slot(MAILBOX, 3) == 2
    assert second.take_slot(MAILBOX, 3) is None and first.take_slot(MAILBOX, 3) is None
    assert second.take_slot("other@contoso.com", 3) == 0  # each mailbox has its own
    first.release_slot(MAILBOX, 1)
    assert second.take_slot(MAILBOX, 3) == 1
    assert first.take_slot(MAILBOX, 3) is None
    second.close()  # a host that stops (or dies) frees what it held
    assert _soon(lambda: first.take_slot(MAILBOX, 3) is not None)
    assert first.take_slot(MAILBOX, 3) is not None
    assert first.take_slot(MAILBOX, 3) is None


def test_the_message_budget_holds_across_runners(
        coordinations: list[PostgresCoordination]) -> None:
    """Five a window between two runners: the sixth waits until the oldest answered
    message has left the window, by the database's clock."""
    first, second = coordinations
    for runner in (first, second, first, second, first):
        assert runner.reserve_message(MAILBOX, 5) == 0
    assert second.reserve_message("other@contoso.com", 5) == 0  # each mailbox has its own
    # All five under way: no answer yet, so the wait is short and asked again.
    assert 0 < second.reserve_message(MAILBOX, 5) <= 0.25
    for runner in (first, first, first, second, second):
        runner.message_answered(MAILBOX)
    wait = second.reserve_message(MAILBOX, 5)
    assert 1.0 < wait <= 2.0
    time.sleep(wait)
    assert second.reserve_message(MAILBOX, 5) == 0


def test_a_turn_is_one_runners_until_it_stops(
        coordinations: list[PostgresCoordination]) -> None:
    first, second = coordinations
    assert first.take_turn("purge") and first.take_turn("purge")
    assert not second.take_turn("purge")
    assert second.take_turn("keepalive")
    first.close()
    assert _soon(lambda: second.take_turn("purge"))


def test_the_runners_heartbeats_are_listed(migrated: str,  # noqa: F811
                                           coordinations: list[PostgresCoordination]) -> None:
    first, second = coordinations
    first.beat()
    second.beat()
    first.beat()
    with psycopg.connect(migrated, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        listed = hosts(db)
        assert sorted(row["owner"] for row in listed) == ["host-1", "host-2"]
        assert all(row["silent"] < 60 and row["pid"] for row in listed)
        second.leave()
        assert [row["owner"] for row in hosts(db)] == ["host-1"]


def test_a_dropped_connection_keeps_the_slots_and_takes_back_the_turns(
        migrated: str, coordinations: list[PostgresCoordination]) -> None:  # noqa: F811
    """The server ends the runner's connection: its slot stays its own meanwhile (nobody
    else can take it while its session may still be open), and its next call connects
    again, renews the slot and holds its turn again (nobody took it meanwhile)."""
    first, second = coordinations
    assert first.take_slot(MAILBOX, 1) == 0 and first.take_turn("purge")
    with psycopg.connect(migrated, autocommit=True) as admin:
        # The one holding this schema's turn: tests in other schemas run on alongside.
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks"
                      " WHERE locktype = 'advisory' AND classid::bigint ="
                      " (hashtext(current_schema() || %s)::bigint + 4294967296) %% 4294967296",
                      (":turn:purge",))
    time.sleep(0.2)
    assert second.take_slot(MAILBOX, 1) is None  # still the first runner's
    assert first.take_slot(MAILBOX, 2) == 1  # connected again
    assert second.take_slot(MAILBOX, 2) is None
    assert first.take_turn("purge") and not second.take_turn("purge")
    time.sleep(0.1)
    assert first.keep_slot(MAILBOX, 0) > 25  # renewed on the new connection
    assert second.keep_slot(MAILBOX, 0) == 0  # not the second's


def test_a_closed_coordination_says_so() -> None:
    closed = PostgresCoordination("postgresql://nobody@127.0.0.1:1/none", owner="x",
                                  window_seconds=1.0)
    closed.close()
    with pytest.raises(StoreError, match="closed"):
        closed.take_slot(MAILBOX, 1)


# -- two engines, one mailbox ----------------------------------------------------------------


def test_two_engines_never_open_more_sessions_than_the_mailbox_allows(
        migrated: str, make_config: MakeConfig, samples: Path) -> None:  # noqa: F811
    """The first engine holds the mailbox's three connections; the second, with jobs of its
    own, waits for them instead of opening three more, and sends once they are free."""
    with FaxSMTPServer(users={USER: PASSWORD}, reply_delay=0.1) as server:
        config = make_config(server, store={"url": migrated},
                             limits={"connections": 3, "messages_per_minute": 0})
        first, second = build_worker(config), build_worker(config)
        try:
            first_jobs = _queue(first, samples, 12)

            async def both() -> tuple[RunSummary, RunSummary]:
                early = asyncio.ensure_future(first.run_once())
                await asyncio.sleep(0.3)  # its sessions are open and sending
                _queue(second, samples, 12)
                return await asyncio.gather(early, second.run_once())

            sent = [summary.sent for summary in asyncio.run(both())]
            assert sent == [12, 12] and len(server.messages) == 24
            assert server.max_concurrent_sessions_by_user == {USER: 3}
            assert server.refused_connections == 0
            events = [e.event for e in first.store.history(first_jobs[0])]
            assert events.index(HANDING_OVER) == events.index("sent") - 1
        finally:
            first.close()
            second.close()


def test_two_engines_keep_the_mailboxs_messages_per_minute_together(
        migrated: str, make_config: MakeConfig, samples: Path) -> None:  # noqa: F811
    """Both engines send for one mailbox allowed 8 messages a minute; the server refuses a
    ninth within any minute. Minutes pass 20 times faster here: the server's, the engines'
    pacers' and the database window alike."""
    speed = 20.0

    def fast() -> float:
        return time.monotonic() * speed

    with FaxSMTPServer(users={USER: PASSWORD}, messages_per_minute_per_user=8,
                       clock=fast) as server:
        config = make_config(server, store={"url": migrated},
                             limits={"connections": 2, "messages_per_minute": 8})

        def pacer() -> MailboxPacer:
            return MailboxPacer(connections=2, messages_per_minute=8, clock=fast,
                                sleep=lambda seconds: asyncio.sleep(seconds / speed))

        workers = [build_worker(config, pacer_factory=pacer) for _ in range(2)]
        try:
            for worker in workers:
                assert isinstance(worker.store, PostgresJobStore)
                worker.coordination = worker.store.coordination(
                    worker.owner, window_seconds=WINDOW_SECONDS / speed)
            _queue(workers[0], samples, 8)

            async def both() -> tuple[RunSummary, RunSummary]:
                early = asyncio.ensure_future(workers[0].run_once())
                await asyncio.sleep(0.1)
                _queue(workers[1], samples, 12)
                return await asyncio.gather(early, workers[1].run_once())

            started = time.monotonic()
            summaries = asyncio.run(both())
            took = time.monotonic() - started
            assert [s.sent for s in summaries] == [8, 12], summaries
            assert server.rate_refusals == 0 and len(server.messages) == 20
            # 20 messages at 8 a window: two full windows had to pass.
            assert took >= 2 * 60 / speed, took
        finally:
            for worker in workers:
                worker.close()


# -- a lease that ends while a message is handed over ----------------------------------------


def test_a_runner_that_stopped_while_handing_over_leaves_the_job_unconfirmed(
        migrated: str, make_config: MakeConfig, samples: Path, clock: FakeClock,  # noqa: F811
) -> None:
    """A runner on another host claimed two jobs and began handing one over, then stopped
    answering: once their leases end, this runner queues the untouched job again and sends
    it, and leaves the handed-over one unconfirmed instead of sending it twice. (The test's
    clock stands in for the database's, so that advancing it ends the leases.)"""
    with FaxSMTPServer(users={USER: PASSWORD}) as server:
        config = make_config(server, store={"url": migrated})
        alive = build_worker(config, clock=clock, store=PostgresJobStore(
            migrated, clock=clock, database_clock=clock))
        try:
            handed, untouched = _queue(alive, samples, 2)
            lease = timedelta(seconds=config.store.lease_seconds)
            claimed = alive.store.claim_due(clock(), 10, owner=ELSEWHERE,
                                            lease_until=clock() + lease)
            assert sorted(job.id for job in claimed) == sorted([handed, untouched])
            alive.store.add_event(handed, HANDING_OVER, "to the mail server (smtp)")
            alive.startup()
            assert alive.store.get(handed).state is JobState.SENDING  # the lease holds
            clock.advance(lease.total_seconds() + 1)
            alive.reap()
            summary = asyncio.run(alive.run_once())
            assert summary.sent == 1 and len(server.messages) == 1
            assert alive.store.get(untouched).state is JobState.SENT
            job = alive.store.get(handed)
            assert (job.state, job.code, job.owner) == (
                JobState.UNCONFIRMED, codes.UNCONFIRMED, None)
            assert "may have been sent" in alive.store.history(handed)[-1].detail
        finally:
            alive.close()


# -- wake-ups --------------------------------------------------------------------------------


def test_a_host_wakes_when_a_job_becomes_due_anywhere(
        migrated: str, clock: FakeClock) -> None:  # noqa: F811
    """A job added (ready), or queued again, wakes the listening host at the commit; one
    still being prepared does not. A dropped connection is opened again, with a wake-up for
    what it may have missed."""
    store = PostgresJobStore(migrated, clock=clock)
    woken: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()
        listening = asyncio.ensure_future(
            listen(migrated, lambda: woken.append(time.monotonic()), stop,
                   reconnect_seconds=0.1))

        async def woken_after(count: int) -> bool:
            deadline = time.monotonic() + 5
            while len(woken) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return len(woken) >= count

        try:
            assert await woken_after(1)  # connected
            store.add(Job(id=new_job_id(), number="+4930123456", preparing="render-1"))
            await asyncio.sleep(0.5)
            assert len(woken) == 1
            ready = Job(id=new_job_id(), number="+4930123456")
            store.add(ready)
            assert await woken_after(2)
            with psycopg.connect(migrated, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE query = 'LISTEN ' || quote_ident('faxgw_jobs:' ||"
                              " current_schema()) AND pid <> pg_backend_pid()"
                              " AND datname = current_database()")
            assert await woken_after(3)  # connected again
            store.claim_due(clock(), 10, owner="host-1", lease_until=clock())
            store.recover_sending(owners=["host-1"])  # queued again
            assert await woken_after(4)
        finally:
            stop.set()
            await listening

    try:
        asyncio.run(main())
    finally:
        store.close()


# -- the status sheet ------------------------------------------------------------------------


def test_the_status_sheet_shows_the_database_and_its_hosts(
        migrated: str, tmp_path: Path,  # noqa: F811
        coordinations: list[PostgresCoordination]) -> None:
    first, second = coordinations
    first.beat()
    second.beat()
    config = tmp_path / "faxgw.toml"
    config.write_text(f'[spool]\ndir = "spool"\n[store]\nurl = "{migrated}"\n')
    command = [sys.executable, "-m", "faxgw", "--config", str(config), "status"]
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    store = json.loads(done.stdout)["store"]
    assert store["kind"] == "postgresql" and store["database"].startswith("postgresql://")
    assert store["schema_version"] == SCHEMA_VERSION
    assert isinstance(store["jobs_dead_tuples"], int)
    assert sorted(host["owner"] for host in store["hosts"]) == ["host-1", "host-2"]
    assert all(0 <= host["silent_seconds"] < 60 for host in store["hosts"])
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"(schema {SCHEMA_VERSION}, PostgreSQL " in shown.stdout
    assert "dead row versions" in shown.stdout
    assert shown.stdout.count("(host-") == 2 and "last heartbeat" in shown.stdout


def test_metrics_give_claim_latency_and_the_jobs_tables_dead_rows(
        migrated: str, make_config: MakeConfig, samples: Path) -> None:  # noqa: F811
    config = make_config(store={"url": migrated})
    worker = build_worker(config)
    try:
        _queue(worker, samples, 3)
        assert len(worker._claim()) == 3 and worker._claim() == []
        registry = CollectorRegistry()
        registry.register(GatewayCollector(config, lambda: 0, worker.observations))
        text = generate_latest(registry).decode()
    finally:
        worker.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    claims = {s.name: s.value for s in families["faxgw_claim_duration_seconds"].samples
              if not s.labels}
    assert claims["faxgw_claim_duration_seconds_count"] == 2
    assert 0 < claims["faxgw_claim_duration_seconds_sum"] < 5
    [dead] = families["faxgw_store_jobs_dead_tuples"].samples
    assert dead.value >= 0


def test_the_migration_tunes_the_jobs_tables_autovacuum(migrated: str) -> None:  # noqa: F811
    """The jobs table changes on every claim and outcome: it is vacuumed after 1 % of it
    changed, and its pages keep room for the new row versions."""
    with psycopg.connect(migrated, autocommit=True) as db:
        row = db.execute("SELECT reloptions FROM pg_class WHERE oid = to_regclass('jobs')"
                         ).fetchone()
    assert row is not None
    options = dict(option.split("=") for option in row[0])
    assert options["autovacuum_vacuum_scale_factor"] == "0.01"
    assert options["autovacuum_vacuum_cost_delay"] == "0"
    assert options["fillfactor"] == "70"


def test_a_coordination_out_of_reach_is_never_a_yes() -> None:
    """No database: no slot is taken (the session waits until the worker stops), and no
    message goes without its place in the budget."""
    gone = PostgresCoordination("postgresql://nobody@127.0.0.1:1/none", owner="x",
                                window_seconds=1.0)
    asked: list[int] = []

    async def no_wait(seconds: float) -> None:
        asked.append(1)

    def never() -> Session:
        raise AssertionError("a session was opened without a slot")

    async def main() -> None:
        got = await session_in_slot(gone, MAILBOX, 3, new=never, parked=lambda: None,
                                    stopping=lambda: len(asked) >= 3, sleep=no_wait)
        assert got is None and len(asked) == 3
        with pytest.raises(StoreError, match="cannot connect"):
            async with message_budget(gone, MAILBOX, 5):
                raise AssertionError("a message went without its place in the budget")

    try:
        asyncio.run(main())
    finally:
        gone.close()
