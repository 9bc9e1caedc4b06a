"""Getting each job's attachment and email ready ahead of the session that sends it.

The worker hands every job it takes to :class:`Preparer` right away: the job is rendered and
pre-flighted in a render process (see :mod:`faxgw.engine.renderpool`; in threads only where
tests and benchmarks ask for it), and its email is built in the same step and kept in memory until a
session asks for it, so a session never builds a message on the event loop while the other
sessions' replies wait. Messages take at most :data:`MESSAGE_BUFFER_BYTES`; beyond that (a
large burst), and for jobs sent again later, a message is built just before it is sent.

While a job is being rendered the store marks it ``preparing`` (set when the job is
registered, cleared when its attachment is recorded): claims pass it over, whichever runner
claims, so that no job is sent before its attachment exists.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..config import Config
from ..domain.jobs import Job
from ..fax.message import build_message
from ..fax.profiles import rules_for
from ..intake.register import record_rendered
from ..ports import DocumentStore, JobStore
from ..render import Rendered
from ..render.rendered import attachment_path
from .observe import Observations
from .renderpool import DocumentsFactory, RenderPool

__all__ = ["MESSAGE_BUFFER_BYTES", "KeepsRendered", "Preparer"]

#: Messages built ahead and held in memory until sent, at most this many bytes.
MESSAGE_BUFFER_BYTES = 32 * 1024 * 1024


@runtime_checkable
class KeepsRendered(Protocol):
    """A document store that keeps a copy of each rendered attachment elsewhere (a database
    shared by several hosts), so that another host need not render the job again."""

    def keep_rendered(self, job_id: str, attachment: Path) -> None:
        """Keep ``attachment``, just rendered; never raises."""
        ...


class Preparer:
    """Renders jobs and builds their emails for one worker."""

    def __init__(self, config: Config, documents: DocumentStore, store: JobStore, *,
                 render_processes: int = 0,
                 open_documents: DocumentsFactory | None = None,
                 observations: Observations | None = None) -> None:
        """``render_processes`` > 0 renders in up to that many processes of their own, each
        opening the job files with ``open_documents`` (a module-level function, so that it
        can be handed to another process), started when first needed (``faxgw run`` starts
        them at once: ``render_pool.warm()``); 0 renders in threads of this process, for
        tests and benchmarks only: a document that crashes its render then crashes this
        process, and one that renders for hours cannot be stopped. Each render's duration
        goes to ``observations`` (one of its own when none is given)."""
        self.config = config
        self.observations = observations if observations is not None else Observations()
        self.documents = documents
        self.store = store
        self.rules = rules_for(config.service)
        self.render_pool: RenderPool | None = None
        if render_processes > 0:
            if open_documents is None:
                raise ValueError("render processes need open_documents")
            self.render_pool = RenderPool(config, render_processes, open_documents,
                                          job_folder=documents.job_dir)
        #: Renders under way at once; the intake hands over jobs in batches of this size.
        self.concurrency = max(1, min(4, os.cpu_count() or 1))
        self._messages: dict[str, bytes] = {}
        self._message_bytes = 0
        # asyncio primitives belong to one event loop, and each asyncio.run() has its own.
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _render_slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.concurrency))
        return self._slots[1]

    async def render(self, job: Job) -> Job:
        """Render and pre-flight ``job``, build its email while there is room, record the
        attachment on the job. Raises :class:`~faxgw.domain.errors.JobError` for a job that cannot
        be sent as it is."""
        rendered, message = await self._render_and_build(
            job, build=self._message_bytes < MESSAGE_BUFFER_BYTES)
        if message is not None:
            self._messages[job.id] = message
            self._message_bytes += len(message)
        return await self._record(job, rendered)

    async def message(self, job: Job) -> bytes:
        """The job's email as bytes: built ahead, or built now off the event loop. The
        attachment is made again only when it is missing (a job folder recovered, a job sent
        again by retry)."""
        message = self._messages.pop(job.id, None)
        if message is not None:
            self._message_bytes -= len(message)
            return message
        # Off the event loop: a document store may bring the job's files from elsewhere first
        # (a job taken in at another host), which must not hold up the other sessions. (Where
        # the attachment lies needs no rendering library: a run that only sends loads none.)
        attachment = await asyncio.to_thread(
            lambda: attachment_path(self.documents.job_dir(job.id), job.id,
                                    self.rules.attach_as))
        if job.pages is None or not attachment.exists():
            rendered, message = await self._render_and_build(job, build=True)
            await self._record(job, rendered)
            assert message is not None
            return message
        if self.render_pool is not None and self.render_pool.running:
            return await self.render_pool.build(job, attachment)
        # Building reads only the attachment faxgw wrote, no document: without render
        # processes running (a cron run sending jobs rendered before) starting one for it
        # would cost more than the build.
        return await asyncio.to_thread(build_message, job, attachment, self.config)

    async def _record(self, job: Job, rendered: Rendered) -> Job:
        """Record the rendered attachment on the job (it is claimable from now), once the
        document store has kept its copy, if it keeps one."""
        if isinstance(self.documents, KeepsRendered):
            await asyncio.to_thread(self.documents.keep_rendered, job.id, rendered.path)
        return record_rendered(self.store, job, rendered)

    async def _render_and_build(self, job: Job, *, build: bool
                                ) -> tuple[Rendered, bytes | None]:
        """One render (and build), in a render process or a thread, a few at a time."""
        async with self._render_slots():
            # Timed once it has its slot: the render's own time, not the wait for one.
            with self.observations.timed(self.observations.render):
                if self.render_pool is not None:
                    return await self.render_pool.render(job, build=build)
                from ..render.job import render_and_build

                return await asyncio.to_thread(render_and_build, job, self.documents,
                                               self.config, build=build)

    def forget_messages(self) -> None:
        """Drop the messages built ahead (end of a run): jobs not sent in it get a new one,
        dated when they leave."""
        self._messages.clear()
        self._message_bytes = 0

    def close(self) -> None:
        """Stop the render processes, if any."""
        if self.render_pool is not None:
            self.render_pool.close()
