"""The test SMTP server, driven by a real client (aiosmtplib) over real loopback sockets.

Every test talks TCP (and TLS, with the server's trustme CA) to a FaxSMTPServer running in
its own thread; nothing is mocked. Each client runs in ``asyncio.run`` in the main thread,
as the code under test will.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import pytest

from faxgw.testing import FaxSMTPServer
from faxgw.testing.smtp_ledger import RATE_REPLY
from faxgw.testing.smtp_protocol import parse_xoauth2

T = TypeVar("T")

USER = "fax@example.com"
PASSWORD = "correct-horse-battery-staple"
# Shaped like an Entra ID access token (three base64url parts), and as long as a real one.
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "QUJD" * 740 + ".c2lnbmF0dXJl"
PDF = b"%PDF-1.4\n% a tiny stand-in for a fax page\n%%EOF\n"

ServerFactory = Callable[..., FaxSMTPServer]


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    """Start servers for a test; stop them afterwards and check none hit an internal error."""
    servers: list[FaxSMTPServer] = []

    def make(**options: Any) -> FaxSMTPServer:
        server = FaxSMTPServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for server in servers:
        assert server.errors == []


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run client code the way faxgw does: its own event loop in this thread."""
    return asyncio.run(coroutine)


@contextlib.asynccontextmanager
async def connect(server: FaxSMTPServer, **options: Any) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib session that trusts the server's CA (and only it); QUIT on exit."""
    options.setdefault("tls_context", ssl.create_default_context(cafile=str(server.ca_file)))
    options.setdefault("timeout", 10)
    smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, **options)
    sock = None
    try:
        async with smtp:
            sock = smtp.get_transport_info("socket")
            yield smtp
    finally:
        if sock is not None:
            await socket_closed(sock)


async def socket_closed(sock: Any, timeout: float = 2.0) -> None:
    """Wait until aiosmtplib's TLS close has really closed the socket.

    aiosmtplib's close() only *starts* the TLS close_notify exchange. If the event loop
    ends before the server's close_notify has been read, the socket is left open and
    Python reports "unclosed transport" (a ResourceWarning, an error in this suite).
    """
    deadline = time.monotonic() + timeout
    while sock.fileno() != -1 and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


def fax_message(subject: str = "Fax") -> EmailMessage:
    message = EmailMessage()
    message["From"] = USER
    message["To"] = "+12125558596@fax.example"
    message["Subject"] = subject
    message.set_content("Fax attached.")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="fax.pdf")
    return message


async def auth_plain(smtp: aiosmtplib.SMTP, user: str = USER, password: str = PASSWORD) -> None:
    """AUTH PLAIN; aiosmtplib's auth_plain() does not send the EHLO due after STARTTLS."""
    await smtp.ehlo()
    await smtp.auth_plain(user, password)


async def send_one(server: FaxSMTPServer, subject: str = "Fax", **options: Any) -> None:
    """Connect, STARTTLS, AUTH PLAIN, send one fax message, QUIT."""
    async with connect(server, **options) as smtp:
        await auth_plain(smtp)
        await smtp.send_message(fax_message(subject))


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (without blocking the client loop) until the server has caught up."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "server state did not change in time"
        await asyncio.sleep(0.005)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- TLS and authentication -----------------------------------------------------------------


def test_starttls_auth_plain_message_with_attachment(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})

    run(send_one(server, "Fax to New York"))

    [received] = server.messages
    assert received.mail_from == USER
    assert received.rcpt_tos == ["+12125558596@fax.example"]
    assert (received.auth_user, received.auth_mechanism, received.tls) == (USER, "PLAIN", True)
    assert received.message["Subject"] == "Fax to New York"
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "fax.pdf"
    assert attachment.get_content() == PDF
    assert b"\r\nSubject: Fax to New York\r\n" in received.data  # as uploaded, CRLF
    verbs = [command.split()[0] for _, command in server.commands]
    assert verbs == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
    assert server.replies[0] == (received.session_id, "220 localhost faxgw test ESMTP ready")
    server.wait_until(lambda: server.active_sessions == 0)
    assert server.max_concurrent_sessions == 1


