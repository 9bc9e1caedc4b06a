"""Taking the intake while the sessions send: :func:`take`.

Files are taken in a thread (renames and fsyncs: blocking work that must not hold up the
sessions on the event loop). What it takes is registered in batches on the loop, and the
registered jobs are rendered by a few render tasks while the next files are taken: the
intake goes at the pace of the spool, not of the render processes. A job waiting for its
render is held as its id only (it is read from the store when its turn comes), so memory
does not grow with the number of files taken.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator

from ..domain.jobs import Job, JobState
from ..intake.job_file import Intake

__all__ = ["INTAKE_BATCH", "take"]

log = logging.getLogger("faxgw.worker")

#: Taken job folders registered together.
INTAKE_BATCH = 64


async def take(
    scan: Callable[[], Iterator[list[Intake]]],
    register: Callable[[list[Intake]], list[Job]],
    load: Callable[[str], Job],
    render: Callable[[Job], Awaitable[None]],
    unmark: Callable[[str], None],
    progress: asyncio.Event,
    *,
    renderers: int = 2,
) -> None:
    """Take every file ``scan`` yields (in the spool's batches); ``register`` a batch (it
    returns the jobs to be rendered); ``renderers`` tasks ``render`` them in turn, each read
    anew with ``load`` (a job cancelled or held meanwhile is not rendered). ``progress`` is
    set after each batch and each render, and at the end, which waits for every render. On
    a stop (cancellation) what the thread has taken is still registered, and ``unmark`` is
    called with every job id whose render did not finish (it is rendered when it is sent)."""
    loop = asyncio.get_running_loop()
    # Bounded: a thread that takes files faster than they are registered waits, rather than
    # holding every taken job in memory.
    taken: asyncio.Queue[Intake | None] = asyncio.Queue(maxsize=2 * INTAKE_BATCH)
    stop = threading.Event()

    def hand_over(intake: Intake | None) -> None:
        asyncio.run_coroutine_threadsafe(taken.put(intake), loop).result()

    def scanning_thread() -> None:
        try:
            for batch in scan():
                for intake in batch:  # a batch taken is handed over whole, even on a stop
                    hand_over(intake)
                if stop.is_set():
                    return  # the rest is taken next time
        finally:
            hand_over(None)

    waiting: collections.deque[str] = collections.deque()
    # Registered and not rendered (nor handed back) yet: what a stop hands back.
    unrendered: set[str] = set()
    more = asyncio.Event()
    finished = False

    def registered(intakes: list[Intake]) -> None:
        if not intakes:
            return
        ids = [job.id for job in register(intakes)]
        waiting.extend(ids)
        unrendered.update(ids)
        more.set()

    async def renderer() -> None:
        while True:
            if not waiting:
                if finished:
                    return
                more.clear()
                await more.wait()
                continue
            job_id = waiting.popleft()
            try:
                job: Job | None = load(job_id)  # the store is used on the loop's thread
            except Exception as exc:  # noqa: BLE001 - one job never stops the others
                log.warning("%s could not be read to be rendered (%s); it is rendered when "
                            "it is sent", job_id, exc)
                job = None
            if job is not None and job.state is JobState.QUEUED:
                await render(job)
            else:
                unmark(job_id)  # cancelled or held while it waited, or unreadable
            unrendered.discard(job_id)
            progress.set()

    scanning = asyncio.ensure_future(asyncio.to_thread(scanning_thread))
    rendering = [asyncio.ensure_future(renderer()) for _ in range(max(1, renderers))]
    done = False
    try:
        while not done:
            batch = [await taken.get()]
            while len(batch) < INTAKE_BATCH and not taken.empty():
                batch.append(taken.get_nowait())
            if batch[-1] is None:
                done = True
            registered([intake for intake in batch if intake is not None])
            progress.set()
        finished = True
        more.set()
        await asyncio.gather(*rendering)
    finally:
        progress.set()
        stop.set()
        # Let the thread finish the job it is taking (it may wait for room in the queue),
        # and register what it took: a folder in jobs/ without a record would wait for the
        # next start-up.
        rest: list[Intake | None] = []
        while not scanning.done():
            while not taken.empty():
                rest.append(taken.get_nowait())
            await asyncio.wait({scanning}, timeout=0.05)
        while not taken.empty():
            rest.append(taken.get_nowait())
        registered([intake for intake in rest if intake is not None])
        for task in rendering:
            task.cancel()
        await asyncio.gather(*rendering, return_exceptions=True)
        for job_id in sorted(unrendered):
            unmark(job_id)
    await scanning
