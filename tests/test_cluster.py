"""Three gateway hosts on one PostgreSQL queue: 600 jobs, a host killed, the database
connections dropped, and every fax still sent once.

Each host is a ``faxgw run`` with a spool of its own and a host name of its own (a UTS
namespace: ``unshare --uts``, as root), so that each knows the others only through the
database, as separate machines would. They share one schema and one sending mailbox with
``[limits] connections = 3``, sending through the test SMTP server, which answers every
command late. The test's database user is its own, so that dropping "the hosts' database
connections" drops exactly those of this test.
"""

from __future__ import annotations

import collections
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from faxgw.store.postgres import migrate_schema
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER
from .test_store_postgres import SERVER, _admin

HOSTS = ("host-a", "host-b", "host-c")
JOBS_PER_HOST = 200
LEASE_SECONDS = 10
CONNECTIONS = 3


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """A user and a schema of this test's own: (its name, the URL to connect as it)."""
    name = f"faxgw_cluster_{secrets.token_hex(4)}"
    with _admin() as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    server = psycopg.conninfo.conninfo_to_dict(SERVER)
    url = (f"postgresql://{name}@{server.get('host', '127.0.0.1')}:{server.get('port', 5432)}/"
           f"{server['dbname']}?options={quote(f'-c search_path={name}')}")
    try:
        yield name, url
    finally:
        with _admin() as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE usename = %s", (name,))
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP ROLE {name}")


def _config(folder: Path, server: FaxSMTPServer, url: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "pw").write_text(PASSWORD)
    path = folder / "faxgw.toml"
    path.write_text(
        f'[spool]\ndir = "spool"\nsettle_seconds = 0.2\n'
        f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nca_file = "{server.ca_file}"\n'
        f'sender = "{USER}"\ntimeout_seconds = 10\n'
        f'[auth]\nmethod = "password"\nusername = "{USER}"\npassword_file = "pw"\n'
        f"[limits]\nmessages_per_minute = 0\nconnections = {CONNECTIONS}\n"
        f'[store]\nurl = "{url}"\nlease_seconds = {LEASE_SECONDS}\n'
    )
    return path


def _drop(config: Path, host: str, count: int, document: Path) -> None:
    """``count`` files into the host's drop folder, named after the host (a one-page PDF:
    quick to render, so that the hosts spend the test sending)."""
    folder = config.parent / "spool" / "outgoing" / "+4930123456"
    folder.mkdir(parents=True)
    data = document.read_bytes()
    for n in range(count):
        (folder / f"{host}-{n:03d}.pdf").write_bytes(data)


def _start(host: str, config: Path) -> subprocess.Popen[bytes]:
    """``faxgw run`` as host ``host`` (unshare execs: the process is the service itself),
    its output in ``<host>/log`` (a pipe nobody reads while it runs would fill and stop it)."""
    command = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$0" "$@"',
               sys.executable, "-m", "faxgw", "--config", str(config), "-v", "run"]
    with (config.parent / "log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _wait(what: str, condition: Callable[[], bool], timeout: float,
          situation: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}: {situation()}", pytrace=False)
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_hosts_send_600_jobs_once_through_a_kill_and_a_dropped_connection(
    tmp_path: Path, database: tuple[str, str], samples: Path,
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("this test needs unshare (util-linux) to give each host its own name",
                    pytrace=False)
    role, url = database
    migrate_schema(url)
    db = psycopg.connect(url, autocommit=True)

    def scalar(query: str, *params: object) -> int:
        row = db.execute(query, params).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0

    def situation() -> str:
        """The jobs by state and runner, and what the mail server saw."""
        rows = db.execute("SELECT state, split_part(coalesce(owner, ''), ':', 1), "
                          "preparing IS NOT NULL, count(*) FROM jobs GROUP BY 1, 2, 3 "
                          "ORDER BY 1, 2, 3").fetchall()
        return (f"jobs (state, host, preparing, count): {rows}; "
                f"{len(server.messages)} messages received")

    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=0.01) as server:
        configs = {host: _config(tmp_path / host, server, url) for host in HOSTS}
        for host, config in configs.items():
            _drop(config, host, JOBS_PER_HOST, samples / "letter.pdf")
        services = {host: _start(host, config) for host, config in configs.items()}
        total = JOBS_PER_HOST * len(HOSTS)
        try:
            # Every drop taken and rendered where it was dropped, then host C is killed
            # while it holds claims: the others send its jobs from the database.
            _wait("every job registered and rendered", lambda: scalar(
                "SELECT count(*) FILTER (WHERE preparing IS NULL AND pages IS NOT NULL) "
                "FROM jobs") == total, 120, situation)
            _wait("host C to hold claims", lambda: scalar(
                "SELECT count(*) FROM jobs WHERE state = 'sending' AND "
                "owner LIKE 'host-c:%%'") > 0 or len(server.messages) > total // 2, 60,
                situation)
            most = {"before the kill": server.max_concurrent_sessions_by_user.get(USER, 0)}
            services["host-c"].send_signal(signal.SIGKILL)
            services["host-c"].wait(timeout=30)
            killed = datetime.now(UTC)
            held_by_c = [str(row[0]) for row in db.execute(
                "SELECT id FROM jobs WHERE state = 'sending' AND owner LIKE 'host-c:%'")]
            killed_at = len(server.messages)
            # Every connection of the hosts dropped at once, while they work.
            _wait("more messages after the kill",
                  lambda: len(server.messages) >= min(total, killed_at + 50), 60, situation)
            most["before the drop"] = server.max_concurrent_sessions_by_user.get(USER, 0)
            with _admin() as admin:
                dropped = admin.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE usename = %s", (role,)).fetchone()
            db.close()
            db = psycopg.connect(url, autocommit=True)
            _wait("every job finished", lambda: scalar(
                "SELECT count(*) FROM jobs WHERE state IN ('sent', 'unconfirmed')") == total,
                150, situation)
        finally:
            for service in services.values():
                if service.poll() is None:
                    service.send_signal(signal.SIGTERM)
            for service in services.values():
                service.wait(timeout=60)
            outputs = {host: (config.parent / "log").read_text(errors="replace")
                       for host, config in configs.items()}
    try:
        most["in all"] = server.max_concurrent_sessions_by_user.get(USER, 0)
        problems = _problems(db, server, outputs, services, killed_at=killed_at, total=total,
                             most=most)
        problems += _taken_over(db, held_by_c, killed)
    finally:
        db.close()
    assert held_by_c, "host C held no claim when it was killed"
    assert dropped is not None and dropped[0] > 0, "no database connection was dropped"
    assert problems == []