def test_auth_offered_only_after_starttls(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD}, token_validator=lambda user, token: True)

    async def scenario() -> tuple[dict[str, str], dict[str, str], list[str]]:
        async with connect(server, start_tls=False) as smtp:
            await smtp.ehlo()
            before = dict(smtp.esmtp_extensions)
            await smtp.starttls()
            await smtp.ehlo()
            return before, dict(smtp.esmtp_extensions), smtp.server_auth_methods

    before, after, methods = run(scenario())
    assert "starttls" in before and "auth" not in before
    assert "starttls" not in after and "auth" in after
    assert sorted(methods) == ["login", "plain", "xoauth2"]


def test_mechanisms_follow_configuration(make_server: ServerFactory) -> None:
    plain_only = make_server(users={USER: PASSWORD})
    oauth_only = make_server(token_validator=lambda user, token: True)
    no_auth = make_server()

    async def mechanisms(server: FaxSMTPServer) -> tuple[list[str], bool]:
        async with connect(server) as smtp:
            await smtp.ehlo()  # aiosmtplib does not repeat EHLO after STARTTLS by itself
            return smtp.server_auth_methods, smtp.supports_extension("auth")

    assert sorted(run(mechanisms(plain_only))[0]) == ["login", "plain"]
    assert run(mechanisms(oauth_only))[0] == ["xoauth2"]
    assert run(mechanisms(no_auth)) == ([], False)


def test_commands_before_starttls_are_refused_and_recorded(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})

    async def scenario() -> tuple[aiosmtplib.SMTPResponse, pytest.ExceptionInfo[Any]]:
        async with connect(server, start_tls=False) as smtp:
            await smtp.ehlo()
            # A careless client sending credentials before STARTTLS.
            auth = await smtp.execute_command(b"AUTH", b"PLAIN", base64.b64encode(b"\0u\0p"))
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await smtp.mail(USER)
            return auth, refused

    auth, refused = run(scenario())
    assert auth.code == 530
    assert refused.value.code == 530
    assert "STARTTLS" in refused.value.message
    commands = [command for _, command in server.commands]
    assert commands[:3] == ["EHLO localhost", "AUTH PLAIN ***", "MAIL FROM:<fax@example.com>"]
    # aiosmtpd refused the AUTH line unread, but the server still saw it arrive in clear.
    assert server.credentials_seen_in_clear
    assert server.messages == []


def test_mail_before_auth_gets_exchange_reply(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})

    async def scenario() -> aiosmtplib.SMTPSenderRefused:
        async with connect(server) as smtp:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await smtp.send_message(fax_message())
            return refused.value

    refused = run(scenario())
    assert (refused.code, refused.message) == (530, "5.7.57 Client not authenticated to send mail")


def test_wrong_password_is_refused(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})

    async def scenario() -> aiosmtplib.SMTPAuthenticationError:
        async with connect(server) as smtp:
            await smtp.ehlo()
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                await smtp.auth_login(USER, "wrong")
            return refused.value

    refused = run(scenario())
    assert (refused.code, refused.message) == (535, "5.7.3 Authentication unsuccessful")


def test_xoauth2_with_a_3kb_token(make_server: ServerFactory) -> None:
    seen: list[tuple[str, str]] = []

    def validator(user: str, token: str) -> bool:
        seen.append((user, token))
        return token == TOKEN

    server = make_server(token_validator=validator)
    assert len(TOKEN) >= 3000

    async def scenario() -> aiosmtplib.SMTPResponse:
        async with connect(server) as smtp:
            response = await smtp.auth_xoauth2(USER, TOKEN)
            await smtp.send_message(fax_message())
            return response

    response = run(scenario())
    assert (response.code, response.message) == (235, "2.7.0 Authentication successful")
    assert seen == [(USER, TOKEN)]
    [received] = server.messages
    assert (received.auth_user, received.auth_mechanism) == (USER, "XOAUTH2")


def test_xoauth2_wrong_token_is_refused_and_nothing_is_accepted(
    make_server: ServerFactory,
) -> None:
    server = make_server(token_validator=lambda user, token: token == TOKEN)

    async def scenario() -> tuple[aiosmtplib.SMTPAuthenticationError, int]:
        async with connect(server) as smtp:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                await smtp.auth_xoauth2(USER, TOKEN[:-1] + "X")
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as not_authenticated:
                await smtp.send_message(fax_message())
            return refused.value, not_authenticated.value.code

    refused, mail_code = run(scenario())
    assert (refused.code, refused.message) == (535, "5.7.3 Authentication unsuccessful")
    assert mail_code == 530
    assert server.messages == []


