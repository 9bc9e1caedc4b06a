"""Start-up cost with many stored jobs: ``faxgw run --once`` with nothing due.

Fills a spool with ``--jobs`` finished jobs (a store row and a job folder with its
``job.json`` each, as the gateway leaves them), then times ``faxgw run --once`` on it, cold
(the page cache dropped for the spool when we may: root) and warm. The anchor in the same run
is the same command on an empty spool (what a run costs with nothing stored).

    .venv/bin/python bench/startup.py --jobs 100000
    FAXGW_BENCH_SRC=/path/to/other/checkout .venv/bin/python bench/startup.py --jobs 10000

``FAXGW_BENCH_SRC`` names the folder holding the ``faxgw/`` package to measure (default: this
checkout); the spool is filled by that copy's own store, so its own schema is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

SOURCE = Path(os.environ.get("FAXGW_BENCH_SRC", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(SOURCE))

from faxgw.domain import codes  # noqa: E402
from faxgw.domain.jobs import Job, JobState, new_job_id  # noqa: E402
from faxgw.intake.layout import SpoolLayout  # noqa: E402
from faxgw.store import SQLiteJobStore  # noqa: E402


def config_text(spool: Path) -> str:
    # Nothing is due, so no mail server is contacted: the address need not answer.
    return (f'[spool]\ndir = "{spool}"\nsettle_seconds = 0\n'
            '[smtp]\nhost = "127.0.0.1"\nport = 9\nsender = "fax@contoso.com"\n')


def fill(spool: Path, jobs: int) -> None:
    """``jobs`` sent jobs, each with its folder and job.json, through the store's own API."""
    store = SQLiteJobStore(SpoolLayout(spool).database)
    folders = spool / "jobs"
    folders.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(days=1)
    try:
        for index in range(jobs):
            job_id = new_job_id()
            job = Job(id=job_id, number="+4930123456", state=JobState.FAILED,
                      code=codes.INVALID_NUMBER, created=now, updated=now,
                      recipient="+4930123456@fax.example.net", sender="fax@contoso.com",
                      documents=["letter.pdf"], source="submit")
            store.add(job)
            folder = folders / job_id
            folder.mkdir()
            (folder / "job.json").write_text(json.dumps({
                "id": job_id, "number": "+4930123456", "documents": ["letter.pdf"],
                "source": "submit"}))
            if index and index % 20000 == 0:
                print(f"  {index} stored", file=sys.stderr)
    finally:
        store.close()


def run_once(config: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config), "run",
                           "--once"], capture_output=True, text=True, env=env, check=False,
                          cwd=config.parent)  # not this checkout: -m finds the current folder
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"faxgw run --once failed: {done.stderr[-2000:]}")
    return took


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as folder:
        root = Path(folder)
        empty, full = root / "empty", root / "full"
        for spool in (empty, full):
            (spool / "outgoing").mkdir(parents=True)
            (root / f"{spool.name}.toml").write_text(config_text(spool))
        started = time.perf_counter()
        fill(full, args.jobs)
        filled = time.perf_counter() - started
        run_once(root / "empty.toml")  # first run: imports compiled, spool made ready
        run_once(root / "full.toml")
        check = SQLiteJobStore(SpoolLayout(full).database)
        stored = sum(check.counts().values())
        check.close()
        if stored != args.jobs:  # a start that registered folders again would show here
            raise SystemExit(f"{stored} jobs in the store after a run, {args.jobs} expected")
        warm_empty = statistics.median(run_once(root / "empty.toml") for _ in range(args.repeat))
        warm_full = statistics.median(run_once(root / "full.toml") for _ in range(args.repeat))
        cold = [run_once(root / "full.toml") for _ in range(args.repeat) if drop_caches()]
    result = {
        "source": str(SOURCE), "jobs": args.jobs, "fill_seconds": round(filled, 1),
        "empty_warm_s": round(warm_empty, 3), "full_warm_s": round(warm_full, 3),
        "full_cold_s": round(statistics.median(cold), 3) if cold else None,
        "full_over_empty": round(warm_full / warm_empty, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"faxgw from {SOURCE}: {args.jobs} stored jobs (filled in {filled:.0f} s)")
    print(f"  run --once, nothing stored:  {warm_empty:.3f} s (warm)")
    print(f"  run --once, {args.jobs} stored: {warm_full:.3f} s (warm)"
          + (f", {result['full_cold_s']:.3f} s (cold cache)" if cold else ""))
    print(f"  stored / empty: {result['full_over_empty']}")


if __name__ == "__main__":
    main()
