"""Registering taken jobs in the job store: one transaction per batch against one per job.

The intake registers the job folders it has taken in batches (``register_all``: one
transaction for up to 64 jobs); before, each job was a transaction of its own (``register``).
Both are timed here in the same run, on fresh stores of the same kind: SQLite in the spool,
and PostgreSQL (``--postgres``, default ``$FAXGW_TEST_POSTGRES`` or
``postgresql://postgres@127.0.0.1:5432/test``; a schema of its own, dropped afterwards).
The job folders are made before the clock (``Spool.submit``); only the registering is timed.

    .venv/bin/python bench/register.py [--jobs 1024] [--batch 64] [--repeat 3]
        [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(os.environ.get("FAXGW_BENCH_SRC") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from faxgw.app.wiring import open_store  # noqa: E402
from faxgw.config import Config, config_from_dict  # noqa: E402
from faxgw.intake.job_file import Intake  # noqa: E402
from faxgw.intake.register import register, register_all  # noqa: E402
from faxgw.intake.spool import Spool  # noqa: E402
from faxgw.ports import JobStore  # noqa: E402
from faxgw.store.postgres import migrate_schema  # noqa: E402

DEFAULT_POSTGRES = os.environ.get("FAXGW_TEST_POSTGRES",
                                  "postgresql://postgres@127.0.0.1:5432/test")


def prepared(folder: Path, jobs: int, url: str | None) -> tuple[Config, Spool, JobStore,
                                                                list[Intake]]:
    """A spool with ``jobs`` job folders taken and not registered, and its store."""
    raw: dict[str, object] = {"spool": {"dir": str(folder / "spool")},
                              "service": {"address": "{e164}@fax.example.net", "region": "DE"}}
    if url is not None:
        raw["store"] = {"url": url}
    config = config_from_dict(raw, base=folder)
    spool = Spool(config.spool.dir)
    spool.ensure()
    document = folder / "note.txt"
    document.write_text("Please call back about the contract.\n")
    intakes = [spool.submit("+4930123456", [document]) for _ in range(jobs)]
    return config, spool, open_store(config), intakes


def timed(kind: str, jobs: int, batch: int, server: str | None) -> float:
    """Milliseconds per job to register ``jobs`` folders, ``batch`` at a time (1: one
    transaction per job, as ``register`` does)."""
    schema = None
    url = None
    if server is not None:
        schema = f"faxgw_bench_{secrets.token_hex(4)}"
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        joiner = "&" if "?" in server else "?"
        url = f"{server}{joiner}options={quote(f'-c search_path={schema}')}"
        migrate_schema(url)
    try:
        with tempfile.TemporaryDirectory() as folder:
            config, spool, store, intakes = prepared(Path(folder), jobs, url)
            try:
                started = time.perf_counter()
                if batch == 1:
                    for intake in intakes:
                        register(intake, config=config, store=store, documents=spool)
                else:
                    for first in range(0, len(intakes), batch):
                        register_all(intakes[first:first + batch], config=config,
                                     store=store, documents=spool)
                seconds = time.perf_counter() - started
                assert sum(store.counts().values()) == jobs, kind
            finally:
                store.close()
    finally:
        if schema is not None and server is not None:
            with psycopg.connect(server, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return seconds / jobs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # a line per job would be what is measured
    stores: list[tuple[str, str | None]] = [("SQLite", None)]
    if not args.no_postgres:
        stores.append(("PostgreSQL", args.postgres))
    print(f"registering {args.jobs} taken jobs, faxgw from {ROOT} (median of {args.repeat})")
    print(f"  {'store':<12}{'one by one':>14}{f'batches of {args.batch}':>18}{'ratio':>8}")
    for kind, server in stores:
        single, batched = [], []
        for _ in range(args.repeat):  # alternated, so that both see the same machine
            single.append(timed(kind, args.jobs, 1, server))
            batched.append(timed(kind, args.jobs, args.batch, server))
        one, many = statistics.median(single), statistics.median(batched)
        print(f"  {kind:<12}{one:>11.3f} ms{many:>15.3f} ms{one / many:>7.1f}x")
    print("  (milliseconds per job; the ratio above 1: batches are faster)")


if __name__ == "__main__":
    main()
