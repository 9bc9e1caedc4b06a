"""Taking the intake while rendering: every file taken is registered and rendered; a stop
registers what was taken and hands back the jobs whose render had not finished."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from faxgw.domain.jobs import Job, JobState
from faxgw.engine.taking import take
from faxgw.intake.job_file import Intake
from faxgw.intake.spool import Spool


def _spool(tmp_path: Path, files: int) -> Spool:
    spool = Spool(tmp_path / "spool", settle_seconds=0)
    spool.ensure()
    drop = spool.layout.outgoing / "+4930123456"
    drop.mkdir()
    past = time.time() - 60
    for n in range(files):
        path = drop / f"note-{n:03d}.txt"
        path.write_text(f"note {n}\n")
        os.utime(path, (past, past))
    return spool


def _job(intake: Intake) -> Job:
    return Job(id=intake.id, number=intake.number)


class _Jobs:
    """Registered jobs by id, as a store would hold them (``load`` reads them anew)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def register(self, intakes: list[Intake]) -> list[Job]:
        jobs = [_job(intake) for intake in intakes]
        self.jobs.update((job.id, job) for job in jobs)
        return jobs

    def load(self, job_id: str) -> Job:
        return self.jobs[job_id]


def test_every_file_is_registered_then_rendered(tmp_path: Path) -> None:
    spool = _spool(tmp_path, 12)
    store = _Jobs()
    rendered: list[str] = []
    at_once = [0, 0]

    async def render(job: Job) -> None:
        at_once[0] += 1
        at_once[1] = max(at_once)
        await asyncio.sleep(0.01)
        at_once[0] -= 1
        rendered.append(job.id)

    asyncio.run(take(spool.scan_batches, store.register, store.load, render, lambda job_id: None,
                     asyncio.Event(), renderers=3))
    assert len(store.jobs) == 12 and sorted(rendered) == sorted(store.jobs)
    assert sorted(os.listdir(spool.layout.jobs)) == sorted(store.jobs)
    assert at_once[1] <= 3


def test_a_job_cancelled_while_it_waits_is_not_rendered(tmp_path: Path) -> None:
    spool = _spool(tmp_path, 3)
    store = _Jobs()
    rendered: list[str] = []
    handed_back: list[str] = []

    def register(intakes: list[Intake]) -> list[Job]:
        first = not store.jobs
        jobs = store.register(intakes)
        for job in jobs[1 if first else 0:]:  # all but the first cancelled before their turn
            store.jobs[job.id] = Job(id=job.id, number=job.number, state=JobState.CANCELLED)
        return jobs

    async def render(job: Job) -> None:
        rendered.append(job.id)

    asyncio.run(take(spool.scan_batches, register, store.load, render, handed_back.append,
                     asyncio.Event(), renderers=1))
    assert len(rendered) == 1 and len(handed_back) == 2
    assert set(rendered) | set(handed_back) == set(store.jobs)


def test_a_stop_registers_what_was_taken_and_hands_back_unrendered_jobs(
        tmp_path: Path) -> None:
    spool = _spool(tmp_path, 5)
    store = _Jobs()
    rendered: list[str] = []
    handed_back: list[str] = []

    async def render(job: Job) -> None:
        await asyncio.sleep(3600)  # a render that is under way when the stop comes
        rendered.append(job.id)

    async def run() -> None:
        progress = asyncio.Event()
        task = asyncio.ensure_future(take(spool.scan_batches, store.register, store.load, render,
                                          handed_back.append, progress))
        while len(store.jobs) < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    assert rendered == []
    assert sorted(handed_back) == sorted(store.jobs)
    assert sorted(os.listdir(spool.layout.jobs)) == sorted(store.jobs)


def test_a_stop_while_the_thread_waits_for_room_registers_all_it_took(tmp_path: Path) -> None:
    """The thread takes files faster than they are registered and waits for room; a stop
    then lets it finish the job it is taking, and every folder in jobs/ is registered."""
    spool = _spool(tmp_path, 300)
    store = _Jobs()

    async def render(job: Job) -> None:
        await asyncio.sleep(3600)

    async def run() -> None:
        task = asyncio.ensure_future(take(spool.scan_batches, store.register, store.load, render,
                                          lambda job_id: None, asyncio.Event()))
        while not store.jobs:
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 60)

    asyncio.run(run())
    assert sorted(os.listdir(spool.layout.jobs)) == sorted(store.jobs)
    assert 0 < len(store.jobs) < 300  # stopped part way: the rest waits in outgoing/
