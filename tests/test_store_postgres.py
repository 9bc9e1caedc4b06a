"""The PostgreSQL job store: the job-store contract on a real PostgreSQL, and what only it has
(a schema migrated on purpose, timestamptz, claims that skip locked rows, connections named
without their password).

Every test gets a schema of its own in the test database (``search_path`` set through the
connection string), dropped afterwards, so tests never see each other's jobs. The server is
``$FAXGW_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``); when it
cannot be reached the tests fail and say how to start one, they never skip.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from faxgw.app.wiring import migrate_store, open_store
from faxgw.config import STORE_PASSWORD_ENV, config_from_dict, load_config
from faxgw.domain.errors import ConfigError, StoreError
from faxgw.domain.jobs import Job, JobState, new_job_id
from faxgw.ports import JobStore
from faxgw.store.postgres import SCHEMA_VERSION, PostgresJobStore, describe, migrate_schema
from faxgw.store.postgres.connection import Database
from faxgw.store.postgres.pool import PooledConnections
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, FakeClock, MakeConfig
from .store_contract import JobStoreContract, MakeStore
from .test_service import _config, _one_page, _queue, _start

SERVER = os.environ.get("FAXGW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HOW_TO_START = (
    "start one (Debian: apt-get install postgresql && pg_ctlcluster 15 main start; a local "
    "user 'postgres' with trust auth and a database 'test'), or point FAXGW_TEST_POSTGRES at "
    "one (postgresql://user@host:port/database)")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        problem = " ".join(str(exc).split())
    pytest.fail(f"PostgreSQL at {describe(SERVER)} cannot be reached ({problem}): {HOW_TO_START}",
                pytrace=False)


def _with_schema(schema: str) -> str:
    """The server's URL with ``search_path`` set to ``schema`` (libpq's ``options``)."""
    joiner = "&" if "?" in SERVER else "?"
    return f"{SERVER}{joiner}options={quote(f'-c search_path={schema}')}"


@pytest.fixture
def schema() -> Iterator[str]:
    """A new, empty schema of this test's own; its connection string."""
    name = f"faxgw_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield _with_schema(name)
    finally:
        with _admin() as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def migrated(schema: str) -> str:
    """A schema with the store's tables."""
    assert migrate_schema(schema) == (0, SCHEMA_VERSION)
    return schema


class TestPostgresJobStore(JobStoreContract):
    """The contract, on one schema per test. The test's clock stands in for the database's
    too (leases included): the contract advances it to end leases, and compares every time
    with the one it set (the database's own clock: ``test_cluster_clock``)."""

    @pytest.fixture
    def make_store(self, migrated: str, clock: FakeClock) -> Iterator[MakeStore]:
        made: list[tuple[JobStore, int]] = []

        def make() -> JobStore:
            store = PostgresJobStore(migrated, clock=clock, database_clock=clock)
            made.append((store, threading.get_ident()))
            return store

        yield make
        for store, thread in made:
            if thread == threading.get_ident():  # a thread closes the handles it made
                store.close()


@pytest.fixture
def store(migrated: str, clock: FakeClock) -> Iterator[PostgresJobStore]:
    store = PostgresJobStore(migrated, clock=clock, database_clock=clock)
    yield store
    store.close()


def _job(**fields: object) -> Job:
    return Job(id=new_job_id(), number="+4930123456",
               recipient="+4930123456@fax.example.net", sender="fax@contoso.com",
               **fields)  # type: ignore[arg-type]


def _raw(conninfo: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(conninfo, autocommit=True)


# -- the schema ------------------------------------------------------------------------------


def test_migrate_creates_the_schema_once(schema: str) -> None:
    """Created at the current version; a second run finds nothing to do and changes nothing."""
    assert migrate_schema(schema) == (0, SCHEMA_VERSION)
    with _raw(schema) as db:
        db.execute("INSERT INTO inbox_cursors VALUES ('m', 'c', now())")
    assert migrate_schema(schema) == (SCHEMA_VERSION, SCHEMA_VERSION)
    with _raw(schema) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("SELECT cursor FROM inbox_cursors").fetchall() == [("c",)]


def test_two_migrations_at_once_create_the_schema_once(schema: str) -> None:
    """Two hosts running ``faxgw store migrate`` together: one creates, the other finds it
    done (an advisory lock puts them one after the other)."""
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate_schema(schema))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * 2


