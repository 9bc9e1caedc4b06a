"""SMTP PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write, every reply judged as before.

The test server records which commands reached it in one write of the client (a *flight*),
so the round trips are counted, not timed. Faults are scripted in the server.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from faxgw.auth.basic import PasswordAuth
from faxgw.config import Config
from faxgw.domain import codes
from faxgw.domain.disposition import Disposition
from faxgw.domain.errors import ConnectError, DeliveryError, PermanentError, TransientError
from faxgw.testing.smtp_flights import Arrivals
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.transport.smtp import SmtpSession, SmtpTransport
from faxgw.transport.smtp.pipelining import PipeliningSMTP

from .conftest import PASSWORD, USER, MakeConfig

FAX = "+4930123456@fax.example.net"
OTHER_FAX = "+4930654321@fax.example.net"


def _message(subject: str = "Fax") -> bytes:
    message = EmailMessage()
    message["From"] = USER
    message["To"] = FAX
    message["Subject"] = subject
    # A line starting with a dot: the data must be dot-stuffed on the wire.
    message.set_content("Page one.\n.hidden line\nEnd.\n")
    return message.as_bytes()


@pytest.fixture
def server_options() -> dict[str, object]:
    return {}


@pytest.fixture
def server(server_options: dict[str, object]) -> Iterator[FaxSMTPServer]:
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, **server_options) as running:
        yield running
        assert running.errors == []


def _session(config: Config) -> SmtpSession:
    return SmtpTransport(config.smtp, PasswordAuth(config)).session(USER)


def _send_all(config: Config, subjects: list[str], *,
              recipients: tuple[str, ...] = (FAX,)) -> list[str | DeliveryError]:
    """Send one message per subject on one session; each outcome: the reply or the error."""

    async def scenario() -> list[str | DeliveryError]:
        outcomes: list[str | DeliveryError] = []
        async with _session(config) as session:
            for subject in subjects:
                if not session.usable:
                    outcomes.append(ConnectError("closed", code=codes.NO_CONNECTION))
                    continue
                try:
                    accepted = await session.send(_message(subject), sender=USER,
                                                  recipients=list(recipients))
                except DeliveryError as error:
                    outcomes.append(error)
                else:
                    outcomes.append(accepted.reply)
        await asyncio.sleep(0.1)  # the TLS connection finishes closing before the loop ends
        return outcomes

    return asyncio.run(scenario())


def _transactions(server: FaxSMTPServer) -> list[tuple[str, ...]]:
    """The flights that carried a MAIL command."""
    return [commands for _, commands in server.flights
            if any(c.startswith("MAIL") for c in commands)]


def test_mail_rcpt_and_data_travel_in_one_write(server: FaxSMTPServer,
                                                 make_config: MakeConfig) -> None:
    config = make_config(server)

    outcomes = _send_all(config, ["one", "two", "three"], recipients=(FAX, OTHER_FAX))

    assert outcomes == ["250 2.0.0 OK"] * 3
    assert [m.message["Subject"] for m in server.messages] == ["one", "two", "three"]
    assert all(m.rcpt_tos == [FAX, OTHER_FAX] for m in server.messages)
    assert ".hidden line" in server.messages[0].message.get_content()
    assert _transactions(server) == [
        (f"MAIL FROM:<{USER}>", f"RCPT TO:<{FAX}>", f"RCPT TO:<{OTHER_FAX}>", "DATA"),
    ] * 3
    assert len({session for session, _ in server.flights}) == 1


@pytest.mark.parametrize("server_options", [{"pipelining": False}])
def test_without_pipelining_offered_each_command_waits_for_its_reply(
        server: FaxSMTPServer, make_config: MakeConfig) -> None:
    config = make_config(server)

    outcomes = _send_all(config, ["one", "two"])

    assert outcomes == ["250 2.0.0 OK"] * 2
    assert len(server.messages) == 2
    assert _transactions(server) == [(f"MAIL FROM:<{USER}>",)] * 2
    singles = [commands for _, commands in server.flights]
    assert (f"RCPT TO:<{FAX}>",) in singles and ("DATA",) in singles


def test_dsn_parameters_travel_in_the_pipelined_write(make_config: MakeConfig) -> None:
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, dsn=True) as server:
        config = make_config(server)

        async def scenario() -> str:
            async with _session(config) as session:
                accepted = await session.send(_message(), sender=USER, recipients=[FAX],
                                              envelope_id="job-42")
            await asyncio.sleep(0.1)  # the TLS connection finishes closing
            return accepted.reply

        assert asyncio.run(scenario()) == "250 2.0.0 OK"
        [received] = server.messages
        assert received.mail_parameters == ("RET=HDRS", "ENVID=job-42")
        assert received.rcpt_parameters == (("NOTIFY=FAILURE,DELAY",),)
        assert _transactions(server) == [(f"MAIL FROM:<{USER}> RET=HDRS ENVID=job-42",
                                          f"RCPT TO:<{FAX}> NOTIFY=FAILURE,DELAY", "DATA")]


# -- refusals: the same codes as without pipelining, and the session stays in step ---------


REFUSALS = [
    # (fault point, reply, error class, status code, stage named in the error)
    ("RCPT", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
     PermanentError, codes.REJECTED, "rcpt"),
    ("RCPT", "452 4.5.3 Too many recipients", TransientError, codes.TRY_LATER, "rcpt"),
    ("MAIL", "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
     PermanentError, codes.SEND_AS_DENIED, "mail"),
    ("MAIL", "451 4.3.0 Temporary server error", TransientError, codes.TRY_LATER, "mail"),
    ("DATA", "554 5.6.0 Invalid message content", PermanentError, codes.REJECTED, "data"),
    ("DATA_END", "552 5.3.4 Message size exceeds fixed maximum message size",
     PermanentError, codes.TOO_LARGE, "data"),
]


@pytest.mark.parametrize(("point", "reply", "kind", "code", "stage"), REFUSALS,
                         ids=[f"{row[0]}-{row[1][:3]}" for row in REFUSALS])
@pytest.mark.parametrize("server_options", [{"pipelining": True}, {"pipelining": False}],
                         ids=["pipelined", "one-by-one"])
def test_a_refusal_is_classified_as_without_pipelining_and_the_next_message_goes(
        server: FaxSMTPServer, make_config: MakeConfig, point: str, reply: str,
        kind: type[DeliveryError], code: int, stage: str) -> None:
    config = make_config(server)
    server.faults.reply(point, reply, times=1)

    refused, accepted = _send_all(config, ["refused", "next"])

    assert isinstance(refused, kind) and not isinstance(refused, ConnectError)
    assert (refused.code, refused.reply, refused.ambiguous) == (code, reply, False)
    assert str(refused).startswith(f"{stage}: the server replied ")
    assert accepted == "250 2.0.0 OK"
    assert [m.message["Subject"] for m in server.messages] == ["next"]
    if point != "DATA_END":  # after a refusal before the data, RSET before the next MAIL
        commands = [command for _, command in server.commands]
        first, second = [i for i, c in enumerate(commands) if c.startswith("MAIL")]
        assert "RSET" in commands[first:second]


def test_a_421_to_mail_ends_the_session(server: FaxSMTPServer,
                                        make_config: MakeConfig) -> None:
    config = make_config(server)
    server.faults.reply("MAIL", "421 4.7.0 Try again later, closing connection", times=1)

    refused, after = _send_all(config, ["refused", "next"])

    assert isinstance(refused, TransientError)
    assert (refused.code, refused.disposition) == (codes.TRY_LATER, Disposition.RETRY)
    assert isinstance(after, ConnectError)  # the session is closed, not reused out of step
    assert server.messages == []


def test_one_recipient_refused_of_two_sends_no_data_at_all(server: FaxSMTPServer,
                                                           make_config: MakeConfig) -> None:
    """aiosmtpd answers DATA with 354 when one recipient was accepted: nothing may be sent,
    not even a lone dot, or the accepted recipient would get an empty message."""
    config = make_config(server)
    server.faults.reply("RCPT", "550 5.1.10 Recipient not found", times=1)

    refused, after = _send_all(config, ["refused", "next"], recipients=(FAX, OTHER_FAX))

    assert isinstance(refused, PermanentError) and refused.code == codes.REJECTED
    assert str(refused).startswith("rcpt: ")
    assert isinstance(after, ConnectError)
    assert server.messages == [] and server.dropped_messages == []
    assert ("354 End data with <CR><LF>.<CR><LF>" in
            [reply for _, reply in server.replies])


# -- the connection dropped in the middle of a batch ---------------------------------------


@pytest.mark.parametrize(("point", "stage", "ambiguous"), [
    ("MAIL", "mail", False),
    ("RCPT", "rcpt", False),
    ("DATA", "data", True),      # as without pipelining: DATA may have been taken
    ("DATA_END", "data", True),  # the message was uploaded: it may have been delivered
])
def test_a_dropped_connection_mid_batch(server: FaxSMTPServer, make_config: MakeConfig,
                                        point: str, stage: str, ambiguous: bool) -> None:
    config = make_config(server)
    server.faults.drop(point, times=1)

    [failed] = _send_all(config, ["dropped"])

    assert isinstance(failed, TransientError)
    assert failed.code == codes.NO_CONNECTION
    assert failed.ambiguous is ambiguous
    assert str(failed).startswith(f"{stage}: ")
    assert server.messages == []
    assert len(server.dropped_messages) == (1 if point == "DATA_END" else 0)


def test_a_refusal_read_before_the_drop_is_the_answer(server: FaxSMTPServer,
                                                       make_config: MakeConfig) -> None:
    config = make_config(server)
    server.faults.reply("MAIL", "550 5.7.60 Client does not have permissions to send as this "
                        "sender", times=1)
    server.faults.drop("RCPT", times=1)

    [refused] = _send_all(config, ["refused"])

    assert isinstance(refused, PermanentError) and refused.code == codes.SEND_AS_DENIED


# -- the protocol: replies that arrive together or before anyone reads them -----------------


async def _scripted_peer(script: list[bytes], pause: float) -> tuple[asyncio.Server, int]:
    """A plain SMTP peer on a real socket: greets, answers EHLO with PIPELINING, then answers
    the first pipelined batch with ``script``, one write every ``pause`` seconds."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer ready\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-peer\r\n250 PIPELINING\r\n")
        for _ in range(3):  # MAIL, RCPT, DATA
            await reader.readline()
        for chunk in script:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause)
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 2.0.0 queued\r\n")
        await writer.drain()
        await reader.readline()  # QUIT
        writer.write(b"221 bye\r\n")
        writer.close()

    peer = await asyncio.start_server(serve, "127.0.0.1", 0)
    return peer, peer.sockets[0].getsockname()[1]


