"""Rasterising a long document in several processes: one run of its pages each.

One process rasterises a page at a time in two threads (pdfium renders, a second thread
codes), and pdfium, which is not thread-safe, sets the pace: for Group 3, whose coding is
quick, a long document keeps a second core only partly busy. Split into runs of consecutive
pages, it is rasterised by as many processes as the cores make worth it
(:func:`processes_for`): the calling process takes the first run and writes it into the fax
TIFF itself; each further run is rasterised by a helper process into a TIFF of its own (a
temporary file next to the target), whose coded pages the caller then appends as they are,
without coding them again (:meth:`FaxTiffWriter.add_coded_page`). The file comes out byte
for byte as one process would have written it.

Helpers are forked, not spawned: a spawned process would spend longer importing numpy and
pdfium than it saves. The forked helper inherits the imported libraries, opens the PDF
afresh (it never touches the caller's pdfium objects) and reports through a pipe of its
own; it sends no log records, since it shares its parent's logging handlers and their
pipes. A helper ends with its parent, removing its file: a render process stopped for taking
too long, or a rasterising process killed, takes its helpers with it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType

from ..fsutil import PART_SUFFIX

#: Fewer pages than this per process and a helper costs more than it saves (forking,
#: opening the PDF again, and appending its pages take a few milliseconds; a page, ten).
MIN_PAGES_PER_PROCESS = 8
#: Processes for one document, at most: each already keeps up to two cores busy.
MAX_PROCESSES = 4

#: Cores one process keeps busy, by compression. A Group 4 page takes the coding thread about
#: as long as pdfium takes to render it, so both of a process's threads are busy; a Group 3
#: page is coded in half that time, and one process leaves much of a second core idle.
CORES_PER_PROCESS = {"group3": 1, "group4": 2}

#: What a helper runs: rasterise ``pages`` into the TIFF at the path; each page's coded size.
Work = Callable[[range, Path], tuple[int, ...]]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def processes_for(compression: str) -> int:
    """Processes worth using for one long document coded with ``compression`` here."""
    return max(1, cores() // CORES_PER_PROCESS.get(compression, 1))


def can_fork() -> bool:
    """Whether helpers can be forked here (POSIX)."""
    return hasattr(os, "fork")


def page_runs(pages: int, processes: int) -> list[range]:
    """``pages`` split into at most ``processes`` runs of consecutive pages, as even as can
    be, of at least :data:`MIN_PAGES_PER_PROCESS` pages each (one run for a short document)."""
    count = max(1, min(processes, MAX_PROCESSES, pages // MIN_PAGES_PER_PROCESS))
    bounds = [pages * index // count for index in range(count + 1)]
    return [range(start, stop) for start, stop in zip(bounds, bounds[1:], strict=False)]


@dataclass(frozen=True, slots=True)
class Part:
    """A run rasterised by a helper: the TIFF it wrote and each page's coded size."""

    path: Path
    coded_bytes: tuple[int, ...]