def test_a_store_on_a_missing_schema_says_to_migrate(schema: str) -> None:
    with pytest.raises(StoreError, match="faxgw store migrate"):
        PostgresJobStore(schema)
    with _raw(schema) as db:  # opening changed nothing
        assert db.execute("SELECT to_regclass('jobs')").fetchone() == (None,)


def test_an_older_schema_is_refused_until_migrated(schema: str) -> None:
    """A schema at an older version (here: the version table of a migration that created
    nothing yet) is refused with the command to run; the migration brings it up to date."""
    with _raw(schema) as db:
        db.execute("CREATE TABLE schema_version (one boolean PRIMARY KEY DEFAULT true, "
                   "version integer NOT NULL, updated timestamptz NOT NULL DEFAULT now())")
        db.execute("INSERT INTO schema_version (version) VALUES (0)")
    with pytest.raises(StoreError, match=r"older .*faxgw store migrate"):
        PostgresJobStore(schema)
    assert migrate_schema(schema) == (0, SCHEMA_VERSION)
    PostgresJobStore(schema).close()


def test_a_newer_schema_is_refused_and_left_alone(migrated: str) -> None:
    """An older faxgw must not write to tables a newer one has migrated."""
    with _raw(migrated) as db:
        db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        PostgresJobStore(migrated)
    with pytest.raises(StoreError, match="newer"):
        migrate_schema(migrated)
    with _raw(migrated) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (
            SCHEMA_VERSION + 1,)


# -- what only PostgreSQL has -----------------------------------------------------------------


def test_times_are_timestamptz_and_come_back_in_utc(store: PostgresJobStore,
                                                   migrated: str) -> None:
    berlin = timezone(timedelta(hours=1))
    due = datetime(2026, 11, 28, 5, 0, 0, 123, tzinfo=berlin)
    job = _job(next_attempt_at=due)
    store.add(job)
    with _raw(migrated) as db:
        types = dict(db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'jobs'").fetchall())
        [(stored,)] = db.execute("SELECT next_attempt_at FROM jobs WHERE id = %s", (job.id,))
    for name in ("created", "updated", "next_attempt_at", "age_from", "paused_since",
                 "lease_until"):
        assert types[name] == "timestamp with time zone", name
    assert stored == due
    again = store.get(job.id).next_attempt_at
    assert again == due and again is not None and again.tzinfo is UTC


def test_a_report_keeps_its_raw_message_as_bytea(store: PostgresJobStore, migrated: str,
                                                 clock: FakeClock) -> None:
    from faxgw.domain.reports import MatchedBy, Outcome, Report

    raw = bytes(range(256)) * 4
    store.add_report(Report(key="m/1", mailbox="fax@contoso.com", received=clock(),
                            sender="", subject="", kind="dsn", outcome=Outcome.FAILED,
                            code=None, job_id=None, matched_by=MatchedBy.NONE, summary="",
                            raw=raw))
    with _raw(migrated) as db:
        assert db.execute("SELECT pg_typeof(raw)::text, raw FROM reports").fetchone() == (
            "bytea", raw)
    found = store.get_report("m/1")
    assert found is not None and found.raw == raw


def test_a_claim_skips_rows_another_runner_holds(store: PostgresJobStore, migrated: str,
                                                 clock: FakeClock) -> None:
    """A row locked by another transaction (a runner claiming or recording an outcome this
    very moment) is passed over at once, not waited for; it is taken once it is free."""
    base = clock() - timedelta(hours=1)
    first, second = _job(created=base), _job(created=base + timedelta(seconds=1))
    store.add(first)
    store.add(second)
    with psycopg.connect(migrated) as other:  # a transaction, open until the block ends
        other.execute("SET lock_timeout = '10s'")
        other.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (first.id,))
        started = time.monotonic()
        claimed = store.claim_due(clock(), 10, owner="runner-a",
                                  lease_until=clock() + timedelta(minutes=1))
        assert time.monotonic() - started < 5
        assert [job.id for job in claimed] == [second.id]
    again = store.claim_due(clock(), 10, owner="runner-a",
                            lease_until=clock() + timedelta(minutes=1))
    assert [job.id for job in again] == [first.id]