@pytest.mark.parametrize(("script", "pause"), [
    ([b"250 sender ok\r\n250 recipient ok\r\n354 go ahead\r\n"], 0.0),
    ([b"250 sender ok\r\n", b"250 recipient ok\r\n", b"354 go ahead\r\n"], 0.02),
    ([b"250 sender", b" ok\r\n250-recipient\r\n250 ok\r\n3", b"54 go ahead\r\n"], 0.02),
], ids=["one-packet", "separate-packets", "split-lines"])
def test_every_pipelined_reply_is_kept_in_order(script: list[bytes], pause: float) -> None:
    async def scenario() -> str:
        peer, port = await _scripted_peer(script, pause)
        async with peer:
            smtp = PipeliningSMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
            await smtp.connect()
            await smtp.ehlo()
            assert smtp.supports_pipelining
            final = await smtp.send_pipelined(USER, [FAX], b"Subject: x\r\n\r\nbody\r\n")
            await smtp.quit()
            return f"{final.code} {final.message}"

    assert asyncio.run(scenario()) == "250 2.0.0 queued"


def test_replies_are_queued_when_nobody_waits_yet() -> None:
    """Replies that arrive while no read is pending are queued, not dropped."""

    async def scenario() -> list[str]:
        script = [b"250 one\r\n", b"250 two\r\n", b"354 three\r\n"]
        peer, port = await _scripted_peer(script, 0.01)
        async with peer:
            smtp = PipeliningSMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
            await smtp.connect()
            await smtp.ehlo()
            protocol = smtp.protocol
            assert protocol is not None and hasattr(protocol, "write_commands")
            protocol.write_commands([b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"DATA"])
            await asyncio.sleep(0.2)  # every reply arrives before the first read
            replies = [await protocol.read_response(timeout=5) for _ in range(3)]
            protocol.write_message(b"Subject: x\r\n\r\nbody\r\n")
            replies.append(await protocol.read_response(timeout=5))
            await smtp.quit()
            return [f"{r.code} {r.message}" for r in replies]

    assert asyncio.run(scenario()) == ["250 one", "250 two", "354 three", "250 2.0.0 queued"]


