"""The SMTP intake when ``faxgw run`` is killed (SIGKILL): a real service in a subprocess, a
device on a raw socket, the test SMTP server as the fax service.

Killed while the data streams in, the gateway has promised nothing (no ``250``) and keeps
nothing: the device sends again and one job is made. Killed right after the ``250``, the job
is there when faxgw starts again, and it is sent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faxgw.app.wiring import store_open
from faxgw.config import Config, load_config
from faxgw.domain.jobs import Job, JobState
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER
from .test_smtp_intake import DEVICE, _free_port, _message, _wait_for_listener

pytestmark = pytest.mark.slow


class Gateway:
    """``faxgw run`` with its SMTP intake, started and killed as an operator (or a power cut)
    would; the spool, the store and a private temporary folder stay between runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.config_file = root / "faxgw.toml"
        #: The service's temporary folder: what a killed take could leave behind shows here.
        self.temp = root / "temp"
        self.temp.mkdir()
        self.process: subprocess.Popen[str] | None = None
        #: What the running service logs: a file, so that a test that fails can show it.
        self.log = root / "service.log"

    def configure(self, smtp_host: str, smtp_port: int, ca_file: Path,
                  intake: str = "") -> None:
        """(Re)write the configuration: the fax service at ``smtp_host:smtp_port``;
        ``intake``: more ``[intake.smtp]`` lines."""
        (self.root / "pw").write_text(PASSWORD)
        self.config_file.write_text(
            f'[spool]\ndir = "spool"\nsettle_seconds = 0.2\n'
            f'[service]\naddress = "{{e164}}@fax.example.net"\n'
            f'[smtp]\nhost = "{smtp_host}"\nport = {smtp_port}\nca_file = "{ca_file}"\n'
            f'sender = "{USER}"\ntimeout_seconds = 30\n'
            f'[auth]\nmethod = "password"\nusername = "{USER}"\npassword_file = "pw"\n'
            f'[intake.smtp]\nlisten = "127.0.0.1:{self.port}"\ndomain = "fax.local"\n'
            + intake)

    @property
    def config(self) -> Config:
        return load_config(self.config_file)

    def start(self) -> None:
        """``faxgw run``, until its intake greets."""
        environment = {**os.environ, "TMPDIR": str(self.temp)}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "faxgw", "--config", str(self.config_file), "-v", "run"],
                stdout=subprocess.DEVNULL, stderr=log, text=True, env=environment)
        _wait_for_listener(self.port, self.process)

    def kill(self) -> str:
        """SIGKILL: no clean-up of any kind; what the service had logged."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL
        self.process = None
        return self.log.read_text()

    def stop(self) -> str:
        """SIGTERM, as systemd stops it; what the service logged."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        stderr = self.log.read_text()
        assert self.process.returncode == 0, stderr
        self.process = None
        return stderr

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another ``faxgw`` command beside the service (``status``)."""
        return subprocess.run([sys.executable, "-m", "faxgw", "--config",
                               str(self.config_file), *args], capture_output=True, text=True,
                              timeout=60, check=False)

    def intake_status(self) -> dict[str, Any]:
        """The SMTP intake's part of ``faxgw status --json``."""
        done = self.command("status", "--json")
        assert done.returncode == 0, done.stderr
        part = json.loads(done.stdout)["smtp_intake"]
        assert isinstance(part, dict)
        return part

    def jobs(self) -> list[Job]:
        with store_open(self.config) as store:
            return list(store.list_jobs())

    def spool_entries(self) -> dict[str, list[str]]:
        """What the spool holds where a submission waits, is assembled and kept (no lock
        files)."""
        spool = self.root / "spool"
        return {folder: sorted(entry for entry in os.listdir(spool / folder)
                               if not entry.endswith(".lock"))
                if (spool / folder).is_dir() else []
                for folder in ("tmp", "jobs", "state/smtp-incoming")}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    made = Gateway(tmp_path)
    yield made
    if made.process is not None:  # a failed test: never leave a service running
        made.process.kill()
        made.process.wait(timeout=30)


class Device:
    """A scanner speaking SMTP on a raw socket, so that the test decides when each byte goes."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.reader = self.socket.makefile("rb")
        assert self.reader.readline().startswith(b"220")

    def command(self, line: bytes) -> bytes:
        """Send one command; its reply's last line."""
        self.socket.sendall(line + b"\r\n")
        reply = self.reader.readline()
        while reply[3:4] == b"-":  # a multi-line reply
            reply = self.reader.readline()
        return reply

    def begin(self, number: str) -> None:
        """EHLO, MAIL, RCPT and DATA, each answered as it should be."""
        for line, expected in ((b"EHLO scanner.contoso.com", b"250"),
                               (b"MAIL FROM:<" + DEVICE.encode() + b">", b"250"),
                               (b"RCPT TO:<" + number.encode() + b"@fax.local>", b"250"),
                               (b"DATA", b"354")):
            reply = self.command(line)
            assert reply.startswith(expected), (line, reply)

    def rest(self) -> bytes:
        """Everything the gateway still says before the connection ends."""
        seen = b""
        try:
            while chunk := self.socket.recv(4096):
                seen += chunk
        except ConnectionResetError:
            pass
        return seen

    def close(self) -> None:
        self.reader.close()
        self.socket.close()


def _data(samples: Path) -> bytes:
    """A scan as a device sends it after DATA: CRLF lines, dots stuffed, the end marker."""
    message = _message("Invoice 4711", (samples / "letter.pdf", "application", "pdf"))
    lines = message.as_bytes().replace(b"\r\n", b"\n").split(b"\n")
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"\r\n".join(stuffed) + b"\r\n.\r\n"