def test_purges_on_two_hosts_at_once_share_the_work(migrated: str, clock: FakeClock) -> None:
    """Two services purging together each delete some of the old jobs, none twice, and
    neither fails or waits for the other."""
    seed = PostgresJobStore(migrated, clock=clock)
    try:
        old = clock() - timedelta(days=60)
        for _ in range(300):
            seed.add(_job(created=old, state=JobState.FAILED, code=401))
        clock.advance(86400)
        results: list[list[str]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(2, timeout=30)

        def purge() -> None:
            store = PostgresJobStore(migrated, clock=clock)
            try:
                barrier.wait()
                results.append(store.purge(clock()))
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                store.close()

        threads = [threading.Thread(target=purge) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        purged = [job_id for ids in results for job_id in ids]
        assert len(purged) == len(set(purged)) == 300
        assert sum(seed.counts().values()) == 0
    finally:
        seed.close()


def _terminate(pid: int) -> None:
    """End a server process as an administrator (or a failover) would, and wait until it is
    gone."""
    with _admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def pooled_backends(database: Database) -> list[int]:
    """The server processes of the idle connections in a store's pool."""
    source = database.source
    assert isinstance(source, PooledConnections) and source._pool is not None
    return [db.info.backend_pid for db in list(source._pool._pool)]


def terminate_pool(database: Database) -> list[int]:
    """End every idle connection of a store's pool at the server; their processes."""
    ended = pooled_backends(database)
    assert ended
    for pid in ended:
        _terminate(pid)
    return ended


def test_the_store_connects_again_after_the_server_dropped_it(store: PostgresJobStore,
                                                              clock: FakeClock) -> None:
    """A connection the server ended (a restart, a failover, an administrator) is opened
    again within the call under way: a read is read again, a write that had not committed
    runs again from its start, and nothing is written twice."""
    job = _job(created=clock())
    store.add(job)
    terminate_pool(store._database)
    assert store.get(job.id).id == job.id
    terminate_pool(store._database)
    store.add_event(job.id, "note", "once")
    terminate_pool(store._database)
    [claimed] = store.claim_due(clock(), 10, owner="r1", lease_until=clock() + timedelta(
        seconds=60))
    assert claimed.id == job.id
    assert [e.event for e in store.history(job.id)] == ["accepted", "note", "sending"]


def test_a_write_cut_off_is_run_again_unless_it_was_cut_off_committing(
        store: PostgresJobStore, clock: FakeClock) -> None:
    """A transaction whose connection ends before its commit was rolled back: it runs once
    more. One whose connection ends at its commit may have been written: it is not run
    again, and the error says so."""
    job = _job(created=clock())
    store.add(job)
    runs: list[int] = []

    def cut_midway(db: psycopg.Connection[dict[str, object]]) -> None:
        runs.append(db.info.backend_pid)
        if len(runs) == 1:
            _terminate(db.info.backend_pid)
        store._event(db, job.id, "note", None, None, "midway")

    store._transact(cut_midway)
    assert len(runs) == 2 and runs[0] != runs[1]

    def cut_at_commit(db: psycopg.Connection[dict[str, object]]) -> None:
        runs.append(db.info.backend_pid)
        store._event(db, job.id, "note", None, None, "at commit")
        _terminate(db.info.backend_pid)

    with pytest.raises(StoreError, match="may or may not have been written"):
        store._transact(cut_at_commit)
    assert len(runs) == 3
    assert [e.detail for e in store.history(job.id)][1:] == ["midway"]


def test_errors_name_the_database_never_its_password() -> None:
    password = "s3cret-" + secrets.token_hex(4)
    with pytest.raises(StoreError) as caught:
        PostgresJobStore("postgresql://faxgw@127.0.0.1:1/faxgw", password=password)
    message = str(caught.value)
    assert "postgresql://faxgw@127.0.0.1:1/faxgw" in message and password not in message
    assert describe(f"host=db.example.net user=faxgw password={password} dbname=fax") == (
        "postgresql://faxgw@db.example.net/fax")


# -- configuration and wiring ----------------------------------------------------------------


def test_a_url_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    for url in ("postgresql://faxgw:hunter2@db.example.net/faxgw",
                "postgresql://faxgw@db.example.net/faxgw?password=hunter2"):
        with pytest.raises(ConfigError, match="password_file") as caught:
            config_from_dict({"store": {"url": url}}, base=tmp_path)
        assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"\[store\] url"):
        config_from_dict({"store": {"url": "mysql://db.example.net/faxgw"}}, base=tmp_path)


def test_store_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = config_from_dict({"store": {"url": "postgresql://faxgw@db/faxgw",
                                         "password_file": "db-password", "ca_file": "ca.pem"}},
                              base=tmp_path)
    assert config.store.password_file == tmp_path / "db-password"
    assert config.store.ca_file == tmp_path / "ca.pem"
    assert config.store.lease_seconds == 60


def test_the_password_comes_from_the_environment_or_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "db-password").write_text("from-file\n")
    config = config_from_dict({"store": {"url": "postgresql://faxgw@db/faxgw",
                                         "password_file": "db-password"}}, base=tmp_path)
    monkeypatch.delenv(STORE_PASSWORD_ENV, raising=False)
    assert config.store.password() == "from-file"
    monkeypatch.setenv(STORE_PASSWORD_ENV, "from-env")
    assert config.store.password() == "from-env"
    assert "from-file" not in repr(config) and "from-env" not in repr(config)