def test_pipelining_is_used_only_where_the_server_offers_it() -> None:
    async def offered(server: FaxSMTPServer) -> bool:
        smtp = PipeliningSMTP(hostname=server.host, port=server.port, timeout=5,
                              tls_context=ssl.create_default_context(cafile=str(server.ca_file)))
        await smtp.connect()
        try:
            await smtp.ehlo()  # aiosmtplib sends no EHLO of its own after STARTTLS
            await smtp.auth_plain(USER, PASSWORD)
            return smtp.supports_pipelining
        finally:
            await smtp.quit()
            # The TLS layer closes in a few more turns of the loop: let it, before
            # asyncio.run closes the loop with the socket still open (a ResourceWarning
            # that would surface in whichever test the collector runs in).
            await asyncio.sleep(0.1)

    for pipelining in (True, False):
        with FaxSMTPServer(tls="starttls", users={USER: PASSWORD},
                           pipelining=pipelining) as server:
            assert asyncio.run(offered(server)) is pipelining


def test_the_server_times_replies_from_when_the_command_arrived() -> None:
    """The test server's reply delay counts from a command's arrival, so commands that came
    in one write share one delay; a line that arrived after the last reply starts a flight."""
    now = [100.0]
    arrivals = Arrivals(clock=lambda: now[0])
    assert arrivals.last_arrival == 100.0

    now[0] = 101.0
    arrivals.received(30)  # MAIL, RCPT and DATA in one packet
    now[0] = 101.5
    arrivals.received(10)  # the next command, later
    arrivals.consumed(12)
    assert arrivals.last_arrival == 101.0
    assert arrivals.sent_after(100.5) and not arrivals.sent_after(101.2)
    arrivals.consumed(18)
    assert arrivals.last_arrival == 101.0
    arrivals.consumed(10)
    assert arrivals.last_arrival == 101.5 and arrivals.sent_after(101.2)

    now[0] = 102.0
    arrivals.received(5)
    arrivals.reset()  # STARTTLS: aiosmtpd drops what was not read
    arrivals.received(7)
    arrivals.consumed(7)
    assert arrivals.last_arrival == 102.0