def test_xoauth2_without_initial_response(make_server: ServerFactory) -> None:
    server = make_server(token_validator=lambda user, token: token == TOKEN)
    response = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode())

    async def scenario() -> tuple[int, int]:
        async with connect(server) as smtp:
            await smtp.ehlo()
            challenge = await smtp.execute_command(b"AUTH", b"XOAUTH2")
            final = await smtp.execute_command(response)
            return challenge.code, final.code

    assert run(scenario()) == (334, 235)
    assert (server.commands[-2][1], server.commands[-1][1]) == ("AUTH XOAUTH2", "QUIT")


@pytest.mark.parametrize(
    "reply",
    [
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
        "235 2.7.0 Welcome, token holder",
    ],
)
def test_validator_can_choose_the_reply(make_server: ServerFactory, reply: str) -> None:
    server = make_server(token_validator=lambda user, token: reply)

    async def scenario() -> tuple[int, str]:
        async with connect(server) as smtp:
            try:
                response = await smtp.auth_xoauth2(USER, TOKEN)
            except aiosmtplib.SMTPAuthenticationError as refused:
                return refused.code, refused.message
            await smtp.send_message(fax_message())
            return response.code, response.message

    assert run(scenario()) == (int(reply[:3]), reply[4:])
    assert len(server.messages) == (1 if reply.startswith("235") else 0)


def test_a_raising_validator_is_a_server_error_that_leaks_nothing(
    make_server: ServerFactory,
) -> None:
    def validator(user: str, token: str) -> bool:
        raise RuntimeError(f"identity provider down while checking {token}")

    server = make_server(token_validator=validator)

    async def scenario() -> aiosmtplib.SMTPAuthenticationError:
        async with connect(server) as smtp:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                await smtp.auth_xoauth2(USER, TOKEN)
            return refused.value

    refused = run(scenario())
    assert (refused.code, refused.message) == (451, "4.3.0 Temporary server error")
    [error] = server.errors
    assert isinstance(error, RuntimeError)
    assert TOKEN not in "\n".join(text for _, text in server.replies)
    server.errors.clear()  # expected here; the fixture fails a test on any other


def test_parse_xoauth2_rejects_malformed_responses() -> None:
    assert parse_xoauth2(b"user=a@b\x01auth=Bearer t0k\x01\x01") == ("a@b", "t0k")
    assert parse_xoauth2(b"user=a@b\x01auth=Basic t0k\x01\x01") is None
    assert parse_xoauth2(b"user=a@b\x01auth=Bearer t0k\x01") is None
    assert parse_xoauth2(b"user=\x01auth=Bearer t0k\x01\x01") is None


def test_no_credentials_in_transcript(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD}, token_validator=lambda u, t: t == TOKEN)

    async def scenario() -> None:
        for authenticate in (
            lambda smtp: smtp.auth_plain(USER, PASSWORD),
            lambda smtp: smtp.auth_login(USER, PASSWORD),
            lambda smtp: smtp.auth_xoauth2(USER, TOKEN),
        ):
            async with connect(server) as smtp:
                await smtp.ehlo()
                await authenticate(smtp)
        async with connect(server) as smtp:  # a refused token must not leak either
            with pytest.raises(aiosmtplib.SMTPAuthenticationError):
                await smtp.auth_xoauth2(USER, "not-" + TOKEN)

    run(scenario())
    transcript = "\n".join(text for _, text in server.commands + server.replies)
    secrets = [PASSWORD, TOKEN[:40], TOKEN[-40:]]
    secrets += [base64.b64encode(s.encode()).decode()[:20] for s in (PASSWORD, f"\0{USER}\0")]
    for secret in secrets:
        assert secret not in transcript
    assert [text for _, text in server.commands if text.startswith("AUTH")] == [
        "AUTH PLAIN ***",
        "AUTH LOGIN ***",
        "AUTH XOAUTH2 ***",
        "AUTH XOAUTH2 ***",
    ]


def test_plaintext_server_reveals_clients_that_send_credentials_in_clear(
    make_server: ServerFactory,
) -> None:
    server = make_server(tls="none", users={USER: PASSWORD})

    async def careful() -> None:
        # Insisting on STARTTLS: the connection fails before any credentials are sent.
        with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
            async with connect(server, start_tls=True, username=USER, password=PASSWORD):
                pass

    run(careful())
    assert not server.credentials_seen_in_clear

    run(send_one(server, start_tls=False))
    assert server.credentials_seen_in_clear
    assert server.messages[0].tls is False


