"""Render processes: every job is rendered in a process that can be stopped, never in the
gateway's own.

A document can make its render run for hours or take the process down with it (a library
crashing on it, memory running out). Rendered in the worker, it would stop the service, and
stop it again after each restart. So each render goes to a render process
(:mod:`faxgw.render.process`), with ``[limits] render_seconds`` to finish. A render that
stops its process, or runs out of time (its process is then killed), is tried once more in
a fresh process; when that fails too, the job fails with code 414 (crashed) or 415 (timed
out), naming the document it was on, and its originals are kept like any failed job's. The
pool starts a new process for each one lost, so it is never smaller for long.

Render processes are also where the CPU work goes: in threads, pypdf, Pillow and fpdf2 would
share the interpreter lock with the event loop that drives the SMTP sessions. Starting one
takes about half a second (a new interpreter importing the document libraries): ``faxgw run``
starts its processes with the service (:meth:`RenderPool.warm`); ``faxgw run --once`` and
``faxgw submit`` start one only when a job needs rendering.

Jobs are handed over as they are and the render process opens the job files itself (with
the ``open_documents`` the pool was given), so nothing but the job record, the result and
the built email crosses the pipe. Each call blocks a thread while its process works; the
``async`` methods run it in a thread of the pool's own (one per process), not in the event
loop's executor, whose threads the intake and the sessions need meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from ..config import Config
from ..domain import codes
from ..domain.errors import DocumentError, JobError
from ..domain.jobs import Job
from ..ports import DocumentStore
from ..render.rendered import FATAL_EXIT, RENDER_NICENESS, Rendered, remove_unfinished

log = logging.getLogger("faxgw.render")

__all__ = ["RENDER_NICENESS", "DocumentsFactory", "RenderPool", "RenderProcessError",
           "service_processes"]

#: Opens the job files for a configuration in a render process (a module-level function, so
#: that the process can be told which by name).
DocumentsFactory = Callable[[Config], DocumentStore]
#: How long a render process may take to start (import its libraries) before it is given up.
STARTUP_SECONDS = 60.0
#: How long a render process asked to stop gets before it is killed.
STOP_SECONDS = 2.0


class RenderProcessError(RuntimeError):
    """A render process could not be started or used: not the job's fault, so the job is
    not failed for it (it is rendered again later)."""


@dataclass(frozen=True, slots=True)
class _Stopped:
    """A render that ended its process, or was ended for taking too long."""

    timed_out: bool
    #: What ended it, for people: "killed by SIGSEGV", "it ran out of memory", …
    why: str
    #: The document being read at the time (None: after the documents, or before the first).
    document: str | None


class _Child:
    """One render process and the worker's end of its pipe."""

    def __init__(self, config: Config, open_documents: DocumentsFactory) -> None:
        # The render process's side: it loads the rendering libraries, the worker does not
        # (they would cost it some 70 MB it never uses).
        from ..render.spawn import serve

        context = multiprocessing.get_context("spawn")
        # spawn, not fork: the worker has threads (the intake, the loop's executor), and a
        # forked copy of a threaded process can inherit a lock held by one of them.
        self.conn, child_end = context.Pipe()
        # daemon: should the worker exit without closing the pool, multiprocessing ends the
        # render processes with it.
        self.process: SpawnProcess = context.Process(
            target=serve, args=(child_end, config, open_documents,
                                logging.getLogger().getEffectiveLevel()),
            name="faxgw-render", daemon=True)
        self.process.start()
        child_end.close()  # the render process holds the only other end: EOF means it is gone
        self.pid: int = self.process.pid or 0
        self.ready = False

    def alive(self) -> bool:
        """Whether the process is there to take a task. An idle one has nothing to say: a
        readable pipe means it is gone (the end of file), even before it can be reaped."""
        return self.process.is_alive() and not self.conn.poll(0)

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        """Wait until the process has started; :class:`RenderProcessError` if it does not."""
        if self.ready:
            return
        message = self._receive(time.monotonic() + timeout, [None])
        if isinstance(message, _Stopped) or message[0] != "ready":
            self.stop()
            why = message.why if isinstance(message, _Stopped) else repr(message[0])
            raise RenderProcessError(f"a render process could not start ({why})")
        self.ready = True

    def run(self, task: tuple[Any, ...], seconds: float) -> Any:
        """Do ``task`` in this process within ``seconds``: its value, or :class:`_Stopped`.

        An exception raised by the task (a :class:`JobError` for the job) is raised here.
        """
        document: list[str | None] = [None]
        try:
            self.conn.send(task)
        except OSError:
            return self._stopped(document[0])
        message = self._receive(time.monotonic() + seconds, document)
        if isinstance(message, _Stopped):
            return message
        if message[0] == "done":
            return message[1]
        if message[0] == "error":
            error: BaseException = message[1]
            if not isinstance(error, JobError):
                # A fault of ours: its traceback in the render process says where.
                error.__cause__ = RenderProcessError(f"in the render process:\n{message[2]}")
            raise error
        # "fatal": the render process is ending itself.
        self.process.join(STOP_SECONDS)
        return _Stopped(timed_out=False, why=str(message[1]), document=document[0])

    def _receive(self, deadline: float, document: list[str | None]) -> tuple[Any, ...] | _Stopped:
        """The next reply that is not a log line or a document name; :class:`_Stopped` when
        the process ended, or was killed at ``deadline``."""
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or not self.conn.poll(remaining):
                    self.stop(kill=True)
                    return _Stopped(timed_out=True, why="it took too long",
                                    document=document[0])
                message = self.conn.recv()
            except (EOFError, OSError):  # OSError: the pool closed the pipe meanwhile
                return self._stopped(document[0])
            if message[0] == "document":
                document[0] = message[1]
            elif message[0] == "log":
                _, name, level, text = message
                logging.getLogger(name).log(level, "%s", text)
            else:
                return message  # type: ignore[no-any-return]

    def _stopped(self, document: str | None) -> _Stopped:
        """The process ended by itself: how."""
        self.process.join(STOP_SECONDS)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                why = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                why = f"killed by signal {-code}"
        elif code == FATAL_EXIT:
            why = "it ran out of memory"
        else:
            why = f"it ended with exit status {code}"
        self.stop(kill=True)
        return _Stopped(timed_out=False, why=why, document=document)

    def stop(self, *, kill: bool = False) -> None:
        """End the process: ask (close its pipe), or kill it; it is gone when this returns."""
        self.conn.close()
        if kill and self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def service_processes() -> int:
    """Render processes for ``faxgw run``: one per core but one (for the worker), 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class RenderPool:
    """Up to ``processes`` render processes for one configuration, started when first needed
    (or all at once by :meth:`warm`)."""

    def __init__(self, config: Config, processes: int, open_documents: DocumentsFactory, *,
                 job_folder: Callable[[str], Path] | None = None) -> None:
        """``job_folder``: where a job's files are written (a job's id in, its folder out):
        what a render process stopped on the way left there is removed."""
        if processes < 1:
            raise ValueError("a render pool needs at least one process")
        self.config = config
        self._job_folder = job_folder
        self.processes = processes
        #: The time one job's render (and email) may take: ``[limits] render_seconds``.
        self.seconds = config.limits.render_seconds
        self._open_documents = open_documents
        self._changed = threading.Condition()
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._closed = False
        # One thread per process waits on it; calls beyond that queue here, not in threads.
        self._waiting = ThreadPoolExecutor(processes, thread_name_prefix="faxgw-render-wait")

    @property
    def running(self) -> bool:
        """Whether any render process has been started (and is not known to be gone)."""
        return bool(self._children)

    def pids(self) -> list[int]:
        """The process ids of the render processes."""
        with self._changed:
            return sorted(child.pid for child in self._children)

    def warm(self) -> None:
        """Start every render process now, so the first jobs do not wait for them."""
        with self._changed:
            while len(self._children) < self.processes and not self._closed:
                self._idle.append(self._start())

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        """Start every render process (:meth:`warm`) and wait until each has started."""
        self.warm()
        with self._changed:
            children = list(self._idle)
        for child in children:
            child.wait_ready(timeout)

    # -- rendering -----------------------------------------------------------------------

    async def render(self, job: Job, *, build: bool) -> tuple[Rendered, bytes | None]:
        """Render ``job`` (and build its email when ``build``) in a render process."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._waiting, functools.partial(self.render_now, job, build=build))

    async def build(self, job: Job, attachment: Path) -> bytes:
        """Build ``job``'s email with ``attachment`` in a render process."""
        loop = asyncio.get_running_loop()
        message = await loop.run_in_executor(self._waiting, self._run, job,
                                             ("build", job, str(attachment)))
        assert isinstance(message, bytes)
        return message

    def render_now(self, job: Job, *, build: bool = False) -> tuple[Rendered, bytes | None]:
        """:meth:`render`, in the calling thread (which waits for the render process).

        Raises the :class:`JobError` of a job that cannot be sent (its documents, its limits,
        or 414 / 415 when its render stopped two processes or ran out of time twice), and
        :class:`RenderProcessError` when no render process can be had.
        """
        rendered, message = self._run(job, ("render", job, build))
        return rendered, message

    def _run(self, job: Job, task: tuple[Any, ...]) -> Any:
        """Do ``task`` for ``job``; once more in a fresh process if the first one is lost."""
        child = self._acquire()
        try:
            for attempt in (1, 2):
                try:
                    child.wait_ready()
                except RenderProcessError:
                    with self._changed:
                        self._forget(child)
                    raise
                outcome = child.run(task, self.seconds)
                if not isinstance(outcome, _Stopped):
                    return outcome
                lost, child = child.pid, self._replace(child)
                self._remove_temporaries(job)
                if attempt == 1:
                    log.warning("%s: %s, in render process %d%s; trying once more in a fresh "
                                "process", job.id, _what(outcome, self.seconds), lost,
                                f" ({outcome.document})" if outcome.document else "")
            raise _job_error(outcome, self.seconds)
        finally:
            self._release(child)

    def _remove_temporaries(self, job: Job) -> None:
        """Remove the files a stopped render was writing (a fax TIFF half made, a PDF not
        yet renamed into place): nothing half-written stays with the job, nor goes with
        it to the failed jobs."""
        if self._job_folder is None:
            return
        try:
            removed = remove_unfinished(self._job_folder(job.id))
        except Exception as exc:  # noqa: BLE001 - tidying never fails the job's render
            log.debug("%s: the stopped render's files could not be removed: %s", job.id, exc)
            return
        if removed:
            log.debug("%s: removed what the stopped render left: %s", job.id,
                      ", ".join(removed))

    # -- the processes -------------------------------------------------------------------

    def _start(self) -> _Child:
        child = _Child(self.config, self._open_documents)
        self._children.add(child)
        log.debug("render process %d started", child.pid)
        return child

    def _acquire(self) -> _Child:
        """An idle render process; a new one while there are fewer than ``processes``."""
        with self._changed:
            while True:
                if self._closed:
                    raise RenderProcessError("the render processes are stopped")
                while self._idle:
                    child = self._idle.pop()
                    if child.alive():
                        return child
                    # Gone while idle (killed from outside): not any job's doing.
                    log.warning("render process %d had stopped (exit status %s); starting "
                                "a new one", child.pid, child.process.exitcode)
                    self._forget(child)
                if len(self._children) < self.processes:
                    return self._start()
                self._changed.wait()

    def _replace(self, child: _Child) -> _Child:
        """A fresh process in place of ``child``, which is gone."""
        with self._changed:
            self._forget(child)
            if self._closed:
                raise RenderProcessError("the render processes are stopped")
            return self._start()

    def _release(self, child: _Child) -> None:
        with self._changed:
            if child in self._children and not self._closed:
                self._idle.append(child)
                self._changed.notify()

    def _forget(self, child: _Child) -> None:
        child.stop(kill=True)
        self._children.discard(child)

    def close(self) -> None:
        """Stop the render processes (a render under way is cut off: its job is rendered
        again when it is sent)."""
        with self._changed:
            self._closed = True
            children, self._idle = list(self._children), []
            self._children.clear()
            self._changed.notify_all()
        self._waiting.shutdown(wait=False, cancel_futures=True)
        for child in children:
            # Killed, not asked: an idle render process holds nothing worth a goodbye (every
            # file it writes is renamed into place whole), and an interpreter with the
            # document libraries loaded takes a tenth of a second to wind down.
            child.stop(kill=True)


def _what(stopped: _Stopped, seconds: float) -> str:
    if stopped.timed_out:
        return (f"rendering took longer than {seconds:g} s ([limits] render_seconds) and was "
                "stopped")
    return f"rendering stopped its render process ({stopped.why})"


def _job_error(stopped: _Stopped, seconds: float) -> JobError:
    """The job's error after its second render was lost: 415 (time) or 414 (crash)."""
    code = codes.RENDER_TIMEOUT if stopped.timed_out else codes.RENDER_CRASHED
    if stopped.timed_out:
        what = f"rendering took longer than {seconds:g} s ([limits] render_seconds), twice"
    else:
        what = f"rendering stopped its render process twice ({stopped.why})"
    if stopped.document is None:
        return JobError(f"{what}; the fax was not made", code=code)
    return DocumentError(f"{stopped.document}: {what}; the document was not faxed", code=code,
                         filename=stopped.document)

