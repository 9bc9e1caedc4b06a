"""Graph without a copy in Sent Items, the sign-in for Graph, and "may this mailbox send?".

- ``save_to_sent_items = false``: JSON ``sendMail`` built from the same email the SMTP path
  sends; the same jobs sent by SMTP and by Graph arrive with the same Message-ID, headers and
  byte-identical attachments.
- Upload sessions that expire are started again, once; a second expiry defers the fax.
- ``faxgw auth login`` with ``kind = "graph"`` signs in for Graph's ``Mail.Send``; SMTP and
  IMAP tokens come silently from the same sign-in.
- ``faxgw auth test`` (and the status sheet) say whether the mailbox may send.
"""

from __future__ import annotations

import email.policy
import json
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.domain import codes
from faxgw.domain.errors import TransientError
from faxgw.ports import Resource
from faxgw.testing.graph_server import LocalGraph
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.testing.smtp_server import FaxSMTPServer

from .test_graph_delivery import (
    ACCOUNT,
    GRAPH_SCOPE,
    NOTHING,
    NUMBER,
    Gateway,
    _large_message,
    _send_direct,
    _summary,
)

SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"


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
def gateway(tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph) -> Gateway:
    return Gateway(tmp_path, idp, graph)


def _attachments(message: EmailMessage) -> list[tuple[str | None, str, bytes]]:
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((part.get_filename(), part.get_content_type(), payload))
    return found


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


@pytest.mark.slow
@pytest.mark.parametrize(("save", "form"), [(False, "json"), (True, "mime")])
def test_the_same_jobs_by_smtp_and_by_graph_arrive_the_same(
    gateway: Gateway, graph: LocalGraph, idp: LocalIdentityProvider, samples: Path,
    tmp_path: Path, save: bool, form: str,
) -> None:
    """One spool, copied before sending: one copy goes out by SMTP, the other by Graph with
    the SMTP server switched off; what arrives is compared field by field."""
    gateway.sign_in()
    ids = [gateway.submit(samples / "letter.pdf"), gateway.submit(samples / "note.txt"),
           gateway.submit(samples / "scan.jpg")]
    twin_root = tmp_path / "twin"
    shutil.copytree(gateway.root, twin_root, ignore=shutil.ignore_patterns("samples", "twin"))

    with FaxSMTPServer(tls="starttls", token_validator=idp.validate) as smtp:
        by_smtp = Gateway(twin_root, idp, graph)
        by_smtp.configure(transport={"kind": "smtp"},
                          smtp={"host": smtp.host, "port": smtp.port,
                                "ca_file": str(smtp.ca_file)})
        assert _summary(by_smtp.run_worker()) == {**NOTHING, "sent": 3}
        smtp_mail = {m.message["X-Faxgw-Job"]: m.message for m in smtp.messages}
    assert graph.messages == []

    # The SMTP server is gone; [smtp] points at a port nobody listens on.
    gateway.configure(graph={"save_to_sent_items": save})
    assert _summary(gateway.run_worker()) == {**NOTHING, "sent": 3}

    assert [m.form for m in graph.messages] == [form] * 3
    assert graph.sent_items == (graph.messages if save else [])
    graph_mail = {m.message["X-Faxgw-Job"]: m.message for m in graph.messages}
    assert set(graph_mail) == set(smtp_mail) == set(ids)
    for job_id in ids:
        by_graph, by_mail = graph_mail[job_id], smtp_mail[job_id]
        assert by_graph["Message-ID"] == by_mail["Message-ID"] == gateway.job(job_id).message_id
        for header in ("From", "To", "Subject", "X-Faxgw-Job"):
            assert by_graph[header] == by_mail[header], header
        assert _attachments(by_graph) == _attachments(by_mail)  # byte-identical
        assert _body(by_graph) == _body(by_mail)
    # SMTP's token was fetched silently from the sign-in, which was for Graph.
    assert idp.requests["refresh_token"] >= 1


def _message_with_headers(count: int) -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = ACCOUNT
    message["To"] = f"{NUMBER}@fax.example.net"
    message["Subject"] = "Headers"
    message["Message-ID"] = "<headers.1@contoso.com>"
    for number in range(count):
        message[f"X-Other-{number}"] = str(number)
    message["X-Faxgw-Job"] = "job-1"
    message.set_content("Body.\n")
    return message.as_bytes()