def test_implicit_tls(make_server: ServerFactory) -> None:
    server = make_server(tls="tls", users={USER: PASSWORD})

    run(send_one(server, use_tls=True))

    [received] = server.messages
    assert received.tls
    assert not server.credentials_seen_in_clear
    assert "STARTTLS" not in [text for _, text in server.commands]


def test_tls_below_1_2_is_refused(make_server: ServerFactory) -> None:
    server = make_server(tls="tls", users={USER: PASSWORD})
    old = ssl.create_default_context(cafile=str(server.ca_file))
    with warnings.catch_warnings():  # deliberately building a deprecated client
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL at least offer TLS 1.1

    with pytest.raises((aiosmtplib.SMTPConnectError, ssl.SSLError)):
        run(send_one(server, use_tls=True, tls_context=old))
    assert server.messages == []


def test_a_client_that_distrusts_the_certificate_fails_cleanly(
    make_server: ServerFactory,
) -> None:
    server = make_server(users={USER: PASSWORD})
    system_trust_only = ssl.create_default_context()  # does not know the trustme CA

    # aiosmtplib 5.1 lets the ssl error out of STARTTLS unwrapped (not an SMTPException).
    with pytest.raises(ssl.SSLCertVerificationError):
        run(send_one(server, tls_context=system_trust_only))

    server.wait_until(lambda: server.active_sessions == 0)
    run(send_one(server))  # the server is unharmed (and the fixture checks server.errors)
    assert len(server.messages) == 1


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "reply", "error", "code"),
    [
        (
            "MAIL",
            "550 5.7.60 Client does not have permissions to send as this sender",
            aiosmtplib.SMTPSenderRefused,
            550,
        ),
        ("RCPT", "550 5.1.1 User unknown", aiosmtplib.SMTPRecipientsRefused, None),
        ("DATA", "451 4.3.0 Temporary server error", aiosmtplib.SMTPDataError, 451),
        ("DATA_END", "554 5.2.252 SendAsDenied", aiosmtplib.SMTPDataError, 554),
        (
            "AUTH",
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled"
            " for the Tenant",
            aiosmtplib.SMTPAuthenticationError,
            535,
        ),
        ("CONNECT", "421 4.3.2 Service not active", aiosmtplib.SMTPConnectResponseError, 421),
    ],
)
def test_scripted_reply(
    make_server: ServerFactory,
    point: str,
    reply: str,
    error: type[aiosmtplib.SMTPException],
    code: int | None,
) -> None:
    server = make_server(users={USER: PASSWORD})
    server.faults.reply(point, reply)

    with pytest.raises(error) as raised:
        run(send_one(server))

    if isinstance(raised.value, aiosmtplib.SMTPRecipientsRefused):
        [refused] = raised.value.recipients
        assert (refused.code, refused.message) == (550, "5.1.1 User unknown")
    else:
        assert isinstance(raised.value, aiosmtplib.SMTPResponseException)
        assert (raised.value.code, raised.value.message) == (code, reply[4:])
    assert server.messages == []
    assert reply in [text for _, text in server.replies]
    assert server.faults.pending == 0

    run(send_one(server))  # times=1 by default: the next attempt goes through
    assert len(server.messages) == 1


def test_drop_after_data_is_ambiguous_for_the_client(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})
    server.faults.drop("DATA_END")

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        run(send_one(server, "Lost reply"))

    assert server.messages == []
    [dropped] = server.dropped_messages
    assert dropped.message["Subject"] == "Lost reply"
    assert server.replies[-1][1] == "354 End data with <CR><LF>.<CR><LF>"


def test_drop_at_connect_sends_no_greeting(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})
    server.faults.drop("CONNECT")

    # aiosmtplib reports the missing greeting as a connect error (also a ConnectionError).
    with pytest.raises(aiosmtplib.SMTPConnectError, match="Unexpected EOF"):
        run(send_one(server))

    assert server.replies == []
    assert server.commands == []
    run(send_one(server))  # times=1: the next connection is greeted
    assert len(server.messages) == 1


