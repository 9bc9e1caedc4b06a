"""The spool's intake: how fast dropped files become registered jobs, and at what memory.

``--files`` one-page text files are dropped into ``outgoing/<number>/`` (outside the clock),
then taken as ``faxgw run`` takes them (``Worker``'s intake: claim by rename into the job's
folder with fsync, register in the job store, render in the service's render processes).
Reported: when the last file was registered (files/s taken), when the last was rendered, and
the peak RSS of the worker's process and of its largest render process. The anchor in the
same run is the bare durable move any spool must make: each file renamed into a folder of
its own, and that folder fsynced. Nothing is sent.

    .venv/bin/python bench/intake.py --files 10000

Run in a child process of its own for each side (peak memory is per process). Everything
runs in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("FAXGW_BENCH_SRC") or Path(__file__).resolve().parent.parent)


def drop(folder: Path, files: int) -> Path:
    out = folder / "spool" / "outgoing" / "+4930123456"
    out.mkdir(parents=True)
    past = time.time() - 60  # settled
    for n in range(files):
        path = out / f"note-{n:05d}.txt"
        path.write_text(f"Fax note number {n}\nPlease call back about the contract.\n")
        os.utime(path, (past, past))
    return out


def faxgw_side(folder: Path, files: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from faxgw.app.wiring import build_worker
    from faxgw.config import config_from_dict
    from faxgw.engine.outcomes import RunSummary
    from faxgw.engine.renderpool import service_processes

    config = config_from_dict({
        "spool": {"dir": str(folder / "spool"), "settle_seconds": 0},
        "service": {"address": "{e164}@fax.example.net", "region": "DE"},
        "smtp": {"sender": "fax@contoso.com", "host": "127.0.0.1", "port": 9},
    }, base=folder)
    drop(folder, files)
    worker = build_worker(config, render_processes=service_processes())
    worker.spool.ensure()
    worker.startup()
    assert worker.render_pool is not None
    worker.render_pool.warm()  # as faxgw run does at its start
    last: list[float] = []
    register = worker._register_batch

    def timed(intakes: list, summary: RunSummary) -> list:  # type: ignore[type-arg]
        jobs = register(intakes, summary)
        last.append(time.perf_counter())
        return jobs

    worker._register_batch = timed  # type: ignore[method-assign]
    summary = RunSummary()
    started = time.perf_counter()
    asyncio.run(worker._take_intake_overlapped(summary, asyncio.Event()))
    rendered = time.perf_counter() - started
    worker.close()
    if summary.taken != files:
        raise SystemExit(f"{summary.taken} of {files} files taken")
    return {"taken_s": last[-1] - started, "rendered_s": rendered,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "render_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def anchor_side(folder: Path, files: int) -> dict[str, float]:
    out = drop(folder, files)
    jobs = folder / "jobs"
    jobs.mkdir()
    started = time.perf_counter()
    for name in sorted(os.listdir(out)):
        target = jobs / name.removesuffix(".txt")
        target.mkdir()
        os.rename(out / name, target / name)
        descriptor = os.open(target, os.O_RDONLY)
        os.fsync(descriptor)
        os.close(descriptor)
    took = time.perf_counter() - started
    return {"taken_s": took, "rendered_s": took,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "render_rss_mb": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--side", choices=["faxgw", "anchor"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side = faxgw_side if args.side == "faxgw" else anchor_side
        print(json.dumps(side(Path(args.folder), args.files)))
        return
    results = {}
    for name in ("anchor", "faxgw"):
        with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as folder:
            # Not from this checkout's folder: -m and -c would find its faxgw/ first.
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--side", name,
                                   "--folder", folder, "--files", str(args.files)],
                                  capture_output=True, text=True, check=False, cwd=folder)
            if done.returncode != 0:
                raise SystemExit(f"{name}: {done.stderr[-3000:]}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(results, indent=2))
        return
    files = args.files
    print(f"{files} dropped one-page text files, {os.cpu_count()} cores, faxgw from {ROOT}")
    anchor, faxgw = results["anchor"], results["faxgw"]
    print(f"  rename + fsync each (anchor): {files / anchor['taken_s']:8.1f} files/s")
    print(f"  faxgw, taken (registered):    {files / faxgw['taken_s']:8.1f} files/s "
          f"({faxgw['taken_s']:.1f} s)  = {anchor['taken_s'] / faxgw['taken_s']:.2f} x anchor")
    print(f"  faxgw, rendered too:          {files / faxgw['rendered_s']:8.1f} files/s "
          f"({faxgw['rendered_s']:.1f} s)")
    print(f"  peak RSS: worker {faxgw['rss_mb']:.0f} MB, largest render process "
          f"{faxgw['render_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
