"""The SMTP protocol of the test server: aiosmtpd's ``SMTP``, made to answer like Exchange Online.

One :class:`ExchangeLikeSMTP` instance serves one TCP connection on the server's event
loop. What it changes in aiosmtpd 1.4 and why:

* **AUTH line length.** aiosmtpd reads lines with a ``StreamReader`` limited to 1001 bytes
  and refuses commands over 512 bytes (``500 Command line too long``). A real Entra ID
  access token is 1.5-3 KB, so ``AUTH XOAUTH2 <base64>`` is 2-4 KB. The reader limit and
  the AUTH command limit are raised to :data:`AUTH_LINE_LIMIT`; message lines keep the
  RFC 5321 limit of 1001 bytes, so the DATA behaviour is unchanged.
* **XOAUTH2** (``auth_XOAUTH2``), with Exchange's replies (``235 2.7.0`` / ``535 5.7.3``).
* **Exchange's replies** for "not authenticated" (``530 5.7.57``) and the per-user limits
  (see :mod:`faxgw.testing.smtp_ledger`).
* **A transcript of every command line the client sent**, including those aiosmtpd refuses
  before any hook runs (``530 Must issue a STARTTLS command first``): a test must be able to
  prove that a client never sent AUTH in clear. AUTH payloads are never recorded.
* **Reply delay and faults** (:mod:`faxgw.testing.smtp_faults`) in :meth:`push` and in the
  command methods. The delay counts from when the command arrived
  (:mod:`faxgw.testing.smtp_flights`), so pipelined commands (RFC 2920, advertised unless
  ``pipelining`` is off) share one delay, and the transcript knows which came together.

The transcript relies on two aiosmtpd 1.4 internals, checked by the test suite: the command
loop reads lines with ``StreamReader.readuntil()`` (default separator ``b"\\n"``) while DATA
reads with ``readuntil(b"\\r\\n")``, and AUTH challenge responses go through ``readline()``.

The AUTH side lives in :mod:`faxgw.testing.smtp_auth` (inherited), the aiosmtpd handler hooks
and session in :mod:`faxgw.testing.smtp_hooks`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import AnyStr, Literal, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from faxgw.testing.smtp_auth import (
    AUTH_FAILURE_REPLY,
    AUTH_LINE_LIMIT,
    AUTH_SUCCESS_REPLY,
    NOT_AUTHENTICATED_REPLY,
    ExchangeAuthSMTP,
    TokenValidator,
    parse_xoauth2,
)
from faxgw.testing.smtp_faults import Fault, FaultPlan
from faxgw.testing.smtp_flights import Arrivals
from faxgw.testing.smtp_hooks import SERVER_ERROR_REPLY as SERVER_ERROR_REPLY
from faxgw.testing.smtp_hooks import Handler, QuietSession
from faxgw.testing.smtp_ledger import RATE_REPLY, Ledger, Received

__all__ = [
    "AUTH_FAILURE_REPLY",
    "AUTH_LINE_LIMIT",
    "AUTH_SUCCESS_REPLY",
    "NOT_AUTHENTICATED_REPLY",
    "ExchangeLikeSMTP",
    "ProtocolSettings",
    "TokenValidator",
    "parse_xoauth2",
]

MESSAGE_ACCEPTED_REPLY = "250 2.0.0 OK"


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything a connection needs from its server; shared by all connections."""

    hostname: str
    tls_mode: Literal["starttls", "tls", "none"]
    tls_context: ssl.SSLContext | None
    users: Mapping[str, str] | None
    token_validator: TokenValidator | None
    auth_required: bool
    reply_delay: float
    data_size_limit: int
    dsn: bool
    faults: FaultPlan
    ledger: Ledger
    pipelining: bool = True
    live: set[ExchangeLikeSMTP] = field(default_factory=set)
    """Connections open right now; touched only on the event-loop thread."""