def test_a_421_reply_closes_the_connection(make_server: ServerFactory) -> None:
    server = make_server(tls="none")
    server.faults.reply("MAIL", "421 4.3.2 Service not active")

    async def scenario() -> list[bytes]:
        # A bare socket: aiosmtplib closes by itself on 421, which would hide the server's side.
        reader, writer = await asyncio.open_connection(server.host, server.port)
        lines = [await reader.readline()]
        for command in (b"HELO client\r\n", b"MAIL FROM:<fax@example.com>\r\n"):
            writer.write(command)
            lines.append(await reader.readline())
        lines.append(await reader.read())  # b"" once the server has closed
        writer.close()
        await writer.wait_closed()
        return lines

    greeting, helo, mail, after = run(scenario())
    assert (greeting[:4], helo[:4]) == (b"220 ", b"250 ")
    assert (mail, after) == (b"421 4.3.2 Service not active\r\n", b"")


def test_times_counts_and_clear_stops_faults(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})
    server.faults.reply("DATA_END", "451 4.3.0 Temporary server error", times=2)
    server.faults.reply("MAIL", "550 5.7.60 Client does not have permissions", times=None)

    async def attempt() -> int:
        try:
            await send_one(server)
        except aiosmtplib.SMTPResponseException as error:
            return error.code
        return 250

    assert [run(attempt()) for _ in range(3)] == [550, 550, 550]
    server.faults.clear()
    server.faults.reply("DATA_END", "451 4.3.0 Temporary server error", times=2)
    assert [run(attempt()) for _ in range(3)] == [451, 451, 250]
    assert len(server.messages) == 1
    assert [fault.point for fault in server.faults.fired] == ["MAIL"] * 3 + ["DATA_END"] * 2


def test_fault_plan_validates_its_input(make_server: ServerFactory) -> None:
    server = make_server()
    with pytest.raises(ValueError, match="unknown fault point"):
        server.faults.reply("HELLO", "250 OK")
    with pytest.raises(ValueError, match="reply line"):
        server.faults.reply("MAIL", "OK")
    with pytest.raises(ValueError, match="reply line"):
        server.faults.reply("MAIL", "250 OK\r\n250 smuggled")
    with pytest.raises(ValueError, match="times"):
        server.faults.drop("MAIL", times=0)


# -- Exchange-like limits ---------------------------------------------------------------------


def test_fourth_concurrent_session_of_a_user_gets_432(make_server: ServerFactory) -> None:
    server = make_server(
        users={USER: PASSWORD, "other@example.com": "pw"}, max_connections_per_user=3
    )

    async def scenario() -> aiosmtplib.SMTPAuthenticationError:
        async with contextlib.AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(connect(server)) for _ in range(3)]
            await asyncio.gather(*(auth_plain(smtp) for smtp in sessions))
            async with connect(server) as fourth:
                with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                    await auth_plain(fourth)
            async with connect(server) as other_user:  # the limit is per user
                await auth_plain(other_user, "other@example.com", "pw")
            await sessions[0].quit()
            await eventually(lambda: server.active_sessions == 2)
            await send_one(server)  # a slot is free again
        return refused.value

    refused = run(scenario())
    assert refused.code == 432
    assert refused.message.startswith("4.3.2 Concurrent connections limit exceeded.")
    assert server.refused_connections == 1
    assert server.max_concurrent_sessions_by_user == {USER: 3, "other@example.com": 1}
    assert server.max_concurrent_sessions == 4  # the fourth closed before the other user came
    assert len(server.messages) == 1


def test_message_rate_per_user_uses_the_injected_clock(make_server: ServerFactory) -> None:
    clock = FakeClock()
    server = make_server(users={USER: PASSWORD}, messages_per_minute_per_user=2, clock=clock)

    async def scenario() -> list[int]:
        codes = []
        async with connect(server) as smtp:
            await auth_plain(smtp)
            for advance in (0, 10, 20, 29.9, 0.1, 0):
                clock.now += advance
                try:
                    await smtp.send_message(fax_message())
                    codes.append(250)
                except aiosmtplib.SMTPDataError as error:
                    assert error.message == RATE_REPLY[4:]
                    codes.append(error.code)
        return codes

    # Sent at t = 0, 10, 30, 59.9, 60, 60 (s): two fit in any 60 s; at t=60 the message
    # from t=0 has left the window, which frees exactly one slot.
    assert run(scenario()) == [250, 250, 432, 432, 250, 432]
    assert server.rate_refusals == 3
    assert len(server.messages) == 3


def test_reply_delay_applies_to_every_reply(make_server: ServerFactory) -> None:
    delay = 0.03
    server = make_server(users={USER: PASSWORD}, reply_delay=delay)

    started = time.perf_counter()
    run(send_one(server))
    elapsed = time.perf_counter() - started

    # greeting, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, end of data, QUIT
    assert len(server.replies) == 10
    assert elapsed >= len(server.replies) * delay