def test_json_sendmail_takes_at_most_five_x_headers_faxgw_s_own_first(
    gateway: Gateway, graph: LocalGraph
) -> None:
    gateway.sign_in()
    assert _send_direct(gateway, _message_with_headers(6)) == "202 Accepted by Graph"
    [received] = graph.messages
    names = [name for name in received.message.keys() if name.lower().startswith("x-")]
    assert names == ["X-Faxgw-Job", "X-Other-0", "X-Other-1", "X-Other-2", "X-Other-3"]
    assert received.message["Message-ID"] == "<headers.1@contoso.com>"
    assert not received.saved_to_sent_items


def test_the_test_graph_refuses_a_sixth_header_and_other_than_x_headers(
    gateway: Gateway, graph: LocalGraph
) -> None:
    """The test server checks the JSON shape as Graph does (a test of the test peer)."""
    gateway.sign_in()
    with OAuth2Provider(gateway.config) as provider:
        token = provider.acquire(ACCOUNT, resource=Resource.GRAPH).secret
    record = graph._authorize(f"Bearer {token}", ACCOUNT)
    assert not isinstance(record, tuple)
    message = {"subject": "s", "toRecipients": [{"emailAddress": {"address": "a@b.example"}}],
               "internetMessageHeaders": [{"name": f"X-H{n}", "value": "v"} for n in range(6)]}
    for bad in (message, {**message, "internetMessageHeaders": [{"name": "Foo", "value": "v"}]},
                {**message, "internetMessageHeaders": [], "toRecipients": []}):
        body = json.dumps({"message": bad, "saveToSentItems": False}).encode()
        status, answer, _ = graph.api("POST", [ACCOUNT, "sendMail"], f"Bearer {token}",
                                      "application/json", body)
        assert status == 400 and answer is not None, bad
    assert graph.messages == []


@pytest.mark.parametrize("status", [404, 410])
def test_an_expired_upload_session_is_started_again(
    gateway: Gateway, graph: LocalGraph, status: int
) -> None:
    gateway.sign_in()
    graph.expire_uploads(after_chunks=1, status=status)
    message, content = _large_message(6 * 1024 * 1024)

    assert _send_direct(gateway, message).startswith("202 Accepted by Graph")
    assert graph.upload_sessions == 2
    [received] = graph.messages
    [(_, _, payload)] = _attachments(received.message)
    assert payload == content
    ranges = [spec for spec, _, _ in graph.chunks]
    assert ranges[0].startswith("bytes 0-") and ranges[2].startswith("bytes 0-")  # again


def test_an_upload_session_expiring_twice_defers_and_leaves_no_draft(
    gateway: Gateway, graph: LocalGraph
) -> None:
    gateway.sign_in()
    graph.expire_uploads(times=2, after_chunks=1)
    message, _ = _large_message(6 * 1024 * 1024)
    with pytest.raises(TransientError) as raised:
        _send_direct(gateway, message)
    assert raised.value.code == codes.TRY_LATER
    assert "upload session expired 2 times" in raised.value.message
    assert graph.messages == [] and graph.drafts == {}


# -- signing in for Graph ------------------------------------------------------------------


@pytest.mark.slow
def test_auth_login_signs_in_for_graph_and_the_job_goes_with_that_token(
    gateway: Gateway, graph: LocalGraph, idp: LocalIdentityProvider, samples: Path
) -> None:
    login = gateway.cli("auth", "login")  # the device code is approved by the test IdP
    assert f"Signed in as {ACCOUNT}" in login.stdout
    [signed_in] = idp.issued_tokens()
    signed = idp.token_record(signed_in)
    assert signed is not None and signed.scopes == (GRAPH_SCOPE,)

    job_id = gateway.submit(samples / "note.txt")
    done = gateway.cli("run", "--once", "--json")
    assert json.loads(done.stdout) == {**NOTHING, "sent": 1}
    [received] = graph.messages
    assert GRAPH_SCOPE in received.scopes and gateway.job(job_id).code == codes.SENT
    assert idp.requests["refresh_token"] == 0  # the sign-in's own token was used

    # The Outlook resource's tokens (SMTP, IMAP) come silently from the same sign-in.
    with OAuth2Provider(gateway.config) as provider:
        smtp_token = provider.acquire(ACCOUNT, resource=Resource.SMTP).secret
        imap_token = provider.acquire(ACCOUNT, resource=Resource.IMAP).secret
        assert provider.refresh_all()[0].ok
    smtp_record, imap_record = idp.token_record(smtp_token), idp.token_record(imap_token)
    assert smtp_record is not None and smtp_record.scopes == (SMTP_SCOPE,)
    assert imap_record is not None and imap_record.scopes == (
        "https://outlook.office.com/IMAP.AccessAsUser.All",)
    assert idp.requests["refresh_token"] == 3  # SMTP, IMAP, and the keep-alive

    status = gateway.cli("auth", "status").stdout
    assert status.startswith(f"{ACCOUNT}: signed in\n  access token valid until")
    for token in idp.issued_tokens() + idp.refresh_tokens():
        assert token[:32] not in "\n".join(gateway.outputs)