def _wait(condition: object, what: str, gateway: Gateway, seconds: float = 60) -> None:
    """Until ``condition()`` holds (the service works in its own time), or fail naming it,
    with the jobs and what the service logged."""
    assert callable(condition)
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        threading.Event().wait(0.1)
    with store_open(gateway.config) as store:
        jobs = [(job.id, job.state.value, job.code, job.error,
                 [(event.event, event.state, event.detail) for event in store.history(job.id)])
                for job in store.list_jobs()]
    raise AssertionError(f"not within {seconds} s: {what}; jobs {jobs}; the service "
                         f"logged:\n{gateway.log.read_text()[-4000:]}")


def test_killed_during_data_keeps_nothing_and_the_retry_makes_one_job(
    gateway: Gateway, smtp_server: FaxSMTPServer, samples: Path
) -> None:
    gateway.configure(smtp_server.host, smtp_server.port, smtp_server.ca_file)
    gateway.start()
    data = _data(samples)
    device = Device(gateway.port)
    try:
        device.begin("+4930123456")
        # Half the scan, in pieces, as a slow device sends it; the gateway is killed while
        # it waits for the rest.
        half = data[: len(data) // 2]
        for start in range(0, len(half), 4096):
            device.socket.sendall(half[start:start + 4096])
        threading.Event().wait(0.5)  # let the service read what was sent
        log = gateway.kill()
        answer = device.rest()
    finally:
        device.close()
    assert b"250" not in answer  # the device was promised nothing: it keeps its scan
    assert "SMTP intake listening" in log and "Traceback" not in log
    # Nothing half-registered: no job, no job folder, nothing being assembled, no temp files.
    assert gateway.jobs() == []
    assert gateway.spool_entries() == {"tmp": [], "jobs": [], "state/smtp-incoming": []}
    assert os.listdir(gateway.temp) == []
    assert gateway.intake_status()["state"] == "ended without a clean stop"

    gateway.start()
    device = Device(gateway.port)
    try:  # the device tries again with the whole message
        device.begin("+4930123456")
        device.socket.sendall(data)
        accepted = device.reader.readline()
        assert accepted.startswith(b"250 2.0.0 Accepted: job "), accepted
        assert device.command(b"QUIT").startswith(b"221")
    finally:
        device.close()
    smtp_server.wait_until(lambda: len(smtp_server.messages) == 1, timeout=60)
    _wait(lambda: [job.state for job in gateway.jobs()] == [JobState.SENT], "the job sent",
          gateway)
    log = gateway.stop()
    assert "Traceback" not in log
    [job] = gateway.jobs()
    assert job.id.encode() in accepted and job.notify == DEVICE and job.note == "Invoice 4711"
    assert gateway.spool_entries() == {"tmp": [], "jobs": [job.id],
                                      "state/smtp-incoming": []}
    [sent] = smtp_server.messages
    assert sent.rcpt_tos == ["+4930123456@fax.example.net"]
    assert os.listdir(gateway.temp) == []


def test_killed_right_after_250_the_job_is_there_and_sent_after_the_restart(
    gateway: Gateway, smtp_server: FaxSMTPServer, samples: Path
) -> None:
    # The first run's fax service takes connections and never greets: the job cannot leave
    # before the kill, so what the restart finds is exactly what the 250 promised.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        gateway.configure("127.0.0.1", silent.getsockname()[1], smtp_server.ca_file)
        gateway.start()
        device = Device(gateway.port)
        try:
            device.begin("004930123456")
            device.socket.sendall(_data(samples))
            accepted = device.reader.readline()
            log = gateway.kill()  # the moment the device has read the 250
        finally:
            device.close()
    assert accepted.startswith(b"250 2.0.0 Accepted: job "), accepted
    job_id = accepted.split(b"job ", 1)[1].split()[0].decode()
    assert "Traceback" not in log
    [job] = gateway.jobs()
    assert job.id == job_id and job.number == "+4930123456" and job.notify == DEVICE
    assert smtp_server.messages == []

    gateway.configure(smtp_server.host, smtp_server.port, smtp_server.ca_file)
    gateway.start()
    smtp_server.wait_until(lambda: len(smtp_server.messages) == 1, timeout=60)
    _wait(lambda: gateway.jobs()[0].state is JobState.SENT, "the job sent", gateway)
    log = gateway.stop()
    assert "Traceback" not in log
    [sent] = smtp_server.messages
    assert sent.rcpt_tos == ["+4930123456@fax.example.net"]
    [attachment] = list(sent.message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    [job] = gateway.jobs()
    assert job.id == job_id and job.state is JobState.SENT
    assert gateway.spool_entries() == {"tmp": [], "jobs": [job_id],
                                      "state/smtp-incoming": []}


def test_what_a_killed_service_left_half_taken_is_removed_at_the_next_start(
    gateway: Gateway, smtp_server: FaxSMTPServer, samples: Path
) -> None:
    gateway.configure(smtp_server.host, smtp_server.port, smtp_server.ca_file)
    incoming = gateway.root / "spool" / "state" / "smtp-incoming"
    incoming.mkdir(parents=True, mode=0o700)
    host = socket.gethostname()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = int(ended.stdout)  # a process that has ended: its pid is free
    left = {f"{host}-{dead}-k1l2": "a message of a killed service",
            f"{host}-{os.getpid()}-live": "a message a running listener is taking",
            f"other-host-{dead}-x": "a message of a listener on another host"}
    for name in left:
        (incoming / name / "000").mkdir(parents=True)
        (incoming / name / "000" / "letter.pdf").write_bytes(
            (samples / "letter.pdf").read_bytes())
    gateway.start()
    log = gateway.stop()
    assert sorted(os.listdir(incoming)) == sorted(set(left) - {f"{host}-{dead}-k1l2"})
    assert "removed 1 message(s) a stopped service left half-taken" in log
