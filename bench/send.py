"""Sending benchmark: ``faxgw run --once`` over dropped 4-page PDFs, against its anchors.

For each reply delay (default: none, and 20 ms), against one local test SMTP server in a
child process (faxgw.testing's ``FaxSMTPServer``: aiosmtpd, STARTTLS, AUTH PLAIN, PIPELINING
offered, each reply ``D`` ms after its command arrived), in the same run:

1. **faxgw**: N number folders ``outgoing/<number>/`` with one copy of the same 4-page PDF
   each, then one ``python -m faxgw run --once`` (intake, rendering, sending), timed from
   its start to its end;
2. **naive**: stdlib ``smtplib``, a new session per message (connect, EHLO, STARTTLS, EHLO,
   AUTH PLAIN, MAIL, RCPT, DATA, QUIT), one message after the other;
3. **bare**: the ceiling: aiosmtplib sessions (``--connections``, TLS once per session,
   reused for every message) sending messages built before the clock: once with PIPELINING
   (RFC 2920, faxgw's extension of aiosmtplib), once one command at a time.

Every side runs in a process of its own, started from a folder outside the checkout; the
report gives messages per second, CPU seconds per message of that process (with its
children, e.g. render processes) and of the server, and the peak RSS of the largest process.

Usage::

    .venv/bin/python bench/send.py [--jobs N] [--delays-ms 0,20] [--connections C]
        [--naive-jobs N] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("FAXGW_BENCH_SRC") or Path(__file__).resolve().parent.parent)
USER = "fax@contoso.com"
PASSWORD = "bench password 42"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def number(index: int) -> str:
    return f"+49301234{index:04d}"


def make_pdf(path: Path, pages: int = 4) -> Path:
    """A text-only business letter of ``pages`` A4 pages (fpdf2), a few KB."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 12, f"Contoso Ltd. - Purchase order 4711, page {page + 1}",
                 new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        for line in range(40):
            pdf.cell(0, 6, f"Item {line + 1:3d}: widget type {line % 7}, quantity "
                     f"{line * 3 + 1}, unit price {line * 1.25 + 3:.2f} EUR",
                     new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def make_message(pdf: bytes, index: int) -> bytes:
    """A fax email like faxgw's: the PDF attached, to a number's address."""
    message = EmailMessage()
    message["From"] = USER
    message["To"] = f"{number(index)}@fax.example.net"
    message["Subject"] = "Fax"
    message["Message-ID"] = make_msgid(domain="bench.example")
    message.set_content("Fax attached.\n")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="fax.pdf")
    return message.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire


# -- the server --------------------------------------------------------------------------


class Server:
    """The test SMTP server in a child process; counts the messages it reports."""

    def __init__(self, workdir: Path, delay: float) -> None:
        ca_out = workdir / "server-ca.pem"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faxgw.testing.smtp_server", "--port", "0",
             "--user", f"{USER}:{PASSWORD}", "--reply-delay", str(delay),
             "--ca-out", str(ca_out)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout is not None
        listening = self.proc.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", listening)
        if not match:
            self.proc.kill()
            raise SystemExit(f"the test server did not start: {listening!r}")
        self.host, self.port = match.group(1), int(match.group(2))
        self.proc.stdout.readline()  # "CA file: ..."
        self.ca_file = ca_out
        self.sizes: list[int] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if match := re.match(r"message \d+: .*\((\d+) bytes", line):
                with self._lock:
                    self.sizes.append(int(match.group(1)))

    def received(self) -> int:
        with self._lock:
            return len(self.sizes)

    def wait_for(self, count: int, timeout: float = 15.0) -> int:
        """Wait until ``count`` messages were reported (the server prints every 0.25 s)."""
        deadline = time.monotonic() + timeout
        while self.received() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received()

    def mean_size(self, first: int) -> int:
        with self._lock:
            sizes = self.sizes[first:]
        return round(sum(sizes) / len(sizes)) if sizes else 0

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the sides ---------------------------------------------------------------------------


