"""The SMTP intake for devices: the real listener on a real socket, swaks and smtplib as the
devices, the real spool, store and render, and the test SMTP server as the fax service."""

from __future__ import annotations

import asyncio
import base64
import functools
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import trustme

from faxgw.app.submit import submit
from faxgw.app.wiring import build_worker, store_open
from faxgw.config import Config
from faxgw.devices import MailboxFor, serve_smtp
from faxgw.devices.handler import MAX_RECIPIENTS
from faxgw.devices.message import read_letter
from faxgw.devices.replies import REPLIES, Answer, reply
from faxgw.devices.users import check_user, set_user
from faxgw.domain import codes
from faxgw.domain.errors import ConfigError
from faxgw.domain.jobs import Job, JobState
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, MakeConfig
from .documents import garbage

SWAKS = shutil.which("swaks")
DEVICE = "scanner-2f@contoso.com"
DEVICE_USER = "scanner-2f"
DEVICE_PASSWORD = "Tr0ub4dor&3-device"


class Listener:
    """The SMTP intake, served in a thread of its own with its own event loop (as in
    ``faxgw run``), so that the test can be the device."""

    def __init__(self, config: Config, mailbox_for: MailboxFor | None = None) -> None:
        self.config = config
        self._mailbox_for = mailbox_for
        self.host = ""
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="smtp-intake", daemon=True)

    def _bound(self, address: tuple[str, int]) -> None:
        self.host, self.port = address
        self._ready.set()

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve_smtp(self.config, self._stop, functools.partial(submit, self.config),
                             mailbox_for=self._mailbox_for, on_listening=self._bound)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self._error = exc
            self._ready.set()

    def __enter__(self) -> Listener:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self.port:
            raise RuntimeError(f"the listener did not start: {self._error!r}")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the listener did not stop"
        assert self._error is None, self._error

    @property
    def address(self) -> tuple[str, int]:
        """Where the listener listens."""
        return self.host, self.port

    def smtp(self) -> smtplib.SMTP:
        """A client connection (the caller quits it)."""
        return smtplib.SMTP(self.host, self.port, timeout=30)


def _intake_config(make_config: MakeConfig, server: FaxSMTPServer,
                   **smtp: Any) -> Config:
    settings: dict[str, Any] = {"listen": "127.0.0.1:0", "domain": "fax.local"}
    settings.update(smtp)
    return make_config(server, intake={"smtp": settings})


def _jobs(config: Config) -> list[Job]:
    with store_open(config) as store:
        return sorted(store.list_jobs(), key=lambda job: job.number)


