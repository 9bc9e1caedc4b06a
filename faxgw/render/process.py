"""A render process: renders the jobs handed to it over a pipe, one at a time.

Documents are untrusted input, and the libraries that read them (pypdf, Pillow, libtiff,
pdfium) can be made to run for hours, or to take all memory, or to crash. So a job is never
rendered in the gateway's own process: :class:`faxgw.engine.renderpool.RenderPool` starts
processes that run :func:`serve`, and stops one that crashes or runs out of time. This
module is the render process's side; it holds no limits of its own.

The conversation, as tuples over a :class:`multiprocessing.connection.Connection`:

- the render process, once it has imported everything: ``("ready", pid)``;
- the pool: ``("render", job, build)`` (render and pre-flight the job; build its email when
  ``build``) or ``("build", job, attachment)`` (the email alone); ``None`` to stop;
- the render process, while it works: ``("document", name)`` before each document is read
  and ``("document", None)`` once all are, and ``("log", logger, level, text)`` for each log
  record; then ``("done", value)``, or ``("error", exception, traceback)`` for an exception
  (a :class:`~faxgw.domain.errors.JobError` for a job that cannot be sent), or
  ``("fatal", why)`` just before it ends itself (it ran out of memory: a fresh process is
  better than one whose heap is in pieces).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..config import Config
from ..fax.message import build_message
from ..ports import DocumentStore
from . import pdf, tiff
from .job import render_and_build
from .rendered import FATAL_EXIT, RENDER_NICENESS

__all__ = ["RENDER_NICENESS", "FATAL_EXIT", "serve"]



class _ToParent(logging.Handler):
    """Sends each log record to the worker, which logs it as its own."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self.conn.send(("log", record.name, record.levelno, text))
        except Exception:  # noqa: BLE001 - a log line must never fail a render
            pass  # the worker is gone (its end of the pipe closed): nobody to tell


def serve(conn: Connection, config: Config, open_documents: Callable[[Config], DocumentStore],
          log_level: int) -> None:
    """Entry point of a render process: take tasks from ``conn`` until it closes."""
    _settle_in(conn, log_level)
    documents = open_documents(config)
    try:
        conn.send(("ready", os.getpid()))
        while True:
            task = conn.recv()
            if task is None:
                return
            reply = _perform(task, documents, config)
            _reply(conn, reply)
            if reply[0] == "fatal":
                os._exit(FATAL_EXIT)
    except (EOFError, OSError):
        return  # the worker closed its end (the pool is closing), or the worker is gone


def _settle_in(conn: Connection, log_level: int) -> None:
    """Everything a render process sets once, before its first job."""
    # Rendering is background work; the worker's sessions wait on round trips. At a lower
    # priority a burst of renders takes what CPU is left, and never delays a reply being read.
    with contextlib.suppress(OSError):
        os.nice(RENDER_NICENESS)
    # Ctrl-C in a terminal reaches the whole process group: the worker decides what stops
    # (it closes this process's pipe), and a render process must not die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers[:] = [_ToParent(conn)]
    root.setLevel(log_level)
    # fontTools reports every table of every font it subsets at INFO: not the gateway's news.
    logging.getLogger("fontTools").setLevel(max(log_level, logging.WARNING))
    # One job at a time in this process: pdfium may run in it, and a render stopped for
    # taking too long takes its rasterising with it.
    tiff.rasterise_here()
    pdf.document_hook = lambda name: conn.send(("document", name))
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


def _perform(task: tuple[Any, ...], documents: DocumentStore, config: Config) -> tuple[Any, ...]:
    """Do one task; the reply to send."""
    try:
        kind = task[0]
        if kind == "render":
            _, job, build = task
            return ("done", render_and_build(job, documents, config, build=build))
        if kind == "build":
            _, job, attachment = task
            return ("done", build_message(job, Path(attachment), config))
        raise ValueError(f"unknown render task {kind!r}")
    except MemoryError:
        return ("fatal", "it ran out of memory")
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the worker
        return ("error", exc, "".join(traceback.format_exception(exc)))


def _reply(conn: Connection, reply: tuple[Any, ...]) -> None:
    """Send ``reply``; an exception that cannot be pickled goes back as its text."""
    try:
        conn.send(reply)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        if reply[0] != "error":
            raise
        original = reply[1]
        stand_in = RuntimeError(f"{type(original).__name__}: {original} "
                                f"(not picklable: {exc})")
        conn.send(("error", stand_in, reply[2]))
