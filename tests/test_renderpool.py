"""Rendering in processes of their own: same results as in threads, errors about documents
arrive whole, and a render process that dies loses no job (its render is tried again in a
fresh process)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from faxgw.app.wiring import build_worker
from faxgw.domain import codes
from faxgw.domain.jobs import JobState
from faxgw.engine.worker import Worker
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import MakeConfig
from .documents import encrypted_pdf

NUMBER = "+4930123456"


def _drop(worker: Worker, *files: Path) -> None:
    folder = worker.spool.layout.outgoing / NUMBER
    folder.mkdir(exist_ok=True)
    for file in files:
        shutil.copy(file, folder / file.name)


def _outcomes(worker: Worker) -> dict[str, tuple[JobState, int | None, str | None]]:
    return {Path(job.source).name: (job.state, job.code, job.error)
            for job in worker.store.list_jobs()}


def _wait_gone(pids: set[int], timeout: float = 10.0) -> None:
    """Until none of ``pids`` is a running child (each is reaped as it is looked at)."""
    deadline = time.monotonic() + timeout
    while {child.pid for child in multiprocessing.active_children()} & pids:
        assert time.monotonic() < deadline, f"{pids} still running"
        time.sleep(0.02)


def test_processes_and_threads_give_the_same_outcomes(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(samples / "letter.pdf", inputs / "letter.pdf")
    shutil.copy(samples / "scan.jpg", inputs / "scan.jpg")
    (inputs / "empty.pdf").write_bytes(b"")
    (inputs / "truncated.pdf").write_bytes((samples / "letter.pdf").read_bytes()[:600])
    (inputs / "really-a-png.pdf").write_bytes((samples / "logo.png").read_bytes())
    encrypted_pdf(inputs / "locked.pdf", samples / "letter.pdf", user_password="secret")
    files = sorted(inputs.iterdir())

    outcomes = {}
    for processes in (0, 1):
        config = make_config(smtp_server, spool={"dir": str(tmp_path / f"spool-{processes}"),
                                                 "settle_seconds": 0})
        worker = build_worker(config, render_processes=processes)
        try:
            assert (worker.render_pool is not None) == (processes > 0)
            _drop(worker, *files)
            summary = asyncio.run(worker.run_once())
            assert (summary.taken, summary.sent, summary.failed) == (6, 2, 4)
            outcomes[processes] = _outcomes(worker)
            for job in worker.store.list_jobs([JobState.FAILED]):
                name = Path(job.source).name
                kept = worker.spool.layout.failed / job.id / "docs" / name
                assert kept.read_bytes() == (inputs / name).read_bytes()
        finally:
            worker.close()

    assert outcomes[1] == outcomes[0]
    assert outcomes[1]["locked.pdf"][1] == codes.DOCUMENT_ENCRYPTED
    assert outcomes[1]["really-a-png.pdf"][1] == codes.DOCUMENT_UNSUPPORTED
    assert "truncated.pdf" in (outcomes[1]["truncated.pdf"][2] or "")
    assert {outcomes[1][name][0] for name in ("letter.pdf", "scan.jpg")} == {JobState.SENT}
    assert len(smtp_server.messages) == 4


def test_a_render_process_that_dies_loses_no_job(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = build_worker(make_config(smtp_server), render_processes=1)
    try:
        assert worker.render_pool is not None
        worker.render_pool.wait_ready()
        before = {child.pid for child in multiprocessing.active_children()}
        assert before and set(worker.render_pool.pids()) == before
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        _wait_gone(before)
        _drop(worker, samples / "letter.pdf")
        first = asyncio.run(worker.run_once())
        assert first.sent == 1
        # Replaced when it was needed, without counting against the job.
        assert f"render process {min(before)} had stopped" in caplog.text
        assert "trying once more" not in caplog.text

        # A new render process took over: the next job renders in it.
        _drop(worker, samples / "scan.jpg")
        second = asyncio.run(worker.run_once())
        assert second.sent == 1
        after = {child.pid for child in multiprocessing.active_children()}
        assert after and not after & before
        assert {job.state for job in worker.store.list_jobs()} == {JobState.SENT}
    finally:
        worker.close()


def test_render_processes_run_below_the_worker(make_config: MakeConfig) -> None:
    from faxgw.engine.renderpool import RENDER_NICENESS

    worker = build_worker(make_config(), render_processes=1)
    try:
        assert worker.render_pool is not None
        worker.render_pool.wait_ready()
        [child] = multiprocessing.active_children()
        nice = int(Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[16])
        assert nice == min(19, os.nice(0) + RENDER_NICENESS)
    finally:
        worker.close()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_render_whose_process_is_killed_is_rendered_again_in_a_fresh_one(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "faxgw")
    line = "0042  MOVE CUSTOMER-RECORD TO PRINT-LINE.  * the quick brown fox, 0123456789\n"
    listing = tmp_path / "listing.txt"
    listing.write_text(line * (3_000_000 // len(line)))  # about two seconds to set
    worker = build_worker(make_config(smtp_server), render_processes=1)
    try:
        assert worker.render_pool is not None
        worker.render_pool.wait_ready()
        [pid] = worker.render_pool.pids()
        started = _cpu_seconds(pid)
        _drop(worker, listing)

        def kill_midway() -> None:
            # Killed in the middle of the render: once it has worked on the listing a while.
            deadline = time.monotonic() + 30
            while _cpu_seconds(pid) < started + 0.3 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_midway)
        killer.start()
        summary = asyncio.run(worker.run_once())
        killer.join()
        assert summary.sent == 1
        [retry] = [r.getMessage() for r in caplog.records if "trying once more" in r.getMessage()]
        assert (f"rendering stopped its render process (killed by SIGKILL), in render process "
                f"{pid} (listing.txt)") in retry
        assert pid not in worker.render_pool.pids()
    finally:
        worker.close()