def _swaks(address: tuple[str, int], *args: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None, "swaks is not installed (apt-get install swaks)"
    return subprocess.run(
        [SWAKS, "--server", f"{address[0]}:{address[1]}", "--from", DEVICE,
         "--helo", "scanner.contoso.com", "--timeout", "60", *args],
        capture_output=True, text=True, timeout=120, check=False)


def _send_round(config: Config) -> None:
    worker = build_worker(config)
    try:
        asyncio.run(worker.run_once())
    finally:
        worker.close()


@pytest.fixture
def swaks() -> str:
    # Not a skip: the device this intake is for is tested with swaks, or the test fails.
    assert SWAKS is not None, "swaks is not installed (apt-get install swaks)"
    return SWAKS


def test_a_scan_sent_with_swaks_arrives_as_a_fax_email(
    swaks: str, smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener:
        done = _swaks(listener.address, "--to", "004930123456@fax.local",
                      "--header", "Subject: Scan 4711", "--body", "Please sign and return.",
                      "--attach-type", "application/pdf", "--attach", f"@{samples}/letter.pdf")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 Accepted: job" in done.stdout
    [job] = _jobs(config)
    assert (job.number, job.state, job.subject) == ("+4930123456", JobState.QUEUED, "Scan 4711")
    assert job.notify == DEVICE  # the submitter: told how the fax ends
    assert job.source.startswith(f"smtp from 127.0.0.1, MAIL FROM <{DEVICE}>")
    assert job.note == "Please sign and return."
    assert job.documents == ["letter.pdf"]
    assert f"job {job.id} queued" in done.stdout

    _send_round(config)
    [sent] = smtp_server.messages
    assert sent.rcpt_tos == ["+4930123456@fax.example.net"]
    assert sent.message["Subject"] == "Scan 4711"
    [attachment] = list(sent.message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content().startswith(b"%PDF")
    assert _jobs(config)[0].state is JobState.SENT


def test_two_recipients_make_two_jobs(
    swaks: str, smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener:
        done = _swaks(listener.address, "--to", "004930123456@fax.local,0897654321@FAX.LOCAL",
                      "--attach-type", "application/pdf", "--attach", f"@{samples}/letter.pdf")
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = _jobs(config)
    assert [job.number for job in jobs] == ["+4930123456", "+49897654321"]
    assert all(job.state is JobState.QUEUED and job.notify == DEVICE for job in jobs)
    _send_round(config)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "+4930123456@fax.example.net", "+49897654321@fax.example.net"]


def _message(text: str = "", *attachments: tuple[Path, str, str], inline: bool = False,
             subject: str = "Scan") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Scanner 2F <{DEVICE}>"
    message["To"] = "+4930123456@fax.local"
    message["Subject"] = subject
    if text:
        message.set_content(text)
    for path, maintype, subtype in attachments:
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype,
                               filename=None if inline else path.name,
                               disposition="inline" if inline else "attachment")
    return message


def test_an_inline_jpeg_is_the_page_and_the_text_the_note(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    message = _message("Invoice 4711, two pages follow.", (samples / "scan.jpg", "image", "jpeg"),
                       inline=True)
    with Listener(config) as listener, listener.smtp() as client:
        assert client.send_message(message, DEVICE, ["+4930123456@fax.local"]) == {}
    [job] = _jobs(config)
    assert job.state is JobState.QUEUED, job.error
    assert job.note == "Invoice 4711, two pages follow."
    assert len(job.documents) == 1 and job.documents[0].endswith(".jpg")
    assert job.pages == 1


def test_a_text_alone_is_a_page_and_body_page_makes_it_one_always(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server, body="page")
    with Listener(config) as listener, listener.smtp() as client:
        client.send_message(_message("Please call back.", (samples / "logo.png", "image", "png")),
                            DEVICE, ["+4930123456@fax.local"])
    [job] = _jobs(config)
    assert job.documents == ["message.txt", "logo.png"] and job.note == ""
    assert job.pages == 2

    auto = _intake_config(make_config, smtp_server)  # the same spool, body = "auto"
    with Listener(auto) as listener, listener.smtp() as client:
        client.send_message(_message("Only this text."), DEVICE, ["0897654321@fax.local"])
    [text_job] = [job for job in _jobs(auto) if job.number == "+49897654321"]
    assert text_job.documents == ["message.txt"] and text_job.pages == 1


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    certificate, key, ca_file = folder / "intake.pem", folder / "intake.key", folder / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(certificate))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return certificate, key, ca_file


def _add_user(folder: Path, name: str, password: str) -> subprocess.CompletedProcess[str]:
    """``faxgw intake user NAME``, the password on standard input (no terminal)."""
    config = folder / "faxgw.toml"
    config.write_text('[intake.smtp]\nusers_file = "intake-users"\n')
    return subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config), "intake",
                           "user", name], input=password + "\n", capture_output=True,
                          text=True, timeout=60, check=False)