def _problems(db: psycopg.Connection[tuple[object, ...]], server: FaxSMTPServer,
              outputs: dict[str, str], services: dict[str, subprocess.Popen[bytes]], *,
              killed_at: int, total: int, most: dict[str, int]) -> list[str]:
    """Everything the run got wrong, all of it (a failure shows the whole picture)."""
    problems = []
    for host in ("host-a", "host-b"):
        log = outputs[host]
        if services[host].returncode != 0 or "Traceback" in log:
            tail = "\n".join(log.splitlines()[-5:])
            problems.append(f"{host} ended with {services[host].returncode}: {tail}")
    states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    if sum(states.values()) != total or not set(states) <= {"sent", "unconfirmed"}:
        problems.append(f"jobs by state: {states}")
    ids = [str(row[0]) for row in db.execute("SELECT id FROM jobs").fetchall()]
    unconfirmed = {str(row[0]) for row in db.execute(
        "SELECT id FROM jobs WHERE state = 'unconfirmed'").fetchall()}
    received = collections.Counter(str(m.message["Message-ID"]) for m in server.messages)
    known = {f"<faxgw.{job_id}@contoso.com>" for job_id in ids}
    if set(received) - known:
        problems.append(f"messages of no job: {sorted(set(received) - known)[:5]}")
    for job_id in ids:
        times = received[f"<faxgw.{job_id}@contoso.com>"]
        if job_id in unconfirmed:
            if times > 1:  # it may have left once; it is never sent again by itself
                problems.append(f"{job_id}: unconfirmed, yet received {times} times")
        elif times == 0:
            problems.append(f"{job_id}: sent, yet never received")
        elif times > 1:
            # More than once only where the history says it may have left before.
            details = [str(row[0]) for row in db.execute(
                "SELECT event || ': ' || detail FROM history WHERE job_id = %s ORDER BY seq",
                (job_id,)).fetchall()]
            if times > 2 or not any("possibly" in d or "may have" in d for d in details):
                problems.append(f"{job_id}: received {times} times; history {details}")
    # Host C's jobs, taken in at C only, were sent by the others after it died.
    if not any(_source_is_c(db, m.message) for m in server.messages[killed_at:]):
        problems.append("no job taken in at host C was sent after it was killed")
    # Never more than the mailbox's connections at once, all hosts together.
    if most["in all"] > CONNECTIONS:
        problems.append(f"more sessions at once for {USER} than its {CONNECTIONS} connections, "
                        f"at most (so far): {most}")
    return problems


def _taken_over(db: psycopg.Connection[tuple[object, ...]], job_ids: list[str],
                killed: datetime) -> list[str]:
    """The jobs the killed host held are taken back once their lease ended (not before:
    it might have been alive), and finished by the others."""
    problems = []
    for job_id in job_ids:
        row = db.execute("SELECT min(at) FROM history WHERE job_id = %s AND event = "
                         "'recovered' AND at > %s", (job_id, killed)).fetchone()
        taken_back = row[0] if row else None
        if not isinstance(taken_back, datetime):
            problems.append(f"{job_id}: held by the killed host, never taken back")
        elif taken_back < killed + timedelta(seconds=LEASE_SECONDS / 2):
            problems.append(f"{job_id}: taken back {taken_back - killed} after the kill, "
                            f"before its lease ({LEASE_SECONDS} s) can have ended")
    return problems


def _source_is_c(db: psycopg.Connection[tuple[object, ...]], message: object) -> bool:
    """Whether a received message is of a job taken in at host C (its job's source)."""
    message_id = str(message["Message-ID"])  # type: ignore[index]
    job_id = message_id.removeprefix("<faxgw.").split("@")[0]
    row = db.execute("SELECT source FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return row is not None and "host-c-" in str(row[0])
