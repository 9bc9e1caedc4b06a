"""Throughput benchmark: faxgw (intake -> render -> send) against a naive smtplib loop.

Runs, in one process and against one local test SMTP server (faxgw.testing's
``FaxSMTPServer``: aiosmtpd, STARTTLS, AUTH PLAIN, optional reply delay):

1. **faxgw**: N one-page jobs go through a fresh spool and job store: dropped into
   ``outgoing/<number>/`` (or ``--intake submit``: ``Spool.submit`` + ``register``), then one
   ``Worker.run_once()`` takes, renders and sends them, ``[limits] messages_per_minute = 0``
   and ``[limits] connections = C``. The timed part runs from before the first file is
   dropped (or submitted) to the end of ``run_once``.
2. **naive**: the same number of messages of the same size, each sent by stdlib ``smtplib``
   on a new connection (connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT),
   one after the other, with TCP_NODELAY set (like asyncio does), and once more for a few
   messages with Nagle left on (smtplib's default) to show the loopback artefact.
3. **queue scan**: ``store.claim_due`` with 100 due jobs among 100 stored, and among
   100,000 finished (+10,000 not yet due) jobs, with the query plan SQLite chose.

Usage::

    .venv/bin/python bench/throughput.py [--jobs N] [--delay-ms D] [--connections C]
        [--intake drop|submit] [--document scan|letter] [--server process|thread]
        [--repeat R] [--naive-jobs N] [--nagle-jobs N] [--profile] [--breakdown]
        [--tracemalloc] [--skip-scan] [--no-probes] [--json]

``FAXGW_BENCH_SRC=/path/to/copy`` measures the faxgw package in that folder instead.

Everything runs on 127.0.0.1, in temporary folders that are removed at the end.
See bench/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

# The faxgw to measure: this checkout's working tree, or a copy named by FAXGW_BENCH_SRC
# (to measure a proposed change without touching the checkout).
ROOT = Path(os.environ.get("FAXGW_BENCH_SRC") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from faxgw.app.wiring import build_worker  # noqa: E402
from faxgw.config import Config, config_from_dict  # noqa: E402
from faxgw.domain.jobs import Job, JobState  # noqa: E402
from faxgw.engine.worker import Worker  # noqa: E402
from faxgw.intake.register import register  # noqa: E402
from faxgw.render import render_pdf  # noqa: E402
from faxgw.store.sqlite import SQLiteJobStore  # noqa: E402

USER = "fax@contoso.com"
PASSWORD = "bench password 42"
NUMBER = "+4930123456"
ADDRESS = "{e164}@fax.example.net"
RECIPIENT = "+4930123456@fax.example.net"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the document ------------------------------------------------------------------------


def make_pdf(path: Path, kind: str = "scan") -> Path:
    """A one-page A4 PDF made with fpdf2.

    ``scan``: a 200 dpi bilevel page image (text-like marks, some speckle), about 47 KB,
    like a page from a copier's scan-to-folder; ``letter``: a text-only purchase order,
    about 2 KB, like a PDF from an ERP system.
    """
    import random

    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_compression(True)
    pdf.add_page()
    if kind == "scan":
        from PIL import Image, ImageDraw

        width, height = 1654, 2339  # A4 at 200 dpi, the fax "fine" resolution
        image = Image.new("1", (width, height), 1)
        draw = ImageDraw.Draw(image)
        rng = random.Random(7)
        letters = "abcdefghijklmnopqrstuvwxyz0123456789"
        for y in range(150, height - 150, 44):
            x = 120
            while x < width - 150:
                w = rng.randint(20, 90)
                if rng.random() < 0.15:
                    draw.rectangle([x, y, x + w, y + 22], fill=0)
                else:
                    draw.text((x, y), "".join(rng.choice(letters) for _ in range(w // 12 + 1)),
                              fill=0)
                x += w + 18
        for _ in range(3000):
            draw.point((rng.randrange(width), rng.randrange(height)), fill=0)
        pdf.image(image, x=0, y=0, w=210, h=297)
    else:
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 12, "Contoso Ltd. - Purchase order 4711", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        for line in range(40):
            pdf.cell(0, 6, f"Item {line + 1:3d}: widget type {line % 7}, quantity "
                     f"{line * 3 + 1}, unit price {line * 1.25 + 3:.2f} EUR",
                     new_x="LMARGIN", new_y="NEXT")
        for y in range(40, 280, 20):
            pdf.line(10, y, 200, y)
    pdf.output(str(path))
    return path


# -- the SMTP server ---------------------------------------------------------------------


class Server:
    """The test server, in a child process (default) or in a thread of this process."""

    def __init__(self, mode: str, delay: float, workdir: Path) -> None:
        self.mode = mode
        self.delay = delay
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = 0
        self.ca_file = Path()
        self._proc: subprocess.Popen[str] | None = None
        self._thread_server: Any = None
        self._count = 0
        self._sizes: list[int] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> Server:
        if self.mode == "thread":
            from faxgw.testing.smtp_server import FaxSMTPServer

            server = FaxSMTPServer(tls="starttls", users={USER: PASSWORD},
                                   reply_delay=self.delay)
            server.start()
            self._thread_server = server
            self.port, self.ca_file = server.port, server.ca_file
            return self
        ca_out = self.workdir / "server-ca.pem"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "faxgw.testing.smtp_server", "--port", "0",
             "--user", f"{USER}:{PASSWORD}", "--reply-delay", str(self.delay),
             "--ca-out", str(ca_out)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self._proc.stdout is not None
        listening = self._proc.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", listening)
        if not match:
            self.stop()
            raise RuntimeError(f"the test server did not start: {listening!r}")
        self.host, self.port = match.group(1), int(match.group(2))
        self._proc.stdout.readline()  # "CA file: ..."
        self.ca_file = ca_out
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            match = re.match(r"message \d+: .*\((\d+) bytes", line)
            if match:
                with self._lock:
                    self._count += 1
                    self._sizes.append(int(match.group(1)))

    def received(self) -> tuple[int, list[int]]:
        """How many messages the server accepted so far, and their sizes."""
        if self._thread_server is not None:
            messages = list(self._thread_server.messages)
            return len(messages), [len(m.data) for m in messages]
        with self._lock:
            return self._count, list(self._sizes)

    def wait_received(self, count: int, timeout: float = 5.0) -> tuple[int, list[int]]:
        # The child prints its messages every 0.25 s: wait until it caught up.
        deadline = time.monotonic() + timeout
        while True:
            got, sizes = self.received()
            if got >= count or time.monotonic() > deadline:
                return got, sizes
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time the server used so far (its process; thread mode: not separable)."""
        if self._proc is None:
            return float("nan")
        with open(f"/proc/{self._proc.pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self._thread_server is not None:
            self._thread_server.stop()
            self._thread_server = None
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


# -- measuring ---------------------------------------------------------------------------


def _status_kb(name: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (VmHWM); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


class Phase:
    """Wall time, CPU of this process (all threads) and of the server during one phase."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> Phase:
        self.cpu0, self.scpu0 = _cpu(), self.server.cpu_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = _cpu() - self.cpu0
        self.server_cpu = self.server.cpu_seconds() - self.scpu0


# -- faxgw -------------------------------------------------------------------------------


def make_config(workdir: Path, server: Server, connections: int) -> Config:
    password_file = workdir / "smtp-password"
    password_file.write_text(PASSWORD + "\n")
    raw: dict[str, Any] = {
        "spool": {"dir": str(workdir / "spool"), "settle_seconds": 0},
        "service": {"address": ADDRESS, "region": "DE"},
        "smtp": {"host": server.host, "port": server.port, "ca_file": str(server.ca_file),
                 "sender": USER, "timeout_seconds": 60},
        "auth": {"method": "password", "username": USER, "password_file": str(password_file)},
        "limits": {"messages_per_minute": 0, "connections": connections},
    }
    return config_from_dict(raw, base=workdir)


class ThreadProfiles:
    """Profiles of the calls faxgw hands to ``asyncio.to_thread`` (rendering), merged.

    cProfile sees only the thread it was enabled in (the event loop); the rendering runs in
    the default executor's threads, so each offloaded call is profiled on its own.
    """

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = asyncio.to_thread

        async def to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            def profiled() -> Any:
                profile = cProfile.Profile()
                with self._lock:
                    self.profiles.append(profile)
                return profile.runcall(func, *args, **kwargs)

            return await original(profiled)

        asyncio.to_thread = to_thread  # type: ignore[assignment]
        try:
            yield
        finally:
            asyncio.to_thread = original  # type: ignore[assignment]

    def stats(self) -> pstats.Stats | None:
        if not self.profiles:
            return None
        stats = pstats.Stats(self.profiles[0], stream=io.StringIO())
        for profile in self.profiles[1:]:
            stats.add(profile)
        return stats


class Probes:
    """Light timing hooks around the worker's steps (a few microseconds per job).

    They wrap, for the one run, whichever of these exist: ``Worker.take_intake`` (how long
    intake runs before the first claim), ``Worker._prepare`` (the message of each job as the
    session loop waits for it), ``asyncio.to_thread`` (the rendering: from hand-off to
    result, and the part spent running in the thread) and the sessions the worker's transport
    opens (sessions opened, when the first and last message were accepted). faxgw's code
    is unchanged.
    """

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.intake: tuple[float, float] | None = None
        self.prepare_ms: list[float] = []
        self.thread_wall_ms: list[float] = []
        self.thread_run_ms: list[float] = []
        self.sessions = 0
        self.sends: list[float] = []
        #: (session, start, end) of every session's send, for the per-session cycle.
        self.send_spans: list[tuple[int, float, float]] = []

    @contextlib.contextmanager
    def installed(self, worker: Worker) -> Iterator[None]:
        import inspect

        probes = self
        patched: list[str] = []

        def wrap_method(name: str, record: Callable[[float, float], None]) -> None:
            method = getattr(worker, name, None)
            if method is None:
                return
            if inspect.iscoroutinefunction(method):
                async def timed_async(*args: Any, **kwargs: Any) -> Any:
                    start = time.perf_counter()
                    try:
                        return await method(*args, **kwargs)
                    finally:
                        record(start, time.perf_counter())

                setattr(worker, name, timed_async)
            else:
                def timed(*args: Any, **kwargs: Any) -> Any:
                    start = time.perf_counter()
                    try:
                        return method(*args, **kwargs)
                    finally:
                        record(start, time.perf_counter())

                setattr(worker, name, timed)
            patched.append(name)

        def intake_done(start: float, end: float) -> None:
            probes.intake = (start - probes.t0, end - probes.t0)

        def prepared(start: float, end: float) -> None:
            probes.prepare_ms.append((end - start) * 1000)

        wrap_method("take_intake", intake_done)
        wrap_method("_prepare", prepared)

        original_to_thread = asyncio.to_thread

        async def timed_to_thread(func: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
            def run() -> Any:
                begin = time.perf_counter()
                try:
                    return func(*args, **kw)
                finally:
                    probes.thread_run_ms.append((time.perf_counter() - begin) * 1000)

            start = time.perf_counter()
            try:
                return await original_to_thread(run)
            finally:
                probes.thread_wall_ms.append((time.perf_counter() - start) * 1000)

        transport = worker.transport
        original_session = transport.session

        def counting_session(account: str) -> Any:
            session = original_session(account)
            opened, sent = session.open, session.send

            async def open_counted() -> None:
                probes.sessions += 1
                await opened()

            async def send_timed(*a: Any, **kw: Any) -> Any:
                start = time.perf_counter()
                accepted = await sent(*a, **kw)
                end = time.perf_counter()
                probes.sends.append(end - probes.t0)
                probes.send_spans.append((id(session), start, end))
                return accepted

            session.open, session.send = open_counted, send_timed
            return session

        asyncio.to_thread = timed_to_thread  # type: ignore[assignment]
        transport.session = counting_session
        try:
            yield
        finally:
            asyncio.to_thread = original_to_thread  # type: ignore[assignment]
            del transport.session
            for name in patched:
                delattr(worker, name)

    def _middle_rate(self) -> float | None:
        count = len(self.sends)
        low, high = count // 10, count - 1 - count // 10
        if high - low < 2:
            return None
        return (high - low) / (self.sends[high] - self.sends[low])

    def _cycle(self) -> dict[str, float] | None:
        """Per session: time in send() (the server's round trips) and between two sends
        (faxgw's own work: recording the outcome, composing, waiting for the event loop)."""
        by_session: dict[int, list[tuple[float, float]]] = {}
        for session, start, end in self.send_spans:
            by_session.setdefault(session, []).append((start, end))
        inside, between = [], []
        for spans in by_session.values():
            spans.sort()
            inside.extend((end - start) * 1000 for start, end in spans)
            between.extend((spans[i + 1][0] - spans[i][1]) * 1000 for i in range(len(spans) - 1))
        if not inside or not between:
            return None
        # The same by quarter of the sending time: while the intake still takes and renders
        # files (the first quarters) the sessions share the process with it.
        first = min(start for _, start, _ in self.send_spans)
        last = max(start for _, start, _ in self.send_spans)
        quarters: list[list[float]] = [[], [], [], []]
        for _, start, end in self.send_spans:
            index = min(3, int((start - first) / ((last - first) or 1) * 4))
            quarters[index].append((end - start) * 1000)
        return {"send_ms": statistics.mean(inside), "between_sends_ms": statistics.mean(between),
                "send_ms_by_quarter": [statistics.mean(q) if q else 0.0 for q in quarters]}

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            ordered = sorted(values)
            return {"mean": statistics.mean(ordered), "p50": ordered[len(ordered) // 2],
                    "p90": ordered[int(len(ordered) * 0.9)], "max": ordered[-1]}

        return {
            "take_intake_s": self.intake,
            "sessions_opened": self.sessions,
            "first_sent_s": self.sends[0] if self.sends else None,
            # The steady rate: the middle 80 % of the messages, away from start-up and tail.
            "middle_80pct_per_second": self._middle_rate(),
            "session_cycle": self._cycle(),
            "last_sent_s": self.sends[-1] if self.sends else None,
            "prepare_ms": stats(self.prepare_ms),
            "render_thread_wall_ms": stats(self.thread_wall_ms),
            "render_thread_run_ms": stats(self.thread_run_ms),
        }


def run_faxgw(args: argparse.Namespace, workdir: Path, server: Server, source: Path,
              *, profile: bool = False, label: str = "faxgw") -> dict[str, Any]:
    """N jobs through a fresh spool: drop/submit, then one run_once; timed end to end."""
    run_dir = workdir / label
    run_dir.mkdir()
    config = make_config(run_dir, server, args.connections)
    processes = 0
    if args.render == "processes":
        try:
            from faxgw.engine.renderpool import service_processes
        except ImportError:  # a faxgw that renders only in threads
            pass
        else:
            processes = service_processes()
    worker = build_worker(config, render_processes=processes)
    pool = getattr(worker, "render_pool", None)
    if pool is not None:
        # The burst arrives at a running service (faxgw run), whose render processes
        # started with it: wait for them before the clock starts.
        pool.wait_ready()
    data = source.read_bytes()
    try:
        from faxgw.app.submit import prepare as submit_prepare
    except ImportError:  # a faxgw that renders only when it sends
        submit_prepare = None
    received_before, _ = server.received()
    profiler = cProfile.Profile() if profile else None
    threads = ThreadProfiles() if profile else None

    rss_before = _status_kb("VmRSS")
    hwm_reset = _reset_peak_rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    with contextlib.ExitStack() as stack:
        if threads is not None:
            stack.enter_context(threads.installed())
        probes = Probes(time.perf_counter())
        if not args.no_probes:
            stack.enter_context(probes.installed(worker))
        if profiler is not None:
            profiler.enable()
        with Phase(server) as phase:
            probes.t0 = phase.t0
            if args.intake == "drop":
                folder = worker.spool.layout.outgoing / NUMBER
                folder.mkdir()
                for index in range(args.jobs):
                    # What a scanner or a user does: write a file into the number's folder.
                    (folder / f"scan-{index:05d}.pdf").write_bytes(data)
            else:
                for _ in range(args.jobs):
                    # What ``faxgw submit`` does: copy in, register, render and pre-flight.
                    intake = worker.spool.submit(NUMBER, [source])
                    job = register(intake, config=config, store=worker.store,
                                   documents=worker.spool)
                    if submit_prepare is not None and job.state is JobState.QUEUED:
                        submit_prepare(worker.store, worker.spool, config, job,
                                       renderer=worker.render_pool)
            intake_done = time.perf_counter()
            summary = asyncio.run(worker.run_once())
        if profiler is not None:
            profiler.disable()
    tm_peak = None
    if args.tracemalloc:
        import tracemalloc

        tm_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    hwm = _status_kb("VmHWM")
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    counts = worker.store.counts()
    worker.close()
    got, sizes = server.wait_received(received_before + args.jobs)
    sizes = sizes[received_before:]
    result: dict[str, Any] = {
        "jobs": args.jobs,
        "intake": args.intake,
        "seconds": phase.seconds,
        "drop_or_submit_seconds": intake_done - phase.t0,
        "probes": None if args.no_probes else probes.summary(),
        "jobs_per_second": args.jobs / phase.seconds,
        "sent": summary.sent,
        "taken": summary.taken,
        "failed": summary.failed,
        "deferred": summary.deferred,
        "states": {state.value: n for state, n in counts.items() if n},
        "server_received": got - received_before,
        "message_bytes": round(statistics.mean(sizes)) if sizes else None,
        "cpu_seconds": phase.cpu,
        "server_cpu_seconds": phase.server_cpu,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": hwm / 1024 if hwm_reset else None,
        "peak_rss_delta_mb": (hwm - rss_before) / 1024 if hwm_reset else None,
        "ru_maxrss_delta_mb": (maxrss_after - maxrss_before) / 1024,
        "tracemalloc_peak_mb": tm_peak / 2**20 if tm_peak is not None else None,
    }
    if profiler is not None:
        result["_profile"] = (profiler, threads.stats() if threads else None)
    if summary.sent != args.jobs:
        result["warning"] = f"only {summary.sent} of {args.jobs} jobs were sent"
    return result


# -- the naive loop ----------------------------------------------------------------------


def naive_message(attachment: bytes, index: int) -> EmailMessage:
    """An email like faxgw's: headers, a short text part, the rendered PDF attached."""
    message = EmailMessage()
    message["From"] = USER
    message["To"] = RECIPIENT
    message["Subject"] = f"Fax to {NUMBER}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="contoso.com")
    message["X-Faxgw-Job"] = f"naive-{index:05d}"
    message.set_content("", charset="utf-8", cte="quoted-printable")
    message.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename=f"fax-naive-{index:05d}.pdf")
    return message


def _nodelay(smtp: smtplib.SMTP) -> None:
    assert smtp.sock is not None
    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def run_naive(server: Server, attachment_path: Path, jobs: int, *, nodelay: bool) -> dict[str, Any]:
    """Connect, STARTTLS, AUTH and send one message per connection, one after the other."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    received_before, _ = server.received()
    with Phase(server) as phase:
        for index in range(jobs):
            attachment = attachment_path.read_bytes()
            # Connects and reads the greeting (the client has written nothing yet).
            smtp = smtplib.SMTP(server.host, server.port, timeout=60)
            try:
                if nodelay:
                    _nodelay(smtp)
                smtp.ehlo()
                smtp.starttls(context=context)
                if nodelay:  # the option belongs to the socket; set again on the TLS wrapper
                    _nodelay(smtp)
                smtp.ehlo()
                smtp.login(USER, PASSWORD)
                smtp.send_message(naive_message(attachment, index))
                smtp.quit()
            finally:
                smtp.close()
    got, sizes = server.wait_received(received_before + jobs)
    sizes = sizes[received_before:]
    return {
        "jobs": jobs,
        "nodelay": nodelay,
        "seconds": phase.seconds,
        "jobs_per_second": jobs / phase.seconds,
        "ms_per_message": phase.seconds / jobs * 1000,
        "server_received": got - received_before,
        "message_bytes": round(statistics.mean(sizes)) if sizes else None,
        "cpu_seconds": phase.cpu,
        "server_cpu_seconds": phase.server_cpu,
    }


def run_bare(server: Server, attachment_path: Path, jobs: int, connections: int) -> dict[str, Any]:
    """The ceiling for faxgw: ``connections`` bare aiosmtplib sessions (one AUTH each) sending
    messages built beforehand, and nothing else: no intake, no rendering, no job store."""
    import aiosmtplib

    attachment = attachment_path.read_bytes()
    messages = [naive_message(attachment, index).as_bytes() for index in range(jobs)]
    context = ssl.create_default_context(cafile=str(server.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    received_before, _ = server.received()

    async def session(queue: list[bytes]) -> None:
        smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, tls_context=context,
                               start_tls=True, timeout=60)
        await smtp.connect()
        await smtp.login(USER, PASSWORD)
        while queue:
            await smtp.sendmail(USER, [RECIPIENT], queue.pop())
        await smtp.quit()

    async def run() -> None:
        queue = list(messages)
        await asyncio.gather(*(session(queue) for _ in range(connections)))

    with Phase(server) as phase:
        asyncio.run(run())
    got, sizes = server.wait_received(received_before + jobs)
    sizes = sizes[received_before:]
    return {
        "jobs": jobs,
        "connections": connections,
        "seconds": phase.seconds,
        "jobs_per_second": jobs / phase.seconds,
        "server_received": got - received_before,
        "message_bytes": round(statistics.mean(sizes)) if sizes else None,
    }


# -- the queue scan ----------------------------------------------------------------------


def _bulk_insert(store: SQLiteJobStore, count: int, state: JobState, base: datetime,
                 next_attempt_at: datetime | None = None) -> None:
    """Insert ``count`` jobs fast: the store's own insert, in one transaction.

    ``SQLiteJobStore.add`` commits every job (and 100,000 commits take a minute); this uses
    the same table, columns and store connection, with two history rows per job.
    """
    db = store._db  # noqa: SLF001 - a benchmark filling a store quickly
    stamp = lambda value: value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    rows, history = [], []
    for index in range(count):
        job_id = f"{state.value[:4]}{index:08d}"
        created = base + timedelta(seconds=index)
        rows.append((job_id, stamp(created), stamp(created), state.value, 0, 1,
                     stamp(next_attempt_at) if next_attempt_at else None, NUMBER, RECIPIENT,
                     USER, "Fax", "", '["scan.pdf"]', 1, 30000, f"<faxgw.{job_id}@contoso.com>",
                     None, "250 2.0.0 OK", "outgoing", stamp(created)))
        history.append((job_id, stamp(created), "accepted", "queued", None, ""))
        history.append((job_id, stamp(created), "sent", state.value, 0, "250 2.0.0 OK"))
    with store._write():  # noqa: SLF001
        db.executemany(
            "INSERT INTO jobs (id, created, updated, state, code, attempts, next_attempt_at,"
            " number, recipient, sender, subject, note, documents, pages, bytes, message_id,"
            " error, last_reply, source, age_from)"
            f" VALUES ({','.join('?' * 20)})",
            rows)
        db.executemany("INSERT INTO history (job_id, at, event, state, code, detail)"
                       " VALUES (?,?,?,?,?,?)", history)


def scan_case(workdir: Path, name: str, finished: int, not_due: int,
              repeat: int = 15) -> dict[str, Any]:
    """Time claim_due (100 due jobs) and next_due_at in a store holding other jobs too."""
    store = SQLiteJobStore(workdir / f"scan-{name}.db")
    now = datetime.now(UTC)
    old = now - timedelta(days=400)
    if finished:
        _bulk_insert(store, finished, JobState.SENT, old)
    if not_due:
        _bulk_insert(store, not_due, JobState.DEFERRED, old,
                     next_attempt_at=now + timedelta(hours=1))
    for index in range(100):
        store.add(Job(id=f"due{index:05d}", number=NUMBER, recipient=RECIPIENT, sender=USER,
                      documents=["scan.pdf"], created=now - timedelta(seconds=100 - index)))
    db = store._db  # noqa: SLF001
    db.execute("ANALYZE")
    statements: list[str] = []
    claim_times, next_times = [], []
    for round_ in range(repeat):
        if round_ == 0:
            db.set_trace_callback(statements.append)
        start = time.perf_counter()
        claimed = store.claim_due(now, 500, owner="bench", lease_until=now + timedelta(hours=1))
        claim_times.append(time.perf_counter() - start)
        db.set_trace_callback(None)
        assert len(claimed) == 100, len(claimed)
        with store._write():  # noqa: SLF001 - untimed: put the 100 jobs back
            db.execute("UPDATE jobs SET state = 'queued', owner = NULL, lease_until = NULL"
                       " WHERE state = 'sending'")
    for _ in range(repeat * 10):
        start = time.perf_counter()
        store.next_due_at()
        next_times.append(time.perf_counter() - start)
    select = next((s for s in statements if s.lstrip().upper().startswith("SELECT")), None)
    plan = []
    if select:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + select)]
    total = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    store.close()
    return {
        "stored_jobs": total,
        "claim_due_ms": statistics.median(claim_times) * 1000,
        "next_due_at_ms": statistics.median(next_times) * 1000,
        "claim_select": select,
        "plan": plan,
    }


def run_scan_check(workdir: Path) -> dict[str, Any]:
    small = scan_case(workdir, "small", 0, 0)
    large = scan_case(workdir, "large", 100_000, 10_000)
    return {
        "small": small,
        "large": large,
        "claim_ratio": large["claim_due_ms"] / small["claim_due_ms"],
        "next_due_ratio": large["next_due_at_ms"] / small["next_due_at_ms"],
    }


# -- per-job costs -----------------------------------------------------------------------


def run_breakdown(workdir: Path, source: Path, server: Server, connections: int,
                  repeat: int = 30) -> dict[str, float]:
    """Per-job cost of the steps the worker runs, each measured alone, in ms."""
    from email.generator import BytesGenerator

    from faxgw.fax.message import compose

    try:  # the lean build the worker uses (faxgw versions that have it)
        from faxgw.fax.message import message_bytes
    except ImportError:
        message_bytes = None

    out: dict[str, float] = {}
    folder = workdir / "breakdown"
    folder.mkdir()
    config = make_config(folder, server, connections)
    worker = build_worker(config)
    spool = worker.spool

    def timed(name: str, func: Callable[[], Any]) -> Any:
        result = None
        start = time.perf_counter()
        for _ in range(repeat):
            result = func()
        out[name] = (time.perf_counter() - start) / repeat * 1000
        return result

    intakes: list[Any] = []
    drop = spool.layout.outgoing / NUMBER
    drop.mkdir()
    for index in range(repeat):
        (drop / f"scan-{index:03d}.pdf").write_bytes(source.read_bytes())
    start = time.perf_counter()
    dropped = spool.scan()
    out["spool.scan, per dropped file (rename in, job.json once, 5 fsyncs)"] = (
        (time.perf_counter() - start) / len(dropped) * 1000)
    timed("spool.submit (copy in, job.json once, 6 fsyncs)",
          lambda: intakes.append(spool.submit(NUMBER, [source])))
    jobs: list[Job] = []
    timed("intake.register (parse number, store.add)",
          lambda: jobs.append(register(intakes[len(jobs)], config=config, store=worker.store,
                                       documents=spool)))
    target = folder / "render.pdf"
    timed("render_pdf alone (pypdf read + write, 2 fsyncs)", lambda: render_pdf([source], target))
    try:  # what the worker calls per job: render + cover + pre-flight, as the service wants
        from faxgw.render.job import render_job
    except ImportError:
        pass
    else:
        queued = [job for job in jobs if job.state is JobState.QUEUED]
        if queued:
            timed("render.job.render_job (what the worker runs per job)",
                  lambda: render_job(queued[0], spool, config))
    job = worker.store.get(jobs[0].id)
    job.pages, job.bytes = 1, target.stat().st_size

    def flatten() -> bytes:
        buffer = io.BytesIO()
        BytesGenerator(buffer).flatten(compose(job, target))
        return buffer.getvalue()

    timed("compose + flatten with email.generator (base64 of the PDF)", flatten)
    if message_bytes is not None:
        timed("fax.message.message_bytes (what the worker builds per job)",
              lambda: message_bytes(job, target))
    counter = iter(range(repeat * 4))
    timed("store.update 'rendered' (1 commit)",
          lambda: (worker.store.update(jobs[next(counter) % len(jobs)].id, pages=1, bytes=1,
                                       event="rendered", detail="x")))
    out["fsync of a small file (this disk)"] = _fsync_cost(folder)
    worker.close()
    return out


def _fsync_cost(folder: Path, repeat: int = 50) -> float:
    start = time.perf_counter()
    for index in range(repeat):
        fd = os.open(folder / f".fsync-{index}", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        os.close(fd)
    return (time.perf_counter() - start) / repeat * 1000


# -- output ------------------------------------------------------------------------------


def profile_text(profiler: cProfile.Profile, threads: pstats.Stats | None, top: int) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stream.write(f"--- event-loop thread, top {top} by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(top)
    stream.write(f"--- event-loop thread, top {top} by own time ---\n")
    stats.sort_stats("tottime").print_stats(top)
    if threads is not None:
        threads.stream = stream  # type: ignore[attr-defined]
        stream.write("--- asyncio.to_thread calls (rendering), merged, top 15 cumulative ---\n")
        threads.sort_stats("cumulative").print_stats(15)
    return stream.getvalue()


def source_state() -> str:
    """The commit of the faxgw measured, and whether faxgw/ differs from it (read-only git)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), "diff",
                                "--quiet", "HEAD", "--", "faxgw"], timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "not a git checkout"
    return f"{head}{' + uncommitted changes in faxgw/' if dirty else ''}"


def load_line() -> str:
    with contextlib.suppress(OSError):
        return open("/proc/loadavg").read().strip()
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per side (default 1000)")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="the test server answers every command this late (default 0)")
    parser.add_argument("--connections", type=int, default=3,
                        help="[limits] connections per mailbox (default 3)")
    parser.add_argument("--intake", choices=["drop", "submit"], default="drop",
                        help="drop files into outgoing/<number>/ (default) or Spool.submit")
    parser.add_argument("--document", choices=["scan", "letter"], default="scan",
                        help="the page: a 47 KB scanned page (default) or a 2 KB text PDF")
    parser.add_argument("--render", choices=["processes", "threads"], default="processes",
                        help="render in processes as faxgw run does (default), or in threads "
                             "as faxgw run --once does")
    parser.add_argument("--server", choices=["process", "thread"], default="process",
                        help="run the test server in a child process (default) or a thread")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run faxgw and the naive loop this often, alternately, and "
                             "report the median run of each (default 1)")
    parser.add_argument("--nagle-jobs", type=int, default=50,
                        help="messages for the naive loop with Nagle on (0: skip)")
    parser.add_argument("--bare-jobs", type=int, default=None,
                        help="messages for the bare aiosmtplib sessions, the ceiling "
                             "(default: --jobs, at most 300; 0: skip)")
    parser.add_argument("--naive-jobs", type=int, default=None,
                        help="messages for the naive loop (default: --jobs)")
    parser.add_argument("--no-probes", action="store_true",
                        help="do not time the worker's steps (take_intake, prepare, sessions)")
    parser.add_argument("--skip-scan", action="store_true", help="skip the queue-scan check")
    parser.add_argument("--profile", action="store_true",
                        help="run the faxgw side once more under cProfile and print it")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each per-job step of the worker alone")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations of the worker (slows it down)")
    parser.add_argument("--tmpdir", type=Path, default=None,
                        help="where the temporary spool goes (default: the system's)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.connections < 1 or args.repeat < 1:
        parser.error("--jobs, --connections and --repeat must be at least 1")
    naive_jobs = args.naive_jobs or args.jobs

    workdir = Path(tempfile.mkdtemp(prefix="faxgw-bench-", dir=args.tmpdir))
    report: dict[str, Any] = {
        "settings": {"jobs": args.jobs, "naive_jobs": naive_jobs, "delay_ms": args.delay_ms,
                     "connections": args.connections, "intake": args.intake,
                     "render": args.render,
                     "document": args.document, "repeat": args.repeat, "faxgw_src": str(ROOT),
                     "faxgw_commit": source_state(),
                     "server": args.server, "python": sys.version.split()[0],
                     "cpus": os.cpu_count(), "load_before": load_line()},
    }
    server = Server(args.server, args.delay_ms / 1000, workdir)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        server.start()
        source = make_pdf(workdir / f"{args.document}.pdf", args.document)
        attachment = workdir / "rendered.pdf"
        render_pdf([source], attachment)  # what faxgw attaches: the naive loop sends the same
        report["document"] = {"source_bytes": source.stat().st_size,
                              "rendered_bytes": attachment.stat().st_size}

        faxgw_runs, naive_runs = [], []
        for round_ in range(1, args.repeat + 1):
            say(f"[{round_}/{args.repeat}] faxgw: {args.jobs} jobs, {args.connections} "
                f"connection(s), delay {args.delay_ms:g} ms ...")
            faxgw_runs.append(run_faxgw(args, workdir, server, source, label=f"faxgw-{round_}"))
            say(f"[{round_}/{args.repeat}] naive smtplib (TCP_NODELAY): {naive_jobs} messages ...")
            naive_runs.append(run_naive(server, attachment, naive_jobs, nodelay=True))
        report["faxgw"] = _median_run(faxgw_runs)
        report["naive"] = _median_run(naive_runs)
        report["faxgw_runs_jobs_per_second"] = [r["jobs_per_second"] for r in faxgw_runs]
        report["naive_runs_jobs_per_second"] = [r["jobs_per_second"] for r in naive_runs]
        if args.nagle_jobs:
            say(f"naive smtplib (Nagle on): {args.nagle_jobs} messages ...")
            report["naive_nagle"] = run_naive(server, attachment, args.nagle_jobs, nodelay=False)
        report["ratio"] = report["faxgw"]["jobs_per_second"] / report["naive"]["jobs_per_second"]
        bare_jobs = min(args.jobs, 300) if args.bare_jobs is None else args.bare_jobs
        if bare_jobs:
            say(f"bare aiosmtplib, {args.connections} session(s): {bare_jobs} messages ...")
            report["bare"] = run_bare(server, attachment, bare_jobs, args.connections)
        if args.breakdown:
            say("per-job step costs ...")
            report["breakdown_ms"] = run_breakdown(workdir, source, server, args.connections)
        if not args.skip_scan:
            say("queue scan: 100 due among 100 / among 110,000 ...")
            report["scan"] = run_scan_check(workdir)
        if args.profile:
            say("faxgw again, under cProfile ...")
            profiled = run_faxgw(args, workdir, server, source, profile=True,
                                 label="faxgw-profiled")
            profiler, threads = profiled.pop("_profile")
            report["profiled_run"] = profiled
            report["profile_text"] = profile_text(profiler, threads, args.profile_top)
        report["settings"]["load_after"] = load_line()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps({k: v for k, v in report.items()}, indent=2, default=str))
    else:
        print_report(report)
    return 0


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["jobs_per_second"])
    return ordered[(len(ordered) - 1) // 2]


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MB"


def print_report(report: dict[str, Any]) -> None:
    s, f, n = report["settings"], report["faxgw"], report["naive"]
    print(f"faxgw throughput benchmark: {s['jobs']} jobs, reply delay {s['delay_ms']:g} ms, "
          f"{s['connections']} connection(s)/mailbox, rendering in {s['render']}, server in a "
          f"{s['server']}, {s['cpus']} CPUs, Python {s['python']}")
    print(f"load average before: {s['load_before']}; after: {s.get('load_after', '?')}")
    print(f"faxgw measured: {s['faxgw_src']} ({s['faxgw_commit']})")
    doc = report["document"]
    print(f"document: one-page PDF ({s['document']}), {doc['source_bytes']} bytes; rendered "
          f"attachment {doc['rendered_bytes']} bytes")
    print()
    timed = ("drop into outgoing/<number>/ + run_once" if f["intake"] == "drop"
             else "Spool.submit + register + render per job, as faxgw submit, then run_once")
    print(f"faxgw   {f['jobs_per_second']:8.1f} jobs/s  {f['jobs']} jobs in {f['seconds']:.2f} s "
          f"(timed: {timed}; intake+render+send)")
    print(f"        sent {f['sent']}, failed {f['failed']}, deferred {f['deferred']}; server "
          f"received {f['server_received']} messages of {f['message_bytes']} bytes")
    print(f"        CPU: this process {f['cpu_seconds']:.2f} s "
          f"({f['cpu_seconds'] / f['seconds']:.0%} of one core), server "
          f"{f['server_cpu_seconds']:.2f} s ({f['server_cpu_seconds'] / f['seconds']:.0%})")
    print(f"        memory: peak RSS {_mb(f['peak_rss_mb'])} (+{_mb(f['peak_rss_delta_mb'])} over "
          f"{f['rss_before_mb']:.1f} MB before the run; VmHWM reset at start), "
          f"ru_maxrss delta {_mb(f['ru_maxrss_delta_mb'])}"
          + (f", tracemalloc peak {_mb(f['tracemalloc_peak_mb'])}"
             if f["tracemalloc_peak_mb"] is not None else ""))
    pr = f.get("probes")
    if pr and pr["first_sent_s"] is not None:
        ti = pr["take_intake_s"]
        intake = (f"take_intake {ti[1] - ti[0]:.2f} s (until {ti[1]:.2f} s)" if ti
                  else "take_intake not called (intake overlaps sending)")
        print(f"        steps: files dropped/submitted in {f['drop_or_submit_seconds']:.2f} s; "
              f"{intake}; "
              f"first message accepted at {pr['first_sent_s']:.2f} s, last at "
              f"{pr['last_sent_s']:.2f} s; {pr['sessions_opened']} session(s) opened; "
              f"middle 80 % of the messages at {pr['middle_80pct_per_second'] or 0:.1f}/s")
        pm, tw, tr = pr["prepare_ms"], pr["render_thread_wall_ms"], pr["render_thread_run_ms"]
        parts = []
        if pm:
            parts.append(f"Worker._prepare (awaited by the session before each send) mean "
                         f"{pm['mean']:.1f} ms, p90 {pm['p90']:.1f}")
        if tw and tr and s["render"] == "threads":
            parts.append(f"asyncio.to_thread calls (rendering): {tw['mean']:.1f} ms from "
                         f"hand-off to result, {tr['mean']:.1f} ms of it running in the thread "
                         f"(p90 {tw['p90']:.1f} / {tr['p90']:.1f})")
        if parts:
            print("        per job: " + "; ".join(parts))
        cycle = pr.get("session_cycle")
        if cycle:
            print(f"        per session and message: {cycle['send_ms']:.1f} ms in "
                  f"the session's send (MAIL, RCPT, DATA, data: the server's round trips), "
                  f"{cycle['between_sends_ms']:.1f} ms between two sends (faxgw's own work); "
                  "in send by quarter of the sending time: "
                  + " / ".join(f"{v:.1f}" for v in cycle.get("send_ms_by_quarter", [])) + " ms")
    if f.get("warning"):
        print(f"        WARNING: {f['warning']}")
    print(f"naive   {n['jobs_per_second']:8.1f} jobs/s  {n['jobs']} messages in "
          f"{n['seconds']:.2f} s ({n['ms_per_message']:.1f} ms each; smtplib, new connection + "
          f"STARTTLS + AUTH per message, TCP_NODELAY); server received "
          f"{n['server_received']} of {n['message_bytes']} bytes")
    print(f"        CPU: this process {n['cpu_seconds']:.2f} s "
          f"({n['cpu_seconds'] / n['seconds']:.0%}), server {n['server_cpu_seconds']:.2f} s "
          f"({n['server_cpu_seconds'] / n['seconds']:.0%})")
    if "naive_nagle" in report:
        g = report["naive_nagle"]
        print(f"naive   {g['jobs_per_second']:8.1f} jobs/s  with Nagle on (smtplib's default): "
              f"{g['jobs']} messages, {g['ms_per_message']:.1f} ms each "
              f"(+{g['ms_per_message'] - n['ms_per_message']:.1f} ms: loopback artefact)")
    if "bare" in report:
        b = report["bare"]
        print(f"bare    {b['jobs_per_second']:8.1f} jobs/s  {b['jobs']} messages built beforehand, "
              f"{b['connections']} aiosmtplib session(s), nothing else: the ceiling here "
              f"({b['jobs_per_second'] / n['jobs_per_second']:.2f} x naive; faxgw reaches "
              f"{f['jobs_per_second'] / b['jobs_per_second']:.0%} of it)")
    print()
    if len(report["faxgw_runs_jobs_per_second"]) > 1:
        runs = lambda key: ", ".join(f"{v:.1f}" for v in report[key])  # noqa: E731
        print(f"runs (median shown above): faxgw {runs('faxgw_runs_jobs_per_second')} jobs/s; "
              f"naive {runs('naive_runs_jobs_per_second')} jobs/s")
    target = 7.0 if s["delay_ms"] >= 20 else 1.0
    verdict = "met" if report["ratio"] >= target else "NOT met"
    print(f"ratio faxgw / naive: {report['ratio']:.2f} x   (target {target:g} x at "
          f"{s['delay_ms']:g} ms: {verdict})")
    if "breakdown_ms" in report:
        print()
        print("per-job cost of each worker step, measured alone (ms):")
        for name, value in report["breakdown_ms"].items():
            print(f"  {value:8.2f}  {name}")
    if "scan" in report:
        sc = report["scan"]
        print()
        print("queue scan (claim_due of 100 due jobs; median):")
        for key in ("small", "large"):
            case = sc[key]
            print(f"  {case['stored_jobs']:7d} jobs stored: claim_due "
                  f"{case['claim_due_ms']:.2f} ms, next_due_at "
                  f"{case['next_due_at_ms'] * 1000:.1f} us")
        print(f"  ratio large/small: claim_due {sc['claim_ratio']:.2f}, "
              f"next_due_at {sc['next_due_ratio']:.2f} (~1 means the scan does not grow with "
              "the stored jobs)")
        print(f"  plan: {' | '.join(sc['large']['plan'])}")
    if "profiled_run" in report:
        p = report["profiled_run"]
        print()
        print(f"profiled faxgw run: {p['jobs_per_second']:.1f} jobs/s under cProfile "
              f"({p['seconds']:.2f} s; profiling slows it)")
        print(report["profile_text"])


if __name__ == "__main__":
    raise SystemExit(main())