def test_open_store_gives_the_postgres_store_when_a_url_is_set(
    migrated: str, make_config: MakeConfig, clock: FakeClock
) -> None:
    config = make_config(store={"url": migrated})
    store = open_store(config, clock=clock)
    try:
        assert isinstance(store, PostgresJobStore)
        store.add(_job(created=clock()))
        assert store.counts()[JobState.QUEUED] == 1
    finally:
        store.close()


def test_the_password_reaches_libpq_apart_from_the_url(
    migrated: str, make_config: MakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password is handed to libpq on its own: the connection has it, the connection
    string it reports does not."""
    (tmp_path / "db-password").write_text("from-the-file\n")
    monkeypatch.delenv(STORE_PASSWORD_ENV, raising=False)
    config = make_config(store={"url": migrated, "password_file": "db-password"})
    for expected in ("from-the-file", "from-the-environment"):
        if expected == "from-the-environment":
            monkeypatch.setenv(STORE_PASSWORD_ENV, expected)
        store = open_store(config)
        try:
            assert isinstance(store, PostgresJobStore)
            password, dsn = store._read(lambda db: (db.info.password, db.info.dsn))
            assert password == expected
            assert expected not in dsn and expected not in store.where
        finally:
            store.close()


def test_open_store_refuses_a_schema_not_migrated_yet(schema: str,
                                                      make_config: MakeConfig) -> None:
    config = make_config(store={"url": schema})
    with pytest.raises(StoreError, match="faxgw store migrate"):
        open_store(config)
    assert migrate_store(config)[1:] == (0, SCHEMA_VERSION)
    open_store(config).close()


def test_a_ca_file_makes_the_connection_verify_the_server(
    migrated: str, make_config: MakeConfig, tmp_path: Path
) -> None:
    """With ``ca_file`` TLS is required and the server's name checked (verify-full): a
    server without TLS is refused, not talked to in clear text."""
    with _admin() as admin:
        [(ssl,)] = admin.execute("SHOW ssl").fetchall()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate\n")
    config = make_config(store={"url": migrated, "ca_file": str(ca_file)})
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(config)
    if ssl == "off":  # what the refusal says depends on whether the server offers TLS
        with pytest.raises(StoreError, match="SSL"):
            open_store(config)


# -- the command line ------------------------------------------------------------------------


#: Set for the command line's runs: it must never show up in what they print.
CLI_PASSWORD = "cli-" + secrets.token_hex(8)


def _faxgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, STORE_PASSWORD_ENV: CLI_PASSWORD})
    assert CLI_PASSWORD not in done.stdout + done.stderr
    return done


def test_store_migrate_on_the_command_line(schema: str, tmp_path: Path) -> None:
    """Before it, commands that need the store refuse and say what to run; it creates the
    schema and says so; run again it has nothing to do."""
    config = tmp_path / "faxgw.toml"
    config.write_text(f'[spool]\ndir = "spool"\n[store]\nurl = "{schema}"\n')
    for command in (["jobs"], ["run", "--once"]):
        refused = _faxgw(config, *command)
        assert refused.returncode == 1, command
        assert refused.stderr.startswith("faxgw: job store postgresql://"), refused.stderr
        assert "faxgw store migrate" in refused.stderr and "Traceback" not in refused.stderr
    first = _faxgw(config, "store", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"schema version {SCHEMA_VERSION}, created")
    again = _faxgw(config, "store", "migrate", "--json")
    assert again.returncode == 0, again.stderr
    assert f'"before": {SCHEMA_VERSION}, "version": {SCHEMA_VERSION}' in again.stdout
    assert _faxgw(config, "jobs").returncode == 0
    status = _faxgw(config, "status")
    assert status.returncode == 0, status.stderr
    assert "queued 0" in status.stdout


# -- several runners, one database -----------------------------------------------------------


@pytest.mark.slow
def test_two_services_and_a_cron_run_on_one_database_send_each_of_100_jobs_once(
    migrated: str, tmp_path: Path
) -> None:
    """Two ``faxgw run`` services and a ``faxgw run --once`` share one PostgreSQL schema
    (and the spool, which holds the documents in this version) while jobs arrive in waves:
    every job is sent by one of them, arrives exactly once, none is taken back, and the
    mailbox never has more than its three sessions open."""
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=0.01) as server:
        config = _config(tmp_path, server)
        with config.open("a", encoding="utf-8") as toml:
            toml.write(f'[store]\nurl = "{migrated}"\n')
        page = _one_page(tmp_path)
        services = [_start(config), _start(config)]
        ids: list[str] = []

        def counts() -> dict[str, int]:
            store = open_store(load_config(config))
            try:
                return {state.value: n for state, n in store.counts().items() if n}
            finally:
                store.close()

        def started(runners: int, *, unless: subprocess.Popen[str] | None = None) -> None:
            """Wait until ``runners`` runners hold their locks, and past their start-up: a
            runner starting registers the job folders the store does not know, which would
            race with a job being queued by this test (its folder made, its row not yet)."""
            folder = tmp_path / "spool" / "state" / "runners"
            deadline = time.monotonic() + 60
            while len(list(folder.glob("*.lock"))) < runners and time.monotonic() < deadline:
                if unless is not None and unless.poll() is not None:
                    return
                time.sleep(0.05)
            time.sleep(1.0)

        try:
            started(2)
            for _ in range(5):
                ids += _queue(config, page, 10)
                time.sleep(0.3)
            with subprocess.Popen([sys.executable, "-m", "faxgw", "--config", str(config),
                                   "run", "--once", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) as cron:
                started(3, unless=cron)
                for _ in range(5):
                    ids += _queue(config, page, 10)
                    time.sleep(0.3)
                cron_out, cron_err = cron.communicate(timeout=300)
            assert cron.returncode == 0, cron_err
            deadline = time.monotonic() + 120
            while counts() != {"sent": 100} and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            outputs = []
            for service in services:
                service.send_signal(signal.SIGTERM)
                outputs.append(service.communicate(timeout=60))
        sent_by = [json.loads(cron_out)["sent"]]
        for service, (_, stderr) in zip(services, outputs, strict=True):
            assert service.returncode == 0, stderr
            assert "Traceback" not in stderr and "not recorded" not in stderr, stderr
            sent_by.append(stderr.count(" sent to "))
        assert sum(sent_by) == 100, sent_by
        assert sum(1 for count in sent_by if count) >= 2, sent_by  # the work was shared
        assert counts() == {"sent": 100}
        received = collections.Counter(m.message["Message-ID"] for m in server.messages)
        assert sorted(received.values()) == [1] * 100
        # Three runners, one mailbox: its three connections were shared, never exceeded.
        assert server.max_concurrent_sessions_by_user[USER] <= 3
        assert set(received) == {f"<faxgw.{job_id}@contoso.com>" for job_id in ids}
        store = open_store(load_config(config))
        try:
            events = [e.event for job_id in ids for e in store.history(job_id)]
        finally:
            store.close()
        assert "recovered" not in events and "requeued" not in events
        assert events.count("sent") == 100


def test_store_migrate_without_a_url_opens_the_sqlite_store(tmp_path: Path) -> None:
    """SQLite upgrades itself when opened: the command opens it and tells its version."""
    from faxgw.store.sqlite import SCHEMA_VERSION as SQLITE_VERSION

    config = tmp_path / "faxgw.toml"
    config.write_text('[spool]\ndir = "spool"\n')
    done = _faxgw(config, "store", "migrate", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "store": f"sqlite {tmp_path / 'spool' / 'state' / 'faxgw.db'}",
        "before": SQLITE_VERSION, "version": SQLITE_VERSION}
    assert (tmp_path / "spool" / "state" / "faxgw.db").is_file()