def _scriptable(
    verb: str, command: Callable[[SMTP, str], Awaitable[None]]
) -> Callable[[ExchangeLikeSMTP, str], Awaitable[None]]:
    """Wrap aiosmtpd's ``smtp_<verb>`` so a scripted fault can replace it."""

    @functools.wraps(command)  # keeps aiosmtpd's @syntax attributes, so HELP still works
    async def scripted_command(self: ExchangeLikeSMTP, arg: str) -> None:
        if not await self._apply_fault(verb):
            await command(self, arg)

    return scripted_command


def _take_parameters(arg: str | None, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """``arg`` without the ``NAME=value`` parameters ``names`` lists, and those parameters."""
    if not arg:
        return arg or "", ()
    words = arg.split(" ")
    kept = [w for w in words if w.partition("=")[0].upper() not in names]
    taken = tuple(w for w in words if w.partition("=")[0].upper() in names)
    return " ".join(kept), taken


class ExchangeLikeSMTP(ExchangeAuthSMTP):
    """One connection of the test server.

    ``settings.token_validator(user, token)`` decides XOAUTH2: ``True`` accepts
    (``235 2.7.0 Authentication successful``), ``False`` refuses with
    ``535 5.7.3 Authentication unsuccessful``, and a string is sent as the reply itself
    (a ``235`` string accepts, anything else refuses), e.g. ``"535 5.7.139 Authentication
    unsuccessful, SmtpClientAuthentication is disabled for the Tenant"``.
    """

    def __init__(self, settings: ProtocolSettings) -> None:
        self._settings = settings
        self._ledger = settings.ledger
        self._faults = settings.faults
        self.session_id = 0  # assigned when the TCP connection is made
        self._tls_active = settings.tls_mode == "tls"
        self._auth_user: str | None = None
        self._auth_mechanism: str | None = None
        self._greeted = False
        self._silenced = False  # after a drop or a 421: nothing more may be sent
        self._in_auth_exchange = False
        self._overlong_line = False
        self._pending_reply_lines: list[str] = []
        self._session_closed = False
        self._mail_dsn: tuple[str, ...] = ()
        self._rcpt_dsn: list[tuple[str, ...]] = []
        self._arrivals = Arrivals()
        self._replied_at = 0.0  # when the last reply was written (time.monotonic)

        excluded = []
        if not settings.users:
            excluded += ["PLAIN", "LOGIN"]
        if settings.token_validator is None:
            excluded.append("XOAUTH2")
        starttls = settings.tls_mode == "starttls"

        # The StreamReader that aiosmtpd's __init__ creates takes its limit from
        # line_length_limit: raise it for the duration of the call so 4 KB AUTH lines fit,
        # then restore the RFC 5321 value that DATA checks each message line against.
        self.line_length_limit = AUTH_LINE_LIMIT + 2
        super().__init__(
            Handler(settings.ledger),
            hostname=settings.hostname,
            ident="faxgw test ESMTP ready",
            data_size_limit=settings.data_size_limit,
            tls_context=settings.tls_context if starttls else None,
            require_starttls=starttls,
            # Like Exchange: AUTH is neither advertised nor accepted before STARTTLS.
            # With implicit TLS aiosmtpd does not see the TLS layer (it only tracks
            # STARTTLS), and with tls="none" tests must be able to watch a client try AUTH.
            auth_require_tls=starttls,
            # aiosmtpd's auth_required answers "530 5.7.0 Authentication required" and warns
            # when TLS is not required; check_auth_needed() below gives Exchange's reply.
            auth_required=False,
            auth_exclude_mechanism=excluded,
            authenticator=self._check_password,
            loop=asyncio.get_running_loop(),
        )
        self.line_length_limit = SMTP.line_length_limit
        # aiosmtpd keeps command_size_limits as a *class* attribute shared by all instances
        # (and clears it in __init__); give this connection its own.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"AUTH": AUTH_LINE_LIMIT}
        )

    # -- connection life cycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called twice with STARTTLS: for the TCP connection, then for the TLS layer once
        # the handshake is complete.
        if self.session_id == 0:
            self.session_id = self._ledger.open_session()
            self._settings.live.add(self)
            self._arrivals = Arrivals()
        else:
            self._tls_active = True
            self._arrivals.reset()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._arrivals.received(len(data))
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        # aiosmtpd calls this itself after a failed STARTTLS handshake, and asyncio calls it
        # again: count the connection as gone once.
        if not self._session_closed:
            self._session_closed = True
            self._settings.live.discard(self)
            self._ledger.close_session(self._auth_user)

    def abort_connection(self) -> None:
        """Close this connection now, without a reply (used at server stop)."""
        self._hang_up(abort=True)

    def _hang_up(self, *, abort: bool) -> None:
        self._silenced = True
        transport = cast(asyncio.WriteTransport | None, self.transport)
        if transport is not None:
            if abort:
                transport.abort()  # no TLS close_notify, no flush: the peer just sees EOF
            else:
                transport.close()  # flushes the last reply (e.g. a 421) first

    def _create_session(self) -> Session:
        return QuietSession(self.loop)

    # -- transcript ------------------------------------------------------------------------

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        read_until, read = reader.readuntil, reader.read

        async def recording_readuntil(separator: bytes = b"\n") -> bytes:
            command_line = separator == b"\n" and not self._in_auth_exchange
            try:
                line = await read_until(separator)
            except asyncio.LimitOverrunError:
                if command_line:
                    self._overlong_line = True
                raise
            self._arrivals.consumed(len(line))
            if command_line:
                # Sent after our last reply: the client waited for it. Sent before: the
                # client wrote it together with the command before it (pipelining).
                self._note_command(line,
                                   new_flight=self._arrivals.sent_after(self._replied_at))
            return line

        async def counting_read(n: int = -1) -> bytes:
            data = await read(n)  # aiosmtpd skips the rest of an overlong line with read()
            self._arrivals.consumed(len(data))
            return data

        # aiosmtpd refuses some commands before any overridable method runs; watching the
        # reader is the one place that sees every command line.
        reader.readuntil = recording_readuntil  # type: ignore[method-assign,assignment]
        reader.read = counting_read  # type: ignore[method-assign]

    def _note_command(self, line: bytes, *, new_flight: bool) -> None:
        if self._overlong_line:  # the tail of a line aiosmtpd refused as too long
            self._overlong_line = False
            self._ledger.note_command(
                self.session_id, "(command line too long)", auth_in_clear=False,
                new_flight=new_flight,
            )
            return
        text = line.rstrip(b"\r\n").decode("ascii", "backslashreplace")
        verb, _, rest = text.partition(" ")
        verb = verb.upper()
        if verb == "AUTH":
            # Never keep credentials: only the mechanism, and whether a payload followed.
            mechanism, _, payload = rest.strip().partition(" ")
            text = f"AUTH {mechanism.upper()}{' ***' if payload.strip() else ''}"
        elif verb:
            text = f"{verb} {rest}" if rest else verb
        self._ledger.note_command(
            self.session_id, text, auth_in_clear=verb == "AUTH" and not self._tls_active,
            new_flight=new_flight,
        )

    async def push(self, status: AnyStr) -> None:
        """Send one reply line: after the scripted greeting fault and the reply delay."""
        if self._silenced:
            return
        if not self._greeted:  # the first line of a connection is the 220 greeting
            self._greeted = True
            if await self._apply_fault("CONNECT"):
                return
        text = status.decode("ascii", "backslashreplace") if isinstance(status, bytes) else status
        if not self._pending_reply_lines and self._settings.reply_delay > 0:
            # Once per reply, before its first line: a distant server's reply comes this
            # late after the command arrived, and asyncio.sleep keeps the other connections
            # served meanwhile. Commands that arrived together are not delayed one by one.
            late = self._arrivals.last_arrival + self._settings.reply_delay - time.monotonic()
            if late > 0:
                await asyncio.sleep(late)
            if self._silenced:
                return
        self._pending_reply_lines.append(text)
        if text[3:4] != "-":  # the last line of a (multi-line) reply
            self._ledger.note_reply(self.session_id, "\n".join(self._pending_reply_lines))
            self._pending_reply_lines = []
            self._replied_at = time.monotonic()
        await super().push(status)

    @property
    def offers_dsn(self) -> bool:
        """Whether EHLO advertises DSN (RFC 3461)."""
        return self._settings.dsn

    @property
    def offers_pipelining(self) -> bool:
        """Whether EHLO advertises PIPELINING (RFC 2920)."""
        return self._settings.pipelining

    # -- faults ----------------------------------------------------------------------------

    async def _apply_fault(self, point: str) -> bool:
        """Act on the next scripted fault for ``point``; False if there is none."""
        fault = self._faults.take(point)
        if fault is None:
            return False
        await self._act(fault)
        return True

    async def _act(self, fault: Fault) -> None:
        if fault.action == "reply":
            assert fault.reply is not None
            await self.push(fault.reply)
        if fault.closes_connection:
            self._hang_up(abort=fault.action == "drop")

    smtp_EHLO = _scriptable("EHLO", SMTP.smtp_EHLO)
    smtp_HELO = _scriptable("HELO", SMTP.smtp_HELO)
    smtp_STARTTLS = _scriptable("STARTTLS", SMTP.smtp_STARTTLS)
    _scripted_mail = _scriptable("MAIL", SMTP.smtp_MAIL)
    _scripted_rcpt = _scriptable("RCPT", SMTP.smtp_RCPT)

    @functools.wraps(SMTP.smtp_MAIL)  # keeps aiosmtpd's @syntax attributes for HELP
    async def smtp_MAIL(self, arg: str) -> None:
        """MAIL, with RFC 3461's ``ENVID`` and ``RET`` taken off (and kept) under ``dsn``."""
        self._mail_dsn, self._rcpt_dsn = (), []
        if self._settings.dsn:
            arg, self._mail_dsn = _take_parameters(arg, ("ENVID", "RET"))
        await self._scripted_mail(arg)

    @functools.wraps(SMTP.smtp_RCPT)
    async def smtp_RCPT(self, arg: str) -> None:
        """RCPT, with ``NOTIFY`` and ``ORCPT`` taken off (and kept) under ``dsn``."""
        taken: tuple[str, ...] = ()
        if self._settings.dsn:
            arg, taken = _take_parameters(arg, ("NOTIFY", "ORCPT"))
        before = len(self.envelope.rcpt_tos) if self.envelope is not None else 0
        await self._scripted_rcpt(arg)
        if self._settings.dsn and self.envelope is not None \
                and len(self.envelope.rcpt_tos) > before:
            self._rcpt_dsn.append(taken)
    smtp_DATA = _scriptable("DATA", SMTP.smtp_DATA)
    smtp_RSET = _scriptable("RSET", SMTP.smtp_RSET)
    smtp_NOOP = _scriptable("NOOP", SMTP.smtp_NOOP)
    smtp_QUIT = _scriptable("QUIT", SMTP.smtp_QUIT)

    # -- end of data -----------------------------------------------------------------------

    async def finish_message(self, envelope: Envelope) -> str:
        """The message data arrived in full: apply DATA_END faults and the rate, then store."""
        data = envelope.original_content or b""
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            auth_user=self._auth_user,
            auth_mechanism=self._auth_mechanism,
            tls=self._tls_active,
            mail_parameters=self._mail_dsn,
            rcpt_parameters=tuple(self._rcpt_dsn),
            session_id=self.session_id,
        )
        fault = self._faults.take("DATA_END")
        if fault is not None:
            if fault.action == "drop":
                self._ledger.drop(received)
            if fault.closes_connection:
                await self._act(fault)
                return fault.reply or ""  # never sent: the connection is silenced
            assert fault.reply is not None
            return fault.reply
        if not self._ledger.admit_message(self._auth_user or received.mail_from):
            return RATE_REPLY
        self._ledger.store(received)
        return MESSAGE_ACCEPTED_REPLY
