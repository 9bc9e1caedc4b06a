"""Every render runs in a process that can be stopped: a render that runs out of time
(415) or kills its process (414) is tried once more in a fresh process, then fails its job
with the originals kept, while the worker goes on; ``faxgw run --once`` and ``faxgw submit``
render in a process too.

The slow document is a real one: a long text listing, which fpdf2 sets at about 1.5 MB of
text per second. The crash is a real one as well: the kernel kills a render process that uses
more CPU time than ``RLIMIT_CPU`` allows (as ``ulimit -t`` or systemd's ``LimitCPU=`` set it),
with SIGXCPU; the service, which uses little CPU itself, lives on under the same limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from faxgw.app.wiring import build_worker
from faxgw.domain import codes
from faxgw.domain.jobs import JobState
from faxgw.engine.worker import Worker
from faxgw.testing.smtp_server import FaxSMTPServer

from . import documents as docs
from .conftest import MakeConfig
from .test_service import _config

NUMBER = "+4930123456"
#: What the warning says when a render is tried once more.
RETRY = "trying once more in a fresh process"


def listing(path: Path, megabytes: float = 10) -> Path:
    """A plain text listing of ``megabytes`` MB: several seconds of CPU to set as pages."""
    line = "0042  MOVE CUSTOMER-RECORD TO PRINT-LINE.  * the quick brown fox, 0123456789\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line * int(megabytes * 1_000_000 / len(line)))
    return path


def _drop(worker: Worker, *files: Path) -> None:
    folder = worker.spool.layout.outgoing / NUMBER
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy(file, folder / file.name)


def _render_children() -> set[int]:
    return {child.pid for child in multiprocessing.active_children()
            if child.name == "faxgw-render"}


def test_a_render_over_the_time_limit_fails_415_and_its_process_is_killed(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "faxgw")
    slow = listing(tmp_path / "inputs" / "listing.txt")
    worker = build_worker(make_config(smtp_server, limits={"render_seconds": "1s"}),
                          render_processes=1)
    try:
        assert worker.render_pool is not None
        worker.render_pool.wait_ready()
        [first] = worker.render_pool.pids()
        _drop(worker, slow)
        started = time.monotonic()
        summary = asyncio.run(worker.run_once())
        took = time.monotonic() - started
        assert (summary.taken, summary.failed, summary.sent) == (1, 1, 0)
        [job] = worker.store.list_jobs()
        assert (job.state, job.code) == (JobState.FAILED, codes.RENDER_TIMEOUT)
        assert job.error == ("listing.txt: rendering took longer than 1 s ([limits] "
                             "render_seconds), twice; the document was not faxed")
        kept = worker.spool.layout.failed / job.id / "docs" / "listing.txt"
        assert kept.read_bytes() == slow.read_bytes()
        # Stopped twice, each time after about a second (and a fresh process's start-up).
        assert took < 15
        retries = [r.getMessage() for r in caplog.records if RETRY in r.getMessage()]
        assert len(retries) == 1 and f"in render process {first} " in retries[0]
        # Both processes that took the job were killed; one fresh process is left, idle.
        children = _render_children()
        assert children == set(worker.render_pool.pids()) and len(children) == 1
        assert first not in children

        # The worker goes on: the next job renders in the fresh process and is sent.
        _drop(worker, samples / "note.txt")
        assert asyncio.run(worker.run_once()).sent == 1
        assert _render_children() == children
    finally:
        worker.close()
    assert not _render_children()


def test_a_render_stopped_while_writing_the_fax_tiff_leaves_no_part_of_it(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, tmp_path: Path,
) -> None:
    """2,000 text pages: read in a fraction of a second, rasterised in several; the render
    is stopped while the TIFF is being written, twice, and its files go with it."""
    page = PdfReader(docs.text_pdf(tmp_path / "one.pdf", label="Long")).pages[0]
    writer = PdfWriter()
    for _ in range(2000):
        writer.add_page(page)
    long_pdf = tmp_path / "inputs" / "long.pdf"
    long_pdf.parent.mkdir()
    writer.write(long_pdf)
    config = make_config(smtp_server, limits={"render_seconds": "1s"},
                         service={"profile": "rfc3192"})
    worker = build_worker(config, render_processes=1)
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # what is being written in the job folders meanwhile
        while not stop.is_set():
            for folder in (worker.spool.layout.jobs, worker.spool.layout.failed):
                with contextlib.suppress(OSError):
                    seen.update(path.name for path in folder.glob("*/.*"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    try:
        assert worker.render_pool is not None
        worker.render_pool.wait_ready()
        _drop(worker, long_pdf)
        watcher.start()
        summary = asyncio.run(worker.run_once())
        [job] = worker.store.list_jobs()
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        worker.close()
    assert (summary.taken, summary.failed) == (1, 1)
    assert job.code == codes.RENDER_TIMEOUT
    # The TIFF was being written when the render was stopped ...
    assert any(name.startswith(f".fax-{job.id}.tif.") for name in seen), seen
    # ... and none of it is left with the job's files.
    kept = worker.spool.layout.failed / job.id
    assert (kept / "docs" / "long.pdf").read_bytes() == long_pdf.read_bytes()
    left = [path.name for path in kept.rglob("*") if path.name.endswith((".tmp", ".part"))]
    assert left == []


def test_render_processes_start_only_when_a_job_needs_rendering(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    worker = build_worker(make_config(smtp_server), render_processes=2)
    try:
        assert worker.render_pool is not None
        assert asyncio.run(worker.run_once()).taken == 0
        assert worker.render_pool.pids() == [] and not _render_children()
        _drop(worker, samples / "letter.pdf")
        assert asyncio.run(worker.run_once()).sent == 1
        # One job: one process, not the two the pool may grow to.
        assert len(worker.render_pool.pids()) == 1
    finally:
        worker.close()


# --- the command line ----------------------------------------------------------------------


def _jobs(config: Path) -> dict[str, tuple[str, int | None, str | None]]:
    """Each job's file name → (state, code, error), read from the job store."""
    database = config.parent.parent / "spool" / "state" / "faxgw.db"
    if not database.exists():
        return {}
    with sqlite3.connect(database) as db:
        # The service may have made the file and not yet its tables: no job yet.
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
                          ).fetchone():
            return {}
        rows = db.execute("SELECT documents, state, code, error FROM jobs").fetchall()
    return {json.loads(documents)[0]: (state, code, error)
            for documents, state, code, error in rows}