def test_maildir_receives_eml_files(make_server: ServerFactory, tmp_path: Path) -> None:
    maildir = tmp_path / "out"
    maildir.mkdir()
    (maildir / "7.eml").write_bytes(b"left by an earlier run")
    server = make_server(users={USER: PASSWORD}, maildir=maildir)

    run(send_one(server, "first"))
    run(send_one(server, "second"))

    assert sorted(path.name for path in maildir.iterdir()) == ["7.eml", "8.eml", "9.eml"]
    assert (maildir / "8.eml").read_bytes() == server.messages[0].data
    assert (maildir / "9.eml").read_bytes() == server.messages[1].data
    assert (maildir / "7.eml").read_bytes() == b"left by an earlier run"


# -- life cycle --------------------------------------------------------------------------------


def test_stop_closes_open_connections(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})

    async def scenario() -> None:
        async with connect(server) as smtp:
            await auth_plain(smtp)
            await asyncio.to_thread(server.stop)
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await smtp.noop()

    run(scenario())
    assert server.active_sessions == 0
    with pytest.raises(RuntimeError, match="not running"):
        server.port  # noqa: B018


def test_port_and_ca_file_need_a_running_server() -> None:
    server = FaxSMTPServer()
    with pytest.raises(RuntimeError):
        server.ca_file  # noqa: B018
    with server:
        assert server.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert server.port > 0
        with pytest.raises(RuntimeError, match="could not start"):
            FaxSMTPServer(port=server.port).start()  # the port is taken
    with pytest.raises(ValueError):
        FaxSMTPServer(tls="ssl")  # type: ignore[arg-type]


# -- limits on line length -------------------------------------------------------------------


def test_auth_lines_up_to_16_kib_fit_and_longer_ones_are_refused(
    make_server: ServerFactory,
) -> None:
    big_token = "A" * 11_000  # base64 makes the AUTH line about 14.7 KB
    server = make_server(token_validator=lambda user, token: token == big_token)

    async def scenario() -> tuple[int, int]:
        async with connect(server) as smtp:
            await smtp.ehlo()
            too_long = await smtp.execute_command(b"AUTH", b"XOAUTH2", b"QUFB" * 5000)
            accepted = await smtp.auth_xoauth2(USER, big_token)
            return too_long.code, accepted.code

    assert run(scenario()) == (500, 235)
    commands = [text for _, text in server.commands]
    assert "(command line too long)" in commands
    assert commands[-2:] == ["AUTH XOAUTH2 ***", "QUIT"]


def test_message_lines_keep_the_rfc_5321_limit(make_server: ServerFactory) -> None:
    server = make_server(users={USER: PASSWORD})
    message = b"Subject: long line\r\n\r\n" + b"x" * 1500 + b"\r\n"

    async def scenario() -> aiosmtplib.SMTPDataError:
        async with connect(server) as smtp:
            await auth_plain(smtp)
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await smtp.sendmail(USER, ["+1@fax.example"], message)
            return refused.value

    assert run(scenario()).code == 500
    assert server.messages == []


# -- command line ----------------------------------------------------------------------------


@pytest.mark.slow
def test_command_line_serves_until_interrupted(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    command = [
        sys.executable,
        "-W",
        "error",
        "-m",
        "faxgw.testing.smtp_server",
        "--port",
        "0",
        "--maildir",
        str(maildir),
        "--user",
        f"{USER}:{PASSWORD}",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as cli:
        assert cli.stdout is not None
        listening = cli.stdout.readline()
        ca_line = cli.stdout.readline()
        assert listening.startswith("listening on 127.0.0.1:"), listening
        port = int(listening.split(":")[1].split()[0])
        ca_file = ca_line.removeprefix("CA file: ").strip()

        async def send() -> None:
            context = ssl.create_default_context(cafile=ca_file)
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, tls_context=context)
            async with smtp:
                await auth_plain(smtp)
                await smtp.send_message(fax_message())
                sock = smtp.get_transport_info("socket")
            await socket_closed(sock)

        run(send())
        assert cli.stdout.readline().startswith(f"message 1: {USER} -> ")
        cli.send_signal(signal.SIGTERM)
        output, errors = cli.communicate(timeout=10)
    assert (cli.returncode, output, errors) == (0, "stopped\n", "")
    assert [path.name for path in maildir.iterdir()] == ["1.eml"]
