"""Sending by Microsoft Graph end to end: the local identity provider issues the tokens, the
local Graph server (real HTTPS, tokens checked) takes ``sendMail``; every row of the Graph
answer table is driven by a real answer of that server to its job state and code.

The SMTP server is switched off throughout: ``[smtp] host`` points at a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgw.app.wiring import build_worker, make_transport, open_store
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, load_config
from faxgw.domain import codes
from faxgw.domain.errors import AuthError
from faxgw.domain.jobs import Job
from faxgw.engine.outcomes import RunSummary
from faxgw.testing.graph_server import LocalGraph
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.transport.graph import GraphTransport

from .certificates import app_certificate

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "fax@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
GRAPH_SCOPE = "https://graph.microsoft.com/Mail.Send"
GRAPH_APP_SCOPE = "https://graph.microsoft.com/.default"
NUMBER = "+4930123456"
NOTHING = {"taken": 0, "sent": 0, "deferred": 0, "failed": 0, "waiting_for_auth": 0}


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class Gateway:
    """One gateway sending by Graph: a TOML config, a spool, the IdP and the Graph server."""

    def __init__(self, root: Path, idp: LocalIdentityProvider, graph: LocalGraph) -> None:
        self.root = root
        self.idp = idp
        self.graph = graph
        self.config_file = root / "etc" / "faxgw.toml"
        self.config_file.parent.mkdir(exist_ok=True)
        self.outputs: list[str] = []
        self.configure()

    def configure(self, **sections: dict[str, Any]) -> None:
        raw: dict[str, dict[str, Any]] = {
            "spool": {"dir": "../spool", "settle_seconds": 0},
            "service": {"address": "{e164}@fax.example.net", "region": "DE"},
            # Switched off: nothing listens on port 9 of this host.
            "smtp": {"host": "127.0.0.1", "port": 9, "sender": ACCOUNT, "timeout_seconds": 2},
            "auth": {"method": "oauth2", "provider": "custom", "authority": self.idp.authority,
                     "scopes": ["https://outlook.office.com/SMTP.Send"],
                     "client_id": CLIENT_ID, "account": ACCOUNT,
                     "ca_file": str(self.idp.ca_file),
                     "token_cache": "../spool/state/tokens.json", "http_timeout_seconds": 5},
            "retry": {"jitter": 0},
            "transport": {"kind": "graph"},
            "graph": {"endpoint": self.graph.base_url, "ca_file": str(self.graph.ca_file)},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        self.config_file.write_text(_toml(raw), encoding="utf-8")

    @property
    def config(self) -> Config:
        return load_config(self.config_file)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run_cli(*args)
        assert done.returncode == 0, f"faxgw {' '.join(args)}: exit {done.returncode}\n" \
                                     f"{done.stdout}\n{done.stderr}"
        return done

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``faxgw`` in a subprocess with this configuration, whatever its exit code."""
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("FAXGW_") and k not in ("REQUESTS_CA_BUNDLE",
                                                            "SSL_CERT_FILE")}
        done = subprocess.run(
            [sys.executable, "-m", "faxgw", "--config", str(self.config_file), *args],
            capture_output=True, text=True, timeout=60, cwd=self.root,
            env={**clean, "PYTHONPATH": str(REPO)}, check=False)
        self.outputs += [done.stdout, done.stderr]
        return done

    def sign_in(self, account: str = ACCOUNT) -> None:
        self.idp.auto_approve_account = account
        with OAuth2Provider(self.config, poll_interval_override=0) as provider:
            flow = provider.start_device_flow(account)
            assert provider.finish_device_flow(flow) == account

    def submit(self, document: Path) -> str:
        done = self.cli("submit", "--to", NUMBER, str(document), "--json")
        return str(json.loads(done.stdout)["id"])

    def run_worker(self) -> RunSummary:
        worker = build_worker(self.config)
        try:
            return asyncio.run(worker.run_once())
        finally:
            worker.close()

    def job(self, job_id: str) -> Job:
        store = open_store(self.config)
        try:
            return store.get(job_id)
        finally:
            store.close()

    def events(self, job_id: str) -> list[tuple[str, str]]:
        store = open_store(self.config)
        try:
            return [(event.event, event.detail) for event in store.history(job_id)]
        finally:
            store.close()


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        server.device_interval = 0
        yield server