@dataclass
class Result:
    side: str
    messages: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    peak_rss_mb: float
    mean_message_bytes: int
    ok: bool

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def run_child(argv: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """Run a process; return wall seconds, CPU seconds (with its children), peak RSS in MB,
    exit status and its output (stdout and stderr, in a file: no pipe to fill)."""
    out = cwd / "child.out"
    with out.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            proc.returncode, out.read_text(errors="replace"))


def measure(side: str, server: Server, argv: list[str], cwd: Path, count: int) -> Result:
    before, scpu = server.received(), server.cpu()
    seconds, cpu, rss, status, output = run_child(argv, cwd)
    received = server.wait_for(before + count) - before
    timed = re.search(r"^seconds=([\d.]+)$", output, re.M)  # the child's own clock, if any
    ok = status == 0 and received == count
    if not ok:
        print(f"! {side}: exit {status}, {received} of {count} messages arrived\n"
              f"{output[-3000:]}", file=sys.stderr)
    return Result(side, received, float(timed.group(1)) if timed else seconds, cpu,
                  server.cpu() - scpu, rss, server.mean_size(before), ok)


def write_config(workdir: Path, server: Server, connections: int) -> Path:
    spool = workdir / "spool"
    shutil.rmtree(spool, ignore_errors=True)
    password = workdir / "smtp-password"
    password.write_text(PASSWORD + "\n")
    config = workdir / "faxgw.toml"
    config.write_text(
        f'[spool]\ndir = "{spool}"\nsettle_seconds = 0\n'
        '[service]\naddress = "{e164}@fax.example.net"\nregion = "DE"\n'
        f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nca_file = "{server.ca_file}"\n'
        f'sender = "{USER}"\ntimeout_seconds = 60\n'
        f'[auth]\nmethod = "password"\nusername = "{USER}"\npassword_file = "{password}"\n'
        f'[limits]\nmessages_per_minute = 0\nconnections = {connections}\n')
    return config


def faxgw_side(workdir: Path, server: Server, pdf: Path, jobs: int,
               connections: int, profile: Path | None = None) -> Result:
    config = write_config(workdir, server, connections)
    outgoing = workdir / "spool" / "outgoing"
    outgoing.mkdir(parents=True)
    for index in range(jobs):  # before the clock: the files are already there
        folder = outgoing / number(index)
        folder.mkdir()
        shutil.copyfile(pdf, folder / "order.pdf")
    python = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    return measure("faxgw run --once" + (" (profiled)" if profile else ""), server, [
        *python, "-m", "faxgw", "--config", str(config), "run", "--once"], workdir, jobs)


def prepared_side(workdir: Path, server: Server, pdf: Path, jobs: int,
                  connections: int) -> Result:
    """``run --once`` over jobs taken and rendered before (as ``faxgw submit`` leaves them):
    what faxgw's engine and transport do when rendering is out of the way."""
    config = write_config(workdir, server, connections)
    seconds, _, _, status, output = run_child(
        [sys.executable, str(Path(__file__).resolve()), "--child", "prepare", "--ca",
         str(config), "--pdf", str(pdf), "--count", str(jobs)], workdir)
    if status != 0:
        raise SystemExit(f"preparing {jobs} jobs failed:\n{output[-3000:]}")
    print(f"  ({jobs} jobs submitted and rendered in {seconds:.1f} s, not timed)", flush=True)
    return measure("faxgw run --once, rendered before", server, [
        sys.executable, "-m", "faxgw", "--config", str(config), "run", "--once"], workdir, jobs)


