"""Several hosts on one PostgreSQL queue: jobs per second with 1, 2 and 3 hosts, the claim's
latency with 100,000 finished jobs stored, and the memory a 36 MB attachment costs on its way
through the database, each beside SQLite on one host, in the same run.

1. **throughput**: N one-page jobs, spread over several sending mailboxes (manifests naming
   the sender), dropped evenly into the spools of H hosts; each host is a process of its own
   (a worker built as ``faxgw run`` builds it, render processes started) that takes its own
   drops, renders them and sends whatever it claims, round after round, until no job is left
   to send. Timed from the moment every host is told to go until the last one is done. Hosts
   share the machine's CPUs, as they would not in production.
2. **claim latency**: ``claim_due`` of 100 due jobs, in a store holding only them and in one
   that also holds 100,000 sent jobs; median of 15 claims.
3. **memory**: the growth of this process's peak RSS while a 36 MB attachment is stored in
   the database and brought back into a folder, as faxgw does it (1 MiB chunks, streamed), and
   as one ``bytea`` value written and read whole, for comparison.

Usage::

    .venv/bin/python bench/cluster.py [--jobs N] [--mailboxes M] [--delay-ms D]
        [--connections C] [--hosts 1,2,3] [--finished 100000] [--attachment-mb 36]
        [--skip-throughput] [--skip-claims] [--skip-memory] [--json]

PostgreSQL: ``$FAXGW_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
every case uses a schema of its own, dropped at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import psycopg  # noqa: E402
import throughput  # noqa: E402 - its test server, PDF and SQLite bulk insert

from faxgw.app.service import service_processes  # noqa: E402
from faxgw.app.wiring import build_worker, migrate_store, open_store  # noqa: E402
from faxgw.config import load_config  # noqa: E402
from faxgw.domain.jobs import Job, JobState  # noqa: E402
from faxgw.store.postgres import PostgresJobStore, migrate_schema  # noqa: E402
from faxgw.store.postgres.doc_cache import bring  # noqa: E402
from faxgw.store.postgres.documents import DocumentTable  # noqa: E402
from faxgw.store.sqlite import SQLiteJobStore  # noqa: E402

SERVER = os.environ.get("FAXGW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
UNFINISHED = (JobState.QUEUED, JobState.DEFERRED, JobState.SENDING)


@contextmanager
def schema() -> Iterator[str]:
    """A new schema in the test database; the URL that works in it."""
    name = f"faxgw_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in SERVER else "?"
    try:
        yield f"{SERVER}{joiner}options={quote(f'-c search_path={name}')}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


# -- 1. throughput -------------------------------------------------------------------------


def _write_config(folder: Path, server: throughput.Server, connections: int,
                  mailboxes: list[str], url: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "pw").write_text(throughput.PASSWORD + "\n")
    store = f'[store]\nurl = "{url}"\n' if url else ""
    path = folder / "faxgw.toml"
    path.write_text(
        f'[spool]\ndir = "spool"\nsettle_seconds = 0\n'
        f'[service]\naddress = "{throughput.ADDRESS}"\nregion = "DE"\n'
        f'[smtp]\nhost = "{server.host}"\nport = {server.port}\n'
        f'ca_file = "{server.ca_file}"\nsender = "{throughput.USER}"\ntimeout_seconds = 60\n'
        f'[auth]\nmethod = "password"\nusername = "{throughput.USER}"\npassword_file = "pw"\n'
        f"[intake]\nallowed_senders = {json.dumps(mailboxes)}\n"
        f"[limits]\nmessages_per_minute = 0\nconnections = {connections}\n{store}")
    return path


def _drop(config: Path, first: int, count: int, mailboxes: list[str], document: bytes) -> None:
    """``count`` manifests with their PDF into the host's ``outgoing/``, senders in turn."""
    outgoing = config.parent / "spool" / "outgoing"
    outgoing.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + count):
        (outgoing / f"page-{index:05d}.pdf").write_bytes(document)
        (outgoing / f"job-{index:05d}.fax").write_text(
            f'to = "{throughput.NUMBER}"\nfiles = ["page-{index:05d}.pdf"]\n'
            f'sender = "{mailboxes[index % len(mailboxes)]}"\n')