@pytest.fixture
def graph(idp: LocalIdentityProvider) -> Iterator[LocalGraph]:
    with LocalGraph(idp.token_record) as server:
        yield server


@pytest.fixture
def gateway(tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph,
            caplog: pytest.LogCaptureFixture) -> Gateway:
    caplog.set_level(logging.DEBUG)
    return Gateway(tmp_path, idp, graph)


def _summary(summary: RunSummary) -> dict[str, int]:
    return {name: getattr(summary, name) for name in NOTHING}


# -- sending ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_once_sends_by_graph_with_a_graph_token(
    gateway: Gateway, graph: LocalGraph, idp: LocalIdentityProvider, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "letter.pdf")

    done = gateway.cli("-vv", "run", "--once", "--json")
    assert json.loads(done.stdout) == {**NOTHING, "sent": 1}

    [received] = graph.messages
    assert (received.mailbox, received.account) == (ACCOUNT, ACCOUNT)
    assert GRAPH_SCOPE in received.scopes  # a Graph token, not the SMTP one
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("sent", codes.SENT)
    message = received.message
    assert message["Message-ID"] == job.message_id
    assert message["To"] == f"{NUMBER}@fax.example.net"
    [attachment] = list(message.iter_attachments())
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.startswith(b"%PDF")
    assert ("sent", "server replied 202 Accepted by Graph") in gateway.events(job_id)
    # save_to_sent_items = false (the default): JSON sendMail, no copy in Sent Items.
    assert (received.form, received.saved_to_sent_items, graph.sent_items) == ("json", False, [])
    # The sign-in was for Graph: its token came with the sign-in, no refresh was needed.
    assert idp.requests["refresh_token"] == 0
    for token in idp.issued_tokens() + idp.refresh_tokens():
        assert token[:32] not in "\n".join(gateway.outputs)


def test_app_only_with_a_certificate_sends_with_the_default_scope(
    gateway: Gateway, graph: LocalGraph, idp: LocalIdentityProvider, samples: Path,
    tmp_path: Path,
) -> None:
    key_file, certificate_pem, _ = app_certificate(tmp_path)
    idp.add_client_certificate(CLIENT_ID, certificate_pem)
    gateway.configure(auth={"flow": "client_credentials",
                            "client_certificate_file": str(key_file)})
    job_id = gateway.submit(samples / "note.txt")

    assert _summary(gateway.run_worker()) == {**NOTHING, "sent": 1}
    [received] = graph.messages
    assert received.account is None and GRAPH_APP_SCOPE in received.scopes
    assert gateway.job(job_id).code == codes.SENT