def prepare_child(config_path: str, pdf: str, count: int) -> None:
    """Submit, register and render ``count`` jobs, as ``faxgw submit`` does (not timed)."""
    sys.path.insert(0, str(ROOT))
    from faxgw.app.submit import prepare
    from faxgw.app.wiring import build_worker
    from faxgw.config import load_config
    from faxgw.domain.jobs import JobState
    from faxgw.engine.renderpool import service_processes
    from faxgw.intake.register import register

    config = load_config(config_path)
    worker = build_worker(config, render_processes=service_processes())
    try:
        for index in range(count):
            intake = worker.spool.submit(number(index), [Path(pdf)])
            job = register(intake, config=config, store=worker.store, documents=worker.spool)
            if job.state is JobState.QUEUED:
                prepare(worker.store, worker.spool, config, job, renderer=worker.render_pool)
    finally:
        worker.close()


def print_profile(path: Path, top: int = 30) -> None:
    """The profiled run's main process: where its time went (children are not profiled)."""
    import pstats

    print(f"\nprofile of faxgw run --once (main process), top {top} by own time:")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)
    print(f"top {top} by cumulative time:")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(top)


def naive_child(host: str, port: int, ca_file: str, messages: list[bytes]) -> None:
    context = ssl.create_default_context(cafile=ca_file)
    started = time.perf_counter()
    for index, message in enumerate(messages):
        with smtplib.SMTP(host, port, timeout=60) as smtp:
            # asyncio sets TCP_NODELAY on faxgw's sockets; without it the loop would stall on
            # delayed ACKs of the loopback (see README "Loopback artefacts").
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.starttls(context=context)
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.login(USER, PASSWORD)
            smtp.sendmail(USER, [f"{number(index)}@fax.example.net"], message)
    print(f"seconds={time.perf_counter() - started:.4f}")


async def bare_child(host: str, port: int, ca_file: str, messages: list[bytes],
                     connections: int, pipelining: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from faxgw.transport.smtp.pipelining import PipeliningSMTP

    context = ssl.create_default_context(cafile=ca_file)
    queue = list(enumerate(messages))
    queue.reverse()
    used: list[bool] = []

    async def session() -> None:
        smtp = PipeliningSMTP(hostname=host, port=port, tls_context=context, timeout=60)
        await smtp.connect()
        await smtp.ehlo()
        await smtp.auth_plain(USER, PASSWORD)
        used.append(pipelining and smtp.supports_pipelining)
        while queue:
            index, message = queue.pop()
            recipient = f"{number(index)}@fax.example.net"
            if used[-1]:
                await smtp.send_pipelined(USER, [recipient], message)
            else:
                await smtp.sendmail(USER, [recipient], message)
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(connections)))
    print(f"seconds={time.perf_counter() - started:.4f}")
    print(f"pipelined={all(used)}")


def child_main(args: argparse.Namespace) -> None:
    if args.child == "prepare":  # --ca carries the config file here
        prepare_child(args.ca, args.pdf, args.count)
        return
    pdf = Path(args.pdf).read_bytes()
    messages = [make_message(pdf, index) for index in range(args.count)]  # before the clock
    if args.child == "naive":
        naive_child(args.host, args.port, args.ca, messages)
    else:
        asyncio.run(bare_child(args.host, args.port, args.ca, messages, args.connections,
                               args.child == "bare-pipelined"))


# -- the report --------------------------------------------------------------------------


def run_delay(workdir: Path, pdf: Path, delay_ms: float, args: argparse.Namespace,
              ) -> list[Result]:
    server = Server(workdir, delay_ms / 1000)
    try:
        def child(kind: str, count: int) -> list[str]:
            return [sys.executable, str(Path(__file__).resolve()), "--child", kind,
                    "--host", server.host, "--port", str(server.port), "--ca",
                    str(server.ca_file), "--pdf", str(pdf), "--count", str(count),
                    "--connections", str(args.connections)]

        naive_jobs = args.naive_jobs or (args.jobs if delay_ms == 0 else min(args.jobs, 200))
        results = [faxgw_side(workdir, server, pdf, args.jobs, args.connections)]
        results.append(measure("naive smtplib loop", server, child("naive", naive_jobs),
                               workdir, naive_jobs))
        results.append(measure(f"bare aiosmtplib x{args.connections}, pipelined", server,
                               child("bare-pipelined", args.jobs), workdir, args.jobs))
        results.append(measure(f"bare aiosmtplib x{args.connections}, one by one", server,
                               child("bare-one-by-one", args.jobs), workdir, args.jobs))
        if not args.no_prepared:
            results.append(prepared_side(workdir, server, pdf, args.jobs, args.connections))
        if args.profile:
            profile = workdir / "faxgw.prof"
            results.append(faxgw_side(workdir, server, pdf, args.jobs, args.connections,
                                      profile))
            print_profile(profile)
        return results
    finally:
        server.stop()