def host_main(config_path: Path) -> int:
    """One host (a child process): built and warm, it waits for "go" on stdin, then runs
    rounds until no job of the whole queue is left to send; prints what it did."""
    config = load_config(config_path)
    worker = build_worker(config, render_processes=service_processes())
    storing = _time_document_storage(worker.spool)
    if worker.render_pool is not None:
        worker.render_pool.warm()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    sent = rounds = 0
    try:
        while True:
            summary = asyncio.run(worker.run_once())
            rounds += 1
            sent += summary.sent
            counts = worker.store.counts()
            if not any(counts[state] for state in UNFINISHED):
                break
            if not summary.sent:
                time.sleep(0.05)  # the rest is claimed or still being rendered elsewhere
    finally:
        worker.close()
    print(json.dumps({"sent": sent, "rounds": rounds, "seconds": time.perf_counter() - start,
                      "storing_seconds": storing[0]}), flush=True)
    return 0


def _time_document_storage(spool: object) -> list[float]:
    """Seconds spent storing job files in the database (PostgreSQL hosts), accumulated."""
    spent = [0.0]
    table = getattr(spool, "table", None)
    if table is not None:
        put = table.put

        def timed(*args: Any, **kwargs: Any) -> None:
            begin = time.perf_counter()
            try:
                put(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - begin

        table.put = timed
    return spent


def _as_host(name: str, hosts: int) -> list[str]:
    """The command prefix that runs a host under a host name of its own (a UTS namespace,
    as root): hosts on one machine with one name would take each other's claims for those
    of runners that are gone (see README "Several hosts")."""
    if hosts == 1:
        return []
    if shutil.which("unshare") is None:
        raise SystemExit("several hosts on one machine need unshare (util-linux), as root")
    return ["unshare", "--uts", "sh", "-c", f'hostname {name} && exec "$0" "$@"']


def run_case(workdir: Path, server: throughput.Server, args: argparse.Namespace,
             hosts: int, url: str, document: bytes) -> dict[str, Any]:
    """N jobs through ``hosts`` hosts on one store (``url``; "": SQLite, one host)."""
    mailboxes = [f"fax{n}@contoso.com" for n in range(args.mailboxes)]
    configs = [_write_config(workdir / f"host{n}", server, args.connections, mailboxes, url)
               for n in range(hosts)]
    if url:
        migrate_store(load_config(configs[0]))
    share = -(-args.jobs // hosts)
    for n, config in enumerate(configs):
        _drop(config, n * share, min(share, args.jobs - n * share), mailboxes, document)
    before, _ = server.received()
    processes = [subprocess.Popen(_as_host(f"bench-host-{n}", hosts) + [
                     sys.executable, __file__, "--host", str(config)],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for n, config in enumerate(configs)]
    for process in processes:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("a host did not start")
    start = time.perf_counter()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=1800)
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    received, _ = server.wait_received(before + args.jobs)
    store = open_store(load_config(configs[0]))
    try:
        counts = {state.value: n for state, n in store.counts().items() if n}
    finally:
        store.close()
    return {"store": "postgresql" if url else "sqlite", "hosts": hosts, "seconds": wall,
            "jobs_per_second": args.jobs / wall, "received": received - before,
            "sent_by_host": [result["sent"] for result in results], "states": counts,
            "storing_seconds": [round(result["storing_seconds"], 2) for result in results]}


# -- 2. claim latency ----------------------------------------------------------------------


def _timed_claims(store: Any, repeat: int, put_back: Callable[[], None]) -> float:
    now = datetime.now(UTC)
    store.claim_due(now, 500, owner="bench", lease_until=now + timedelta(hours=1))
    put_back()  # one claim untimed: caches and plans warm, as in a running gateway
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        claimed = store.claim_due(now, 500, owner="bench", lease_until=now + timedelta(hours=1))
        times.append(time.perf_counter() - begin)
        assert len(claimed) == 100, len(claimed)
        put_back()
    return statistics.median(times) * 1000


def _due_jobs(store: Any) -> None:
    now = datetime.now(UTC)
    for index in range(100):
        store.add(Job(id=f"due{index:05d}", number=throughput.NUMBER,
                      recipient=throughput.RECIPIENT, sender=throughput.USER,
                      documents=["scan.pdf"], created=now - timedelta(seconds=100 - index)))


def claims_sqlite(workdir: Path, finished: int, repeat: int) -> float:
    store = SQLiteJobStore(workdir / f"claims-{finished}.db")
    try:
        if finished:
            throughput._bulk_insert(store, finished, JobState.SENT,  # noqa: SLF001
                                    datetime.now(UTC) - timedelta(days=400))
        _due_jobs(store)
        store._db.execute("ANALYZE")  # noqa: SLF001

        def put_back() -> None:
            with store._write():  # noqa: SLF001
                store._db.execute("UPDATE jobs SET state = 'queued', owner = NULL, "  # noqa: SLF001
                                  "lease_until = NULL WHERE state = 'sending'")

        return _timed_claims(store, repeat, put_back)
    finally:
        store.close()


def claims_postgres(finished: int, repeat: int) -> float:
    with schema() as url:
        migrate_schema(url)
        with psycopg.connect(url, autocommit=True) as db:
            if finished:
                db.execute(
                    "INSERT INTO jobs (id, created, updated, state, code, attempts, number, "
                    "recipient, sender, sender_key, subject, documents, pages, bytes, "
                    "message_id, last_reply, source) "
                    "SELECT 'sent' || lpad(n::text, 8, '0'), now() - interval '400 days' + "
                    "n * interval '1 second', now() - interval '400 days', 'sent', 0, 1, "
                    "%s, %s, %s, %s, 'Fax', '{scan.pdf}', 1, 30000, "
                    "'<faxgw.' || n || '@contoso.com>', '250 2.0.0 OK', 'outgoing' "
                    "FROM generate_series(1, %s) AS n",
                    (throughput.NUMBER, throughput.RECIPIENT, throughput.USER,
                     throughput.USER.casefold(), finished))
            db.execute("VACUUM ANALYZE jobs")
            store = PostgresJobStore(url)
            try:
                _due_jobs(store)
                db.execute("ANALYZE jobs")

                def put_back() -> None:
                    db.execute("UPDATE jobs SET state = 'queued', owner = NULL, "
                               "lease_until = NULL WHERE state = 'sending'")

                return _timed_claims(store, repeat, put_back)
            finally:
                store.close()


# -- 3. memory -----------------------------------------------------------------------------


def _peak_growth_kb(work: Callable[[], object]) -> int:
    """How far the process's peak RSS rose above its RSS while ``work`` ran."""
    throughput._reset_peak_rss()  # noqa: SLF001
    base = throughput._status_kb("VmRSS")  # noqa: SLF001
    work()
    return throughput._status_kb("VmHWM") - base  # noqa: SLF001


def run_memory(workdir: Path, megabytes: int) -> dict[str, Any]:
    attachment = workdir / "fax-big.pdf"
    attachment.write_bytes(os.urandom(megabytes * 1024 * 1024))  # incompressible, like G4
    result: dict[str, Any] = {"megabytes": megabytes}
    with schema() as url:
        migrate_schema(url)
        table = DocumentTable(url)
        try:
            table.listing("warm-up")  # the connection is open before anything is measured
            result["chunks_store_kb"] = _peak_growth_kb(
                lambda: table.put("big", [(attachment.name, attachment)]))
            result["chunks_bring_kb"] = _peak_growth_kb(
                lambda: bring(table, "big", workdir / "copy"))
            assert (workdir / "copy" / attachment.name).stat().st_size == megabytes << 20
        finally:
            table.close()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE whole (data bytea)")
            db.execute("ALTER TABLE whole ALTER COLUMN data SET STORAGE EXTERNAL")
            result["whole_store_kb"] = _peak_growth_kb(
                lambda: db.execute("INSERT INTO whole VALUES (%s)", (attachment.read_bytes(),)))

            def read_whole() -> None:
                row = db.execute("SELECT data FROM whole").fetchone()
                (workdir / "whole.pdf").write_bytes(bytes(row[0]) if row else b"")

            result["whole_read_kb"] = _peak_growth_kb(read_whole)
    return result


# -- the report ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--mailboxes", type=int, default=6)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--hosts", default="1,2,3")
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--claim-repeat", type=int, default=15)
    parser.add_argument("--attachment-mb", type=int, default=36)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-claims", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.host is not None:
        return host_main(args.host)
    report: dict[str, Any] = {"load": throughput.load_line(), "cpus": os.cpu_count(),
                              "jobs": args.jobs, "mailboxes": args.mailboxes,
                              "delay_ms": args.delay_ms, "connections": args.connections}
    with tempfile.TemporaryDirectory(prefix="faxgw-cluster-") as temporary:
        workdir = Path(temporary)
        if not args.skip_throughput:
            document = throughput.make_pdf(workdir / "letter.pdf", "letter").read_bytes()
            server = throughput.Server("process", args.delay_ms / 1000, workdir).start()
            try:
                cases = [run_case(workdir / "sqlite", server, args, 1, "", document)]
                for hosts in (int(n) for n in args.hosts.split(",")):
                    with schema() as url:
                        cases.append(run_case(workdir / f"pg{hosts}", server, args, hosts, url,
                                              document))
            finally:
                server.stop()
            report["throughput"] = cases
        if not args.skip_claims:
            report["claims_ms"] = {
                "sqlite": [claims_sqlite(workdir, 0, args.claim_repeat),
                           claims_sqlite(workdir, args.finished, args.claim_repeat)],
                "postgresql": [claims_postgres(0, args.claim_repeat),
                               claims_postgres(args.finished, args.claim_repeat)],
                "finished": args.finished}
        if not args.skip_memory:
            report["memory"] = run_memory(workdir, args.attachment_mb)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(f"machine: {report['cpus']} CPUs, {report['load']}")
    if "throughput" in report:
        print(f"\nthroughput: {report['jobs']} jobs, {report['mailboxes']} mailboxes x "
              f"{report['connections']} connections, replies {report['delay_ms']:.0f} ms late")
        base = report["throughput"][0]["jobs_per_second"]
        for case in report["throughput"]:
            print(f"  {case['store']:<10} {case['hosts']} host(s): {case['jobs_per_second']:7.1f}"
                  f" jobs/s ({case['jobs_per_second'] / base:4.2f} x SQLite)  "
                  f"{case['seconds']:6.1f} s  received {case['received']}  sent by host "
                  f"{case['sent_by_host']}  {case['states']}")
            if case["store"] == "postgresql":
                print(f"{'':16}storing job files, s per host: {case['storing_seconds']}")
    if "claims_ms" in report:
        claims = report["claims_ms"]
        print(f"\nclaim of 100 due jobs (median), alone / with {claims['finished']:,} sent jobs:")
        for store in ("sqlite", "postgresql"):
            small, large = claims[store]
            print(f"  {store:<10} {small:7.2f} ms / {large:7.2f} ms  ({large / small:4.2f} x)")
    if "memory" in report:
        memory = report["memory"]
        print(f"\npeak RSS growth for a {memory['megabytes']} MB attachment:")
        print(f"  1 MiB chunks:   store {memory['chunks_store_kb'] / 1024:6.1f} MB, "
              f"bring {memory['chunks_bring_kb'] / 1024:6.1f} MB")
        print(f"  one bytea value: store {memory['whole_store_kb'] / 1024:6.1f} MB, "
              f"read {memory['whole_read_kb'] / 1024:6.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