def test_an_expired_token_is_refreshed_once_then_sent(
    gateway: Gateway, graph: LocalGraph, idp: LocalIdentityProvider, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    config = gateway.config
    provider = OAuth2Provider(config)
    transport = make_transport(config, provider)
    assert isinstance(transport, GraphTransport)

    async def send() -> str:
        session = transport.session(ACCOUNT)
        await session.open()
        try:
            idp.advance(2 * 3600)  # the token just taken has expired at Graph
            accepted = await session.send(b"Subject: x\r\nTo: a@b.example\r\n\r\nhello\r\n",
                                          sender=ACCOUNT, recipients=["a@b.example"])
        finally:
            await session.close()
        assert accepted.server_id == graph.messages[-1].request_id
        return accepted.reply

    try:
        assert asyncio.run(send()) == "202 Accepted by Graph"
    finally:
        provider.close()
    assert len(graph.messages) == 1
    assert gateway.job(job_id).state.value == "queued"


def test_a_mailbox_never_has_more_requests_at_once_than_its_connections(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    gateway.configure(limits={"connections": 4})
    ids = [gateway.submit(samples / "note.txt") for _ in range(8)]
    graph.delay = 0.3

    assert _summary(gateway.run_worker())["sent"] == 8
    assert len(graph.messages) == 8 and 2 <= graph.max_in_flight <= 4
    assert {gateway.job(i).code for i in ids} == {codes.SENT}


# -- every row of the answer table, driven by the server ------------------------------------


THROTTLED = "Application is over its MailboxConcurrency limit."


@pytest.mark.parametrize(
    ("status", "error", "message", "state", "code"),
    [
        (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.",
         "deferred", codes.CONSENT_MISSING),
        (403, "ErrorAccessDenied", "Access to OData is disabled.", "deferred",
         codes.APP_ACCESS_POLICY),
        (403, "Authorization_RequestDenied", "Insufficient privileges to complete the "
         "operation.", "deferred", codes.CONSENT_MISSING),
        (403, "ErrorSendAsDenied", "The user account which was used to submit this request "
         "does not have the right to send mail on behalf of the specified sending account.",
         "failed", codes.SEND_AS_DENIED),
        (404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, "
         "or is hosted on-premise.", "failed", codes.MAILBOX_NOT_ON_GRAPH),
        (403, "ErrorQuotaExceeded", "The process failed to get the correct properties.",
         "deferred", codes.MAILBOX_FULL),
        (413, "RequestEntityTooLarge", "The request is too large.", "failed",
         codes.TOO_LARGE),
        (400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.",
         "failed", codes.TOO_LARGE),
        (400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME "
         "content.", "failed", codes.REJECTED),
        (400, "ErrorInvalidRecipients", "At least one recipient is not valid.", "failed",
         codes.REJECTED),
        (500, "ErrorInternalServerError", "An internal server error occurred.", "deferred",
         codes.TRY_LATER),
    ],
    ids=lambda value: str(value)[:24],
)
def test_each_graph_error_ends_in_its_state_and_code(
    gateway: Gateway, graph: LocalGraph, samples: Path,
    status: int, error: str, message: str, state: str, code: int,
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    # Twice: a size refusal takes the upload path once, which is refused again.
    graph.fail(status, error, message, times=2)

    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == (state, code)
    assert job.error is not None and error in job.error and graph.messages == []


def test_a_mailbox_graph_does_not_know_fails_with_rejected(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    graph.mailboxes = {"someone.else@contoso.com"}
    job_id = gateway.submit(samples / "note.txt")
    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("failed", codes.REJECTED)
    assert job.error is not None and "404 ErrorInvalidUser" in job.error


def test_a_token_refused_twice_makes_the_mailbox_wait_with_370(
    gateway: Gateway, graph: LocalGraph, idp: LocalIdentityProvider, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    graph.fail(401, "InvalidAuthenticationToken", "Access token validation failure.", times=2)
    before = idp.requests["refresh_token"]

    assert _summary(gateway.run_worker())["waiting_for_auth"] == 1
    job = gateway.job(job_id)
    assert (job.state.value, job.code, job.attempts) == ("deferred", codes.SIGN_IN_AGAIN, 0)
    assert idp.requests["refresh_token"] > before  # one forced refresh was tried
    assert graph.messages == []


def test_a_token_without_the_graph_scope_waits_for_consent_373(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    graph.resource = "https://graph.microsoft.us"  # expects the US Government cloud's scope
    job_id = gateway.submit(samples / "note.txt")
    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("deferred", codes.CONSENT_MISSING)
    assert job.error is not None and "Mail.Send" in job.error


@pytest.mark.parametrize("status", [429, 503, 504])
def test_throttling_defers_the_job_by_retry_after(
    gateway: Gateway, graph: LocalGraph, samples: Path, status: int
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    graph.fail(status, "ApplicationThrottled", THROTTLED, headers={"Retry-After": "137"})

    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("deferred", codes.TRY_LATER)
    assert job.attempts == 0  # the wait Graph asked for uses no attempt
    assert job.next_attempt_at is not None
    wait = job.next_attempt_at - job.updated
    assert abs(wait - timedelta(seconds=137)) < timedelta(seconds=2)
    assert gateway.events(job_id)[-1][0] == "throttled"


def test_throttling_without_retry_after_waits_30_seconds(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    graph.fail(429, "ApplicationThrottled", THROTTLED, headers={"Retry-After": "0"})
    gateway.run_worker()
    job = gateway.job(job_id)
    assert job.next_attempt_at is not None
    wait = job.next_attempt_at - job.updated
    assert abs(wait - timedelta(seconds=30)) < timedelta(seconds=2)


def test_a_connection_lost_after_the_request_is_possibly_delivered(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    graph.drop()
    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("deferred", codes.NO_CONNECTION)
    assert "possibly-delivered" in [event for event, _ in gateway.events(job_id)]
    assert job.error is not None and "may have been delivered" in job.error


def test_graph_unreachable_defers_with_360(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "note.txt")
    graph.stop()
    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("deferred", codes.NO_CONNECTION)


def test_an_untrusted_graph_certificate_defers_with_360_naming_ca_file(
    gateway: Gateway, samples: Path
) -> None:
    gateway.sign_in()
    gateway.configure(graph={"ca_file": ""})
    job_id = gateway.submit(samples / "note.txt")
    gateway.run_worker()
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("deferred", codes.NO_CONNECTION)
    assert job.error is not None and "ca_file" in job.error


# -- the upload path for large faxes ---------------------------------------------------------


def _large_message(size: int) -> tuple[bytes, bytes]:
    """A fax email with a ``size``-byte PDF attachment (random, so it does not compress)."""
    content = b"%PDF-1.4\n" + random.Random(7).randbytes(size - 9)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = ACCOUNT
    message["To"] = f"{NUMBER}@fax.example.net"
    message["Subject"] = "Fax to +4930123456"
    message["Message-ID"] = "<large.1@faxgw.example>"
    message["X-Faxgw-Job"] = "large-1"
    message.set_content("A fax.\n")
    message.add_attachment(content, maintype="application", subtype="pdf", filename="fax.pdf")
    return message.as_bytes(), content


def _send_direct(gateway: Gateway, message: bytes) -> str:
    config = gateway.config
    provider = OAuth2Provider(config)
    transport = make_transport(config, provider)

    async def send() -> str:
        session = transport.session(ACCOUNT)
        await session.open()
        try:
            accepted = await session.send(message, sender=ACCOUNT,
                                          recipients=[f"{NUMBER}@fax.example.net"])
        finally:
            await session.close()
        return accepted.reply

    try:
        return asyncio.run(send())
    finally:
        provider.close()


@pytest.mark.parametrize(("save", "form"), [(False, "json"), (True, "mime")])
def test_a_6_mb_fax_goes_through_an_upload_session_in_chunks_without_the_token(
    gateway: Gateway, graph: LocalGraph, save: bool, form: str
) -> None:
    gateway.sign_in()
    gateway.configure(graph={"save_to_sent_items": save})
    message, content = _large_message(6 * 1024 * 1024)

    reply = _send_direct(gateway, message)

    # A draft's send always keeps a copy in Sent Items; the reply says so when it was not
    # wanted.
    assert reply == ("202 Accepted by Graph" if save else
                     "202 Accepted by Graph (a draft sent by the upload path: Graph keeps a "
                     "copy in Sent Items)")
    [received] = graph.messages
    assert received.form == f"draft+{form}" and graph.sent_items == [received]
    assert received.message["X-Faxgw-Job"] == "large-1"
    assert received.message["Subject"] == "Fax to +4930123456"
    assert received.message["To"] == f"{NUMBER}@fax.example.net"
    assert received.message["Message-ID"] == "<large.1@faxgw.example>"
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "fax.pdf"
    assert attachment.get_payload(decode=True) == content  # byte-identical
    # Chunks under 4 MB, in order, none with an Authorization header.
    assert len(graph.chunks) >= 2
    assert all(size <= 4 * 1024 * 1024 and not authorized
               for _, size, authorized in graph.chunks)
    firsts = [int(spec.split()[1].split("-")[0]) for spec, _, _ in graph.chunks]
    assert firsts == sorted(firsts) and firsts[0] == 0
    steps = [(method, path.split("/")[-1], scheme) for method, path, scheme in graph.requests]
    assert {scheme for method, _, scheme in steps if method == "PUT"} == {""}
    assert {scheme for method, _, scheme in steps if method != "PUT"} == {"Bearer"}
    assert ("POST", "createUploadSession", "Bearer") in steps
    assert steps[-1] == ("POST", "send", "Bearer")
    assert graph.drafts == {}


def test_a_large_fax_without_mail_readwrite_says_so(
    gateway: Gateway, graph: LocalGraph
) -> None:
    gateway.sign_in()
    graph.read_write = False
    message, _ = _large_message(5 * 1024 * 1024)
    with pytest.raises(AuthError) as raised:
        _send_direct(gateway, message)
    assert raised.value.code == codes.CONSENT_MISSING
    assert "Mail.ReadWrite" in raised.value.message and graph.messages == []


def test_sendmail_too_large_takes_the_upload_path_once_and_sends(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.submit(samples / "letter.pdf")
    graph.fail(413, "RequestEntityTooLarge", "The request is too large.")

    assert _summary(gateway.run_worker())["sent"] == 1
    [received] = graph.messages
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("sent", codes.SENT)
    assert received.message["Message-ID"] == job.message_id
    [attachment] = list(received.message.iter_attachments())
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.startswith(b"%PDF")
    assert any(path.endswith("/attachments") for _, path, _ in graph.requests)


@pytest.mark.slow
def test_a_large_fax_job_goes_out_through_the_upload_path(
    gateway: Gateway, graph: LocalGraph, tmp_path: Path
) -> None:
    from PIL import Image

    # A photo that does not compress: about 3 MB of JPEG, kept as it is in the PDF.
    noise = random.Random(3).randbytes(1600 * 1600 * 3)
    scan = tmp_path / "scan.jpg"
    Image.frombytes("RGB", (1600, 1600), noise).save(scan, quality=95)
    gateway.sign_in()
    job_id = gateway.submit(scan)

    done = gateway.cli("run", "--once", "--json")
    assert json.loads(done.stdout) == {**NOTHING, "sent": 1}
    [received] = graph.messages
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("sent", codes.SENT)
    assert received.message["Message-ID"] == job.message_id
    assert len(graph.chunks) >= 1 and not any(authorized for _, _, authorized in graph.chunks)
    assert not any(path.endswith("/sendMail") for _, path, _ in graph.requests)


def test_status_and_auth_test_speak_of_graph(gateway: Gateway, graph: LocalGraph) -> None:
    """With the Graph transport the status sheet names it and its endpoint, and
    ``faxgw auth test`` gets a Graph token instead of naming an SMTP server."""
    gateway.sign_in()
    sheet = json.loads(gateway.cli("status", "--json").stdout)
    assert sheet["transport"] == "graph" and sheet["graph_endpoint"] == gateway.config.graph.root
    text = gateway.cli("status").stdout
    assert "Transport: graph" in text and f"Graph endpoint: {gateway.config.graph.root}" in text
    tested = gateway.cli("auth", "test").stdout
    assert tested.startswith("Signed in to Microsoft Graph") and ACCOUNT in tested
    assert graph.messages == []  # nothing was sent