def fs_create_cost(folder: Path, count: int = 300) -> tuple[str, float]:
    """The spool's file system type and the CPU microseconds it takes to create a new file or
    folder there (the spool makes several per job, see README "Sending"), as a context for
    the faxgw figures: on some file systems this alone weighs more than the rest of a job."""
    probe = folder / "fs-probe"
    probe.mkdir()
    started = time.process_time()
    for index in range(count):
        os.mkdir(probe / f"d{index}", 0o700)
        os.close(os.open(probe / f"f{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    seconds = time.process_time() - started
    shutil.rmtree(probe)
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(folder)], capture_output=True,
                          text=True, check=False).stdout.strip() or "?"
    return kind, seconds / (2 * count) * 1e6


def report(delay_ms: float, results: list[Result]) -> None:
    print(f"\nreplies {delay_ms:g} ms late:")
    print(f"  {'side':36} {'msgs':>5} {'s':>7} {'msg/s':>7} {'CPU s/msg':>10} "
          f"{'server':>8} {'peak MB':>8} {'bytes':>7}")
    for r in results:
        print(f"  {r.side:36} {r.messages:5d} {r.seconds:7.2f} {r.rate:7.1f} "
              f"{r.cpu_seconds / max(r.messages, 1):10.4f} "
              f"{r.server_cpu_seconds / max(r.messages, 1):8.4f} {r.peak_rss_mb:8.1f} "
              f"{r.mean_message_bytes:7d}{'' if r.ok else '  FAILED'}")
    faxgw = results[0].rate
    for r in results[1:]:
        print(f"  faxgw / {r.side}: {faxgw / r.rate if r.rate else 0:.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--delays-ms", default="0,20", help="comma-separated (default 0,20)")
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--naive-jobs", type=int, default=0,
                        help="messages for the naive loop (default: --jobs; 200 with a delay)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-prepared", action="store_true",
                        help="skip the run over jobs rendered before the clock")
    parser.add_argument("--profile", action="store_true",
                        help="run faxgw once more under cProfile and print where its time went")
    for name in ("--child", "--host", "--ca", "--pdf"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    delays = [float(d) for d in args.delays_ms.split(",") if d.strip()]
    load = os.getloadavg()[0]
    every: dict[str, Any] = {"jobs": args.jobs, "connections": args.connections,
                             "load_before": load, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-send-") as folder:
        workdir = Path(folder)  # outside the checkout: ``python -m faxgw`` reads the cwd
        pdf = make_pdf(workdir / "order.pdf")
        print(f"{args.jobs} jobs, a {pdf.stat().st_size} byte 4-page PDF each; "
              f"{args.connections} connections; load {load:.2f}", flush=True)
        kind, create_us = fs_create_cost(workdir)
        every["fs"], every["fs_create_us"] = kind, create_us
        print(f"  (the spool's file system: {kind}, {create_us:.0f} us CPU to create a file "
              "or folder)", flush=True)
        for delay in delays:
            results = run_delay(workdir, pdf, delay, args)
            every["runs"][f"{delay:g}"] = [{**asdict(r), "rate": r.rate} for r in results]
            if not args.json:
                report(delay, results)
    every["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(every, indent=2))
    else:
        print(f"\nload average before {load:.2f}, after {every['load_after']:.2f}")


if __name__ == "__main__":
    main()