def test_starttls_and_auth_plain_with_a_user(
    swaks: str, smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path,
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certificate, key, ca_file = _tls_files(tmp_path)
    users = tmp_path / "intake-users"
    made = _add_user(tmp_path, DEVICE_USER, DEVICE_PASSWORD)
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"User {DEVICE_USER} set ({users}).\n"
    assert DEVICE_PASSWORD not in users.read_text() + made.stdout + made.stderr
    assert users.read_text().startswith(f"{DEVICE_USER}:$argon2")
    assert users.stat().st_mode & 0o777 == 0o600
    config = _intake_config(make_config, smtp_server, auth="password", users_file=str(users),
                            certificate_file=str(certificate), key_file=str(key))
    caplog.set_level("DEBUG")
    with Listener(config) as listener:
        # Before STARTTLS AUTH is not offered, and nothing may be sent without it.
        with listener.smtp() as client:
            client.ehlo()
            assert not client.has_extn("auth") and client.has_extn("starttls")
            assert client.mail(DEVICE)[0] == 530
        # A wrong password is refused after STARTTLS.
        with listener.smtp() as client:
            client.starttls()
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                client.login(DEVICE_USER, "not the password")
            assert refused.value.smtp_code == 535
        done = _swaks(listener.address, "--to", "004930123456@fax.local", "--tls", "--tls-verify",
                      "--tls-ca-path", str(ca_file), "--auth", "PLAIN",
                      "--auth-user", DEVICE_USER, "--auth-password", DEVICE_PASSWORD,
                      "--auth-hide-password",
                      "--attach-type", "application/pdf", "--attach", f"@{samples}/letter.pdf")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 Accepted: job" in done.stdout
    assert "235" in done.stdout  # authenticated
    [job] = _jobs(config)
    assert job.state is JobState.QUEUED and job.notify == DEVICE
    assert DEVICE_PASSWORD not in done.stdout + done.stderr
    plain = base64.b64encode(f"\0{DEVICE_USER}\0{DEVICE_PASSWORD}".encode()).decode()
    for secret in (DEVICE_PASSWORD, plain):
        assert secret not in caplog.text and secret not in done.stdout
    assert "AUTH PLAIN failed for user 'scanner-2f'" in caplog.text


@pytest.mark.parametrize(("recipient", "reply", "why"), [
    ("+4930123456@example.com", "550 5.1.2", "write <NUMBER@fax.local>"),
    ("12@fax.local", "550 5.1.1", f"(code {codes.INVALID_NUMBER})"),
    ("+499001234567@fax.local", "550 5.7.1", f"(code {codes.NUMBER_REFUSED})"),
    ("00499001234567@fax.local", "550 5.7.1", "premium-rate"),
], ids=["foreign-domain", "invalid-number", "denied-prefix", "denied-prefix-spelt-out"])
def test_a_recipient_that_is_no_fax_number_here_is_refused_at_rcpt(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, recipient: str, reply: str,
    why: str
) -> None:
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener, listener.smtp() as client:
        client.ehlo()
        assert client.mail(DEVICE)[0] == 250
        code, text = client.docmd("RCPT", f"TO:<{recipient}>")
        answer = f"{code} {text.decode()}"
        assert answer.startswith(reply), answer
        assert why in answer
        # The other recipients of the message still count; with none, no DATA.
        assert client.docmd("DATA")[0] == 503
    assert _jobs(config) == []


def test_a_client_outside_the_networks_is_refused_at_connect(
    smtp_server: FaxSMTPServer, make_config: MakeConfig
) -> None:
    config = _intake_config(make_config, smtp_server, networks=["10.0.0.0/8"])
    with Listener(config) as listener:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            listener.smtp()
    assert refused.value.smtp_code == 554
    text = refused.value.smtp_error
    assert isinstance(text, bytes)
    assert text.decode().startswith("5.7.1 127.0.0.1 may not send faxes")


def test_too_many_connections_and_messages_are_refused_with_421(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server, max_connections_per_client=1,
                            max_messages_per_connection=1)
    with Listener(config) as listener:
        with listener.smtp() as first:
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                listener.smtp()
            assert refused.value.smtp_code == 421
            first.send_message(_message("", (samples / "letter.pdf", "application", "pdf")),
                               DEVICE, ["+4930123456@fax.local"])
            first.ehlo()
            assert first.mail(DEVICE)[0] == 421
        # The connection counted out again: the next one is greeted.
        with listener.smtp() as again:
            assert again.noop()[0] == 250
    assert len(_jobs(config)) == 1


def test_an_oversize_message_is_refused_with_552(
    swaks: str, smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server, max_message_bytes=100_000)
    with Listener(config) as listener:
        with listener.smtp() as client:
            client.ehlo()
            assert client.esmtp_features["size"] == "100000"
            # smtplib declares SIZE: refused at MAIL, before the scan is sent.
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.send_message(_message("", (samples / "scan.jpg", "image", "jpeg")),
                                    DEVICE, ["+4930123456@fax.local"])
            assert refused.value.smtp_code == 552
        # swaks does not declare it: refused after the data.
        done = _swaks(listener.address, "--to", "004930123456@fax.local",
                      "--attach-type", "image/jpeg", "--attach", f"@{samples}/scan.jpg")
    assert done.returncode != 0
    assert "552" in done.stdout
    assert _jobs(config) == []


def test_a_message_with_nothing_to_fax_is_refused_with_554(
    smtp_server: FaxSMTPServer, make_config: MakeConfig
) -> None:
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener, listener.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(_message(""), DEVICE, ["+4930123456@fax.local"])
    assert refused.value.smtp_code == 554
    assert b"5.6.0 Nothing to fax" in refused.value.smtp_error
    assert _jobs(config) == []


def test_a_document_that_cannot_be_faxed_is_taken_as_a_failed_job(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, tmp_path: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    broken = garbage(tmp_path / "broken.pdf")
    with Listener(config) as listener, listener.smtp() as client:
        client.send_message(_message("", (broken, "application", "pdf")), DEVICE,
                            ["+4930123456@fax.local"])
    [job] = _jobs(config)
    assert job.state is JobState.FAILED
    assert job.code in (codes.DOCUMENT_UNREADABLE, codes.DOCUMENT_UNSUPPORTED)
    assert job.notify == DEVICE


def test_a_stopped_job_store_is_451_and_no_job_is_recorded(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    state = config.spool.dir / "state"
    state.mkdir(parents=True)
    (state / "faxgw.db").mkdir()  # the store cannot be opened
    with Listener(config) as listener, listener.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(_message("", (samples / "letter.pdf", "application", "pdf")),
                                DEVICE, ["+4930123456@fax.local"])
    assert refused.value.smtp_code == 451
    assert b"4.3.0 The gateway's job store is unavailable" in refused.value.smtp_error
    assert b"Traceback" not in refused.value.smtp_error
    # Nothing left for a start-up to register: the device's retry is the only copy.
    assert list((config.spool.dir / "jobs").iterdir()) == []


def test_a_client_gone_during_data_leaves_nothing_behind(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener:
        with socket.create_connection((listener.host, listener.port), timeout=30) as raw:
            reader = raw.makefile("rb")
            assert reader.readline().startswith(b"220")
            for command in (b"EHLO scanner", b"MAIL FROM:<" + DEVICE.encode() + b">",
                            b"RCPT TO:<+4930123456@fax.local>", b"DATA"):
                raw.sendall(command + b"\r\n")
                line = reader.readline()
                while line[3:4] == b"-":  # a multi-line reply
                    line = reader.readline()
                assert line[:1] in (b"2", b"3"), line
            half = _message("", (samples / "letter.pdf", "application", "pdf")).as_bytes()
            raw.sendall(half[: len(half) // 2].replace(b"\n", b"\r\n"))
            reader.close()
        # The next device is served as usual.
        with listener.smtp() as client:
            client.send_message(_message("", (samples / "letter.pdf", "application", "pdf")),
                                DEVICE, ["0897654321@fax.local"])
    [job] = _jobs(config)
    assert job.number == "+49897654321"
    jobs_folder = config.spool.dir / "jobs"
    assert [entry.name for entry in jobs_folder.iterdir()] == [job.id]


def test_passwords_need_tls_and_a_users_file(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError, match="needs users_file, certificate_file"):
        make_config(intake={"smtp": {"listen": "0.0.0.0:2525", "auth": "password",
                                     "users_file": "users"}})
    with pytest.raises(ConfigError, match="is not an address or network"):
        make_config(intake={"smtp": {"networks": ["192.168.0.0/33"]}})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_listener(port: int, service: subprocess.Popen[str]) -> None:
    for _ in range(300):  # up to a minute: the service starts its render processes first
        assert service.poll() is None, service.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(100).startswith(b"220"):
                    return
        except OSError:
            pass
        threading.Event().wait(0.2)
    raise AssertionError("faxgw run did not open its SMTP intake")


def test_faxgw_run_serves_the_intake_beside_the_worker(
    swaks: str, smtp_server: FaxSMTPServer, tmp_path: Path, samples: Path
) -> None:
    port = _free_port()
    (tmp_path / "pw").write_text(PASSWORD)
    config = tmp_path / "faxgw.toml"
    config.write_text(
        f'[spool]\ndir = "spool"\nsettle_seconds = 0.2\n'
        f'[service]\naddress = "{{e164}}@fax.example.net"\n'
        f'[smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\n'
        f'ca_file = "{smtp_server.ca_file}"\nsender = "{USER}"\n'
        f'[auth]\nmethod = "password"\nusername = "{USER}"\npassword_file = "pw"\n'
        f'[intake.smtp]\nlisten = "127.0.0.1:{port}"\ndomain = "fax.local"\n')
    service = subprocess.Popen(
        [sys.executable, "-m", "faxgw", "--config", str(config), "-v", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_listener(port, service)
        done = _swaks(("127.0.0.1", port), "--to", "004930123456@fax.local",
                      "--header", "Subject: Order", "--attach-type", "application/pdf",
                      "--attach", f"@{samples}/letter.pdf")
        assert done.returncode == 0, done.stdout + done.stderr
        smtp_server.wait_until(lambda: len(smtp_server.messages) == 1, timeout=60)
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    assert service.returncode == 0, stderr
    assert "faxgw stopped" in stderr and "Traceback" not in stderr
    [sent] = smtp_server.messages
    assert sent.rcpt_tos == ["+4930123456@fax.example.net"]
    assert sent.message["Subject"] == "Order"


def test_users_file_keeps_every_user_and_only_hashes(tmp_path: Path) -> None:
    users = tmp_path / "state" / "intake-users"
    set_user(users, "scanner-1", "first secret")
    set_user(users, "scanner-2", "second secret")
    set_user(users, "scanner-1", "changed secret")
    assert check_user(users, "scanner-1", "changed secret")
    assert not check_user(users, "scanner-1", "first secret")
    assert check_user(users, "scanner-2", "second secret")
    assert not check_user(users, "nobody", "second secret")
    assert not check_user(tmp_path / "missing", "scanner-2", "second secret")
    assert "secret" not in users.read_text()
    with pytest.raises(ConfigError, match="one word without ':'"):
        set_user(users, "a:b", "x")


def test_a_part_names_no_folder_and_a_nameless_image_gets_one() -> None:
    message = EmailMessage()
    message["Subject"] = "Scan of today"
    message.set_content("Hello\r\nsecond line\x00")
    message.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf",
                           filename="../../etc/passwd.pdf")
    message.add_attachment(b"\xff\xd8\xff jpeg", maintype="image", subtype="jpeg",
                           disposition="inline")
    message.add_attachment(b"sig", maintype="application", subtype="pkcs7-signature",
                           filename="smime.p7s")
    # A folded subject with a bell in it, as a careless device might write it.
    data = message.as_bytes().replace(b"Subject: Scan of today", b"Subject: Scan\n\tof\x07 today")
    letter = read_letter(data)
    assert letter.subject == "Scan of today"
    assert letter.text == "Hello\nsecond line"
    assert [d.name for d in letter.documents] == ["_.._etc_passwd.pdf", "part-3.jpg"]
    assert [d.data for d in letter.documents] == [b"%PDF-1.4 x", b"\xff\xd8\xff jpeg"]


@pytest.mark.parametrize("answer", list(Answer), ids=lambda answer: answer.value)
def test_every_answer_is_one_ascii_line_with_a_matching_enhanced_code(answer: Answer) -> None:
    fields = {"client": "192.0.2.7", "limit": 3, "address": "x@fax.local", "domain": "fax.local",
              "cause": "fax number 'ä\r\nX' is not a valid number", "code": 400,
              "jobs": "job 1 queued", "number": "+4930123456"}
    line = reply(answer, **fields)
    code, enhanced, text = line.split(" ", 2)
    assert code == str(REPLIES[answer][0]) and enhanced[0] == code[0] and text
    assert line.isascii() and "\r" not in line and "\n" not in line


def test_more_than_fifty_recipients_wait_for_the_next_message(
    smtp_server: FaxSMTPServer, make_config: MakeConfig
) -> None:
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener, listener.smtp() as client:
        client.ehlo()
        client.mail(DEVICE)
        answers = [client.rcpt(f"+49301234{n:03d}@fax.local") for n in range(MAX_RECIPIENTS + 1)]
    assert {code for code, _ in answers[:MAX_RECIPIENTS]} == {250}
    assert answers[-1] == (452, b"4.5.3 Too many recipients (at most 50 a message)")


def test_require_tls_takes_nothing_before_starttls(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, tmp_path: Path
) -> None:
    certificate, key, ca_file = _tls_files(tmp_path)
    config = _intake_config(make_config, smtp_server, require_tls=True,
                            certificate_file=str(certificate), key_file=str(key))
    with Listener(config) as listener:
        with listener.smtp() as client:
            client.ehlo()
            assert client.mail(DEVICE) == (530, b"Must issue a STARTTLS command first")
        with listener.smtp() as client:
            client.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
            client.send_message(_message("", (samples / "letter.pdf", "application", "pdf")),
                                DEVICE, ["+4930123456@fax.local"])
    [job] = _jobs(config)
    assert job.state is JobState.QUEUED