def test_the_smtp_transport_still_signs_in_for_smtp(
    gateway: Gateway, idp: LocalIdentityProvider
) -> None:
    gateway.configure(transport={"kind": "smtp"})
    gateway.sign_in()
    [signed_in] = idp.issued_tokens()
    record = idp.token_record(signed_in)
    assert record is not None and record.scopes == (SMTP_SCOPE,)


# -- may the mailbox send? -----------------------------------------------------------------


def _auth_test(gateway: Gateway) -> tuple[int, str, str]:
    done = gateway.run_cli("auth", "test")
    return done.returncode, done.stdout, done.stderr


def test_auth_test_says_the_mailbox_may_send_and_the_status_sheet_keeps_it(
    gateway: Gateway, graph: LocalGraph
) -> None:
    gateway.sign_in()
    sheet = json.loads(gateway.cli("status", "--json").stdout)
    assert f"whether {ACCOUNT} may send through Graph: not checked yet" in sheet["sign_in"]

    code, out, _ = _auth_test(gateway)
    assert code == 0
    assert out.splitlines()[1].startswith(f"{ACCOUNT} may send through Graph (")
    assert out.rstrip().endswith("ready to send.")
    assert ("GET", f"/v1.0/users/{ACCOUNT}/mailboxSettings", "Bearer") in graph.requests
    assert graph.messages == [] and graph.drafts == {}  # nothing sent, nothing made
    sheet = json.loads(gateway.cli("status", "--json").stdout)
    assert f"{ACCOUNT} may send through Graph (faxgw auth test, " in sheet["sign_in"]


@pytest.mark.parametrize(
    ("status", "error", "message", "code"),
    [
        (403, "ErrorAccessDenied", "Access to OData is disabled: [RAOP] : Blocked by tenant "
         "configured AppOnly AccessPolicy settings.", codes.APP_ACCESS_POLICY),
        (403, "ErrorSendAsDenied", "The user account which was used to submit this request "
         "does not have the right to send mail on behalf of the specified sending account.",
         codes.SEND_AS_DENIED),
        (404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, "
         "or is hosted on-premise.", codes.MAILBOX_NOT_ON_GRAPH),
    ],
    ids=["access-policy", "send-as-denied", "not-on-graph"],
)
def test_auth_test_says_when_the_mailbox_is_denied(
    gateway: Gateway, graph: LocalGraph, status: int, error: str, message: str, code: int
) -> None:
    gateway.sign_in()
    graph.refuse(ACCOUNT, status, error, message)
    exit_code, out, err = _auth_test(gateway)
    assert exit_code == 1
    assert out.startswith("Signed in to Microsoft Graph")
    assert f"{ACCOUNT} may not send through Graph: denied, code {code}" in err
    assert f"code {code} ({codes.describe(code).name})" in err and "Traceback" not in err
    sheet = json.loads(gateway.cli("status", "--json").stdout)
    assert f"{ACCOUNT} denied through Graph" in sheet["sign_in"]


def test_auth_test_cannot_check_without_a_read_permission(
    gateway: Gateway, graph: LocalGraph
) -> None:
    gateway.sign_in()
    graph.settings_readable = False
    code, out, _ = _auth_test(gateway)
    assert code == 0
    assert "cannot check without Mail.Read or MailboxSettings.Read" in out
    assert "403 ErrorAccessDenied" in out and "sending itself is not checked" in out
    sheet = gateway.cli("status").stdout
    assert f"{ACCOUNT} cannot check through Graph" in sheet


def test_auth_test_with_graph_throttling_fails_with_its_code(
    gateway: Gateway, graph: LocalGraph
) -> None:
    gateway.sign_in()
    graph.refuse(ACCOUNT, 503, "ServiceUnavailable", "Service unavailable.")
    code, _, err = _auth_test(gateway)
    assert code == 1 and "auth test against" in err and "code 380 (try-later)" in err


def test_a_mailbox_the_access_policy_leaves_out_waits_with_377(
    gateway: Gateway, graph: LocalGraph, samples: Path
) -> None:
    gateway.sign_in()
    graph.refuse(ACCOUNT, 403, "ErrorAccessDenied", "Access to OData is disabled.")
    job_id = gateway.submit(samples / "note.txt")
    assert _summary(gateway.run_worker())["waiting_for_auth"] == 1
    job = gateway.job(job_id)
    assert (job.state.value, job.code) == ("deferred", codes.APP_ACCESS_POLICY)
