"""Rendering in processes of their own, beside the long-running worker.

Rendering (pypdf, Pillow, fpdf2) and building the email are CPU work in Python. In threads
they share the interpreter lock with the event loop that drives the SMTP sessions: each
time the loop comes back from a socket call it waits for a render thread to let go, and the
sessions' replies are read late. A render process runs beside the loop on another core
instead. Starting one takes about a second (a new interpreter importing the document
libraries), so ``faxgw run`` starts it once, when the service starts; ``faxgw run --once``
and ``faxgw submit`` render in threads.

A job's documents are read and its attachment is written by the render process in the job's
folder, exactly as a thread would. Errors about a job's documents (:class:`JobError`) come
back as they were raised. If the process dies (killed, out of memory), the pool is replaced
and the job is rendered in a thread instead, so that no job is lost to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..config import Config
from ..domain.jobs import Job
from ..fax.message import build_message
from ..ports import DocumentStore
from ..render import Rendered
from ..render.job import render_and_build

log = logging.getLogger("faxgw.render")

__all__ = ["DocumentsFactory", "RenderPool", "service_processes"]

#: Opens the job files for a configuration in a render process (a module-level function, so
#: that the process can be told which by name).
DocumentsFactory = Callable[[Config], DocumentStore]

#: How much lower (``nice``) render processes run than the worker.
RENDER_NICENESS = 10

# The render process's own view of the configuration, set once when it starts.
_config: Config | None = None
_documents: DocumentStore | None = None


def _start(config: Config, open_documents: DocumentsFactory) -> None:
    global _config, _documents
    # Rendering is background work; the worker's sessions wait on round trips. At a lower
    # priority a burst of renders takes what CPU is left, and never delays a reply being read.
    with contextlib.suppress(OSError):
        os.nice(RENDER_NICENESS)
    _config = config
    _documents = open_documents(config)
    parent = multiprocessing.parent_process()
    if parent is not None:
        # A worker killed outright (SIGKILL, out of memory) cannot stop its render processes:
        # each watches its parent and ends with it, rather than live on holding the
        # service's files and output open.
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True,
                         name="faxgw-render-parent-watch").start()


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _ready() -> bool:
    return True


def _render(job: Job, build: bool) -> tuple[Rendered, bytes | None]:
    assert _config is not None and _documents is not None, "render process not started"
    return render_and_build(job, _documents, _config, build=build)


def _build(job: Job, attachment: Path) -> bytes:
    assert _config is not None, "render process not started"
    return build_message(job, attachment, _config)


def service_processes() -> int:
    """Render processes for ``faxgw run``: one per core but one (for the worker), 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class RenderPool:
    """``processes`` render processes for one worker's configuration."""

    def __init__(self, config: Config, documents: DocumentStore, processes: int,
                 open_documents: DocumentsFactory) -> None:
        if processes < 1:
            raise ValueError("a render pool needs at least one process")
        self.config = config
        self.documents = documents
        self.processes = processes
        self._open_documents = open_documents
        self._executor = self._new_executor()
        self._warming: list[Future[bool]] = []

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn, not fork: the worker has threads (the intake, the loop's executor), and a
        # forked copy of a threaded process can inherit a lock held by one of them.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=(self.config, self._open_documents))

    def warm(self) -> None:
        """Start the processes now, so the first job does not wait for them to import."""
        self._warming = [self._executor.submit(_ready) for _ in range(self.processes)]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the processes started by :meth:`warm` are ready."""
        for future in self._warming:
            future.result(timeout)

    async def render(self, job: Job, *, build: bool) -> tuple[Rendered, bytes | None]:
        """Render ``job`` (and build its email when ``build``) in a render process."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, _render, job, build)
        except BrokenProcessPool:
            self._replace(job)
            return await asyncio.to_thread(render_and_build, job, self.documents, self.config,
                                           build=build)

    async def build(self, job: Job, attachment: Path) -> bytes:
        """Build ``job``'s email with ``attachment`` in a render process."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, _build, job, attachment)
        except BrokenProcessPool:
            self._replace(job)
            return await asyncio.to_thread(build_message, job, attachment, self.config)

    def _replace(self, job: Job) -> None:
        log.error("the render process stopped unexpectedly; starting a new one, and "
                  "preparing %s in the worker meanwhile", job.id)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()

    def close(self) -> None:
        """Stop the render processes (after the renders under way)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