def _faxgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_run_once_and_submit_render_in_a_process_they_can_stop(
    tmp_path: Path, smtp_server: FaxSMTPServer
) -> None:
    # Rendered in the command's own process, a render could not be stopped: 415 shows it ran
    # in a render process.
    config = _config(tmp_path, smtp_server, render_seconds="1s")
    submitted = _faxgw(config, "submit", "--to", NUMBER,
                       str(listing(tmp_path / "in" / "submitted.txt")))
    assert submitted.returncode == 1, submitted.stderr
    assert "415" in submitted.stderr and "Traceback" not in submitted.stderr

    drop = tmp_path / "spool" / "outgoing" / NUMBER
    drop.mkdir(parents=True)
    listing(drop / "dropped.txt")
    ran = _faxgw(config, "run", "--once", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["failed"] == 1
    assert "Traceback" not in ran.stderr

    jobs = _jobs(config)
    for name in ("submitted.txt", "dropped.txt"):
        state, code, error = jobs[name]
        assert (state, code) == ("failed", codes.RENDER_TIMEOUT), error
        assert error is not None and error.startswith(f"{name}: rendering took longer than 1 s")


# The service under a CPU time limit: set, then faxgw started in its place (exec), so that
# no other process is limited.
_LIMITED = """
import os, resource, sys
seconds = int(sys.argv[1])
# At the soft limit the kernel sends SIGXCPU, which ends the process (at the hard one, SIGKILL).
resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 2))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from the SIGXCPU
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""
#: CPU seconds each process of the service may use. A render process uses about 0.6 s to
#: start, the service about 1 s for all of this test; the listing needs several times this.
CPU_SECONDS = 4


@pytest.mark.slow
def test_a_document_that_kills_its_render_process_fails_414_and_the_service_goes_on(
    tmp_path: Path, smtp_server: FaxSMTPServer, samples: Path
) -> None:
    config = _config(tmp_path, smtp_server)
    heavy = listing(tmp_path / "in" / "listing.txt", megabytes=24)
    service = subprocess.Popen(
        [sys.executable, "-c", _LIMITED, str(CPU_SECONDS), "-m", "faxgw", "--config",
         str(config), "-v", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        drop = tmp_path / "spool" / "outgoing" / NUMBER
        drop.mkdir(parents=True, exist_ok=True)
        shutil.copy(heavy, drop / heavy.name)
        deadline = time.monotonic() + 90
        while _jobs(config).get("listing.txt", ("",))[0] != "failed":
            assert service.poll() is None, "the service stopped"
            assert time.monotonic() < deadline, "the job did not fail in time"
            time.sleep(0.2)
        assert service.poll() is None

        # The next good job is sent by the same service.
        shutil.copy(samples / "note.txt", drop / "note.txt")
        smtp_server.wait_until(lambda: len(smtp_server.messages) == 1, timeout=30)
        assert service.poll() is None
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.count(RETRY) == 1, stderr
    jobs = _jobs(config)
    assert jobs["note.txt"][0] == "sent"
    state, code, error = jobs["listing.txt"]
    assert (state, code) == ("failed", codes.RENDER_CRASHED)
    assert error == ("listing.txt: rendering stopped its render process twice (killed by "
                     "SIGXCPU); the document was not faxed")