class Helpers:
    """Helper processes rasterising ``runs`` of a document into TIFFs of their own, next to
    ``out``. Use as a context manager: the helpers start on entry, :meth:`parts` gives what
    they wrote in the order of the runs, and on exit every helper is gone and every
    temporary file removed, whatever happened.
    """

    def __init__(self, out: Path, runs: Sequence[range], work: Work) -> None:
        self._out = out
        self._runs = list(runs)
        self._work = work
        self._started: list[_Helper] = []

    def __enter__(self) -> Helpers:
        try:
            for run in self._runs:
                handle, name = tempfile.mkstemp(dir=self._out.parent,
                                                prefix=f".{self._out.name}.",
                                                suffix=PART_SUFFIX)
                os.close(handle)
                try:
                    self._started.append(self._fork(run, Path(name)))
                except BaseException:
                    Path(name).unlink(missing_ok=True)  # no helper holds it: not stopped
                    raise
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop()

    def parts(self) -> Iterator[Part]:
        """What each helper wrote, in the order of the runs, as each is done. Raises what a
        helper raised (:class:`~faxgw.render.raster.RasterFailure` for the document's
        fault), or :class:`RuntimeError` for a helper that ended without a result."""
        for helper in self._started:
            try:
                kind, value = helper.receiver.recv()
            except EOFError:
                raise RuntimeError("a rasterising helper process ended without a result "
                                   f"({helper.reap()})") from None
            if kind == "error":
                raise value
            yield Part(path=helper.path, coded_bytes=value)

    def _fork(self, run: range, path: Path) -> _Helper:
        """Start a helper for ``run``. Forked with :func:`os.fork` rather than through
        :mod:`multiprocessing`, which lets no daemon process (a render process, a
        rasterising process) have children."""
        receiver, sender = multiprocessing.Pipe(duplex=False)
        watched, held = os.pipe()  # the parent holds the writing end until it ends
        try:
            with warnings.catch_warnings():
                # Python 3.12 and later warn of forking a process with threads, whose locks
                # the child may inherit held. The helper takes none of them: it runs pdfium,
                # numpy and libtiff, which no other thread uses while this one rasterises,
                # and Python resets its own locks (imports, logging) in a forked child.
                warnings.filterwarnings("ignore", r".*multi-threaded.*fork", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            for end in (receiver, sender):
                end.close()
            os.close(watched)
            os.close(held)
            raise
        if pid == 0:  # the helper: never returns
            code = 1
            try:
                receiver.close()
                os.close(held)
                for other in self._started:  # the parent's ends, inherited: not the helper's
                    other.close_ends()
                _helper_main(sender, self._work, run, path, watched)
                code = 0
            finally:
                os._exit(code)  # nothing of the parent's may run here: no exit handlers
        sender.close()  # the helper holds the only writing end: EOF means it is gone
        os.close(watched)
        return _Helper(pid=pid, receiver=receiver, held=held, path=path)

    def _stop(self) -> None:
        for helper in self._started:
            helper.stop()
        self._started.clear()


@dataclass(slots=True)
class _Helper:
    """A forked helper, as its parent holds it: its pipe, the end it watches, its file."""

    pid: int
    receiver: Connection
    held: int
    path: Path
    status: str | None = None

    def close_ends(self) -> None:
        """Close the parent's ends (in a sibling helper, which inherited them)."""
        self.receiver.close()
        if self.held >= 0:
            held, self.held = self.held, -1  # closed once: the number may be reused after
            os.close(held)

    def reap(self) -> str:
        """Wait for the helper to end; how it ended."""
        if self.status is None:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.status = f"exit code {code}" if code >= 0 else f"signal {-code}"
        return self.status

    def stop(self) -> None:
        """Kill the helper if it still runs, wait for it, remove its file."""
        self.close_ends()
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.reap()
        self.path.unlink(missing_ok=True)


def _helper_main(sender: Connection, work: Work, run: range, path: Path, watched: int) -> None:
    """A helper process: rasterise ``run`` into ``path``, send the coded sizes or the error.
    Ends at once when its parent does (``watched`` reads end-of-file)."""
    # The parent's handlers may write to its own pipes: a helper speaks through ``sender``.
    logging.getLogger().handlers.clear()
    threading.Thread(target=_end_with, args=(watched, path), daemon=True,
                     name="faxgw-rasterise-part-parent-watch").start()
    try:
        reply: tuple[str, object] = ("done", work(run, path))
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent
        reply = ("error", exc)
    try:
        sender.send(reply)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        sender.send(("error", RuntimeError(f"{reply[1]!r} (not picklable: {exc})")))
    finally:
        with contextlib.suppress(OSError):
            sender.close()


def _end_with(watched: int, path: Path) -> None:
    """End the helper once its parent has ended, removing its file: nobody will read it."""
    with contextlib.suppress(OSError):
        os.read(watched, 1)  # nothing is ever written: it returns at end-of-file
    with contextlib.suppress(OSError):
        path.unlink()
    os._exit(0)
