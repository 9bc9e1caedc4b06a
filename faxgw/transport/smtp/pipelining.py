"""SMTP PIPELINING (RFC 2920) on top of aiosmtplib: MAIL, RCPT and DATA in one round trip.

aiosmtplib sends one command and waits for its reply. Its protocol keeps one reply at a time:
a reply that arrives while the previous one has not been picked up yet is dropped, and a
second reply that arrives in the same packet as the first stays in the buffer until more
bytes come. Writing several commands and then reading their replies therefore needs a small
extension, which this module is:

* :class:`PipeliningProtocol` is aiosmtplib's ``SMTPProtocol`` that, while replies to
  pipelined commands are due, parses every complete reply as it arrives and queues it, so
  :meth:`~PipeliningProtocol.read_response` hands them out in order, one per call;
* :class:`PipeliningSMTP` is aiosmtplib's ``SMTP`` that puts that protocol on the connection
  once the greeting has been read, and sends one message with
  :meth:`~PipeliningSMTP.send_pipelined` when the server's EHLO offers ``PIPELINING``.

Every reply is judged as aiosmtplib's own ``mail()``, ``rcpt()`` and ``data()`` judge it, and
a refusal is raised as the same exception, wrapped in :class:`PipelineFailure` with the
stage it belongs to, so the reply table classifies it exactly as an unpipelined one.
"""

from __future__ import annotations

import collections
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPStatus
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    MAX_RESPONSE_LENGTH,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)

__all__ = ["PipelineFailure", "PipeliningProtocol", "PipeliningSMTP"]


class PipelineFailure(Exception):
    """A pipelined transaction failed at ``stage`` (``mail``, ``rcpt`` or ``data``).

    ``error`` is the exception aiosmtplib's one-command-at-a-time methods raise for the same
    reply or fault (``SMTPSenderRefused``, ``SMTPRecipientRefused``, ``SMTPDataError``,
    ``SMTPServerDisconnected``, ``SMTPReadTimeoutError``).
    """

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


class PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol, able to take the replies to several commands written at once.

    With no pipelined reply due it behaves exactly as its base class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due = 0  # replies still to come for pipelined commands
        self._ready: collections.deque[SMTPResponse] = collections.deque()
        self._failure: BaseException | None = None

    def expect_nothing(self) -> None:
        """The greeting has been read elsewhere: no reply is awaited now."""
        self._response_pending = False

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the command lock for a whole transaction (commands, replies and data)."""
        if self._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        async with self._command_lock:
            yield

    def write_commands(self, commands: Sequence[bytes]) -> None:
        """Send ``commands`` (without line ends) in one write; their replies are queued."""
        for command in commands:
            if COMMAND_INJECTION_REGEX.search(command):
                raise ValueError("Command arg contains a prohibited control character")
        self._due += len(commands)
        self.write(b"".join(command + b"\r\n" for command in commands))

    def write_message(self, message: bytes) -> None:
        """Send the message data after a ``354`` (dot-stuffed, ending with the final dot)."""
        message = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))
        self._due += 1
        self.write(message + b".\r\n")

    def data_received(self, data: bytes) -> None:
        if not self._due:
            super().data_received(data)
            return
        if self._response_waiter is None:  # the connection is gone
            return
        self._buffer.extend(data)
        while self._due:
            try:
                response = self._read_response_from_buffer()
            except Exception as exc:  # noqa: BLE001 - handed to the reader, as the base does
                self._fail(exc)
                return
            if response is None:
                break
            self._due -= 1
            self._ready.append(response)
        if len(self._buffer) > MAX_RESPONSE_LENGTH:
            self._fail(aiosmtplib.SMTPResponseException(
                SMTPStatus.invalid_response.value, "Response too long"))
            return
        self._hand_over()

    def _hand_over(self) -> None:
        # Complete a waiting read_response() with the oldest queued reply.
        waiter = self._response_waiter
        if self._ready and self._response_pending and waiter is not None and not waiter.done():
            waiter.set_result(self._ready.popleft())

    def _fail(self, exc: BaseException) -> None:
        self._due = 0
        del self._buffer[:]
        waiter = self._response_waiter
        if waiter is not None and not waiter.done():
            self._set_response_exception(waiter, exc)
        else:
            self._failure = exc

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        """The next reply: a queued one at once, else the next to arrive (base behaviour)."""
        if self._ready:
            return self._ready.popleft()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return await super().read_response(timeout=timeout)


class PipeliningSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client with :meth:`send_pipelined` for servers that offer PIPELINING."""

    async def connect(self, *args: Any, **kwargs: Any) -> SMTPResponse:
        """Connect as aiosmtplib does, then put :class:`PipeliningProtocol` on the connection.

        The swap happens at a quiet moment (every reply read, nothing written), with
        asyncio's ``set_protocol``; the TLS layer, when there is one, stays as it is.
        """
        response = await super().connect(*args, **kwargs)
        plain = self.protocol
        transport = plain.transport if plain is not None else None
        if transport is not None:
            protocol = PipeliningProtocol(loop=self.loop,
                                          connection_lost_callback=self._on_connection_lost)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            protocol.expect_nothing()
            self.protocol = protocol
        return response

    @property
    def supports_pipelining(self) -> bool:
        """Whether the server's EHLO offered PIPELINING and this connection can use it."""
        return self.supports_extension("pipelining") and isinstance(
            self.protocol, PipeliningProtocol)

    async def send_pipelined(self, sender: str, recipients: Sequence[str], message: bytes, *,
                             mail_options: Sequence[str] = (),
                             rcpt_options: Sequence[str] = (),
                             data_timeout: float | None = None) -> SMTPResponse:
        """MAIL, every RCPT and DATA in one write; then their replies; then the message.

        Returns the reply to the message data. Raises :class:`PipelineFailure` for the first
        refused command (RFC 2920: every reply is read and checked) or a lost connection.
        """
        protocol = self.protocol
        if protocol is None or not isinstance(protocol, PipeliningProtocol):
            raise PipelineFailure("mail", aiosmtplib.SMTPServerDisconnected("Connection lost"))
        commands = [b" ".join([b"MAIL", b"FROM:" + quote_address(sender).encode("ascii"),
                               *(o.encode("ascii") for o in mail_options)])]
        commands += [b" ".join([b"RCPT", b"TO:" + quote_address(r).encode("ascii"),
                                *(o.encode("ascii") for o in rcpt_options)])
                     for r in recipients]
        commands.append(b"DATA")
        stages = ["mail"] + ["rcpt"] * len(recipients) + ["data"]
        try:
            async with protocol.exclusive():
                protocol.write_commands(commands)
                reply, refusal = await self._read_replies(protocol, stages, sender, recipients)
                if refusal is not None:
                    if reply.code == SMTPStatus.start_input:
                        # DATA was accepted although a command before it was refused. Sending
                        # anything, even the lone dot RFC 2920 suggests, could deliver an
                        # empty message to the recipients that were accepted; a message
                        # without its final dot is never delivered (RFC 5321 §4.1.1.4).
                        self.close()
                    raise refusal
                try:
                    protocol.write_message(message)
                    final = await protocol.read_response(timeout=data_timeout)
                except (OSError, ssl.SSLError, aiosmtplib.SMTPServerDisconnected,
                        aiosmtplib.SMTPTimeoutError) as exc:
                    self.close()
                    raise PipelineFailure("data", exc) from None
        except (OSError, ssl.SSLError, aiosmtplib.SMTPServerDisconnected) as exc:
            # Writing the commands failed, or the connection was already gone: no command
            # reached the server.
            self.close()
            raise PipelineFailure("mail", exc) from None
        if final.code != SMTPStatus.completed:
            raise PipelineFailure("data", aiosmtplib.SMTPDataError(final.code, final.message))
        return final

    async def _read_replies(self, protocol: PipeliningProtocol, stages: Sequence[str],
                            sender: str, recipients: Sequence[str],
                            ) -> tuple[SMTPResponse, PipelineFailure | None]:
        """Read one reply per stage; return the last one and the first refusal, if any."""
        refusal: PipelineFailure | None = None
        reply = SMTPResponse(SMTPStatus.invalid_response.value, "")
        for index, stage in enumerate(stages):
            try:
                reply = await protocol.read_response(timeout=self.timeout)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
                # The replies are out of step now: never reuse the connection. A refusal
                # read before it broke is the answer, as it would have been unpipelined.
                self.close()
                raise refusal or PipelineFailure(stage, exc) from None
            refusal = refusal or _refusal(stage, reply, sender, recipients, index)
            if reply.code == SMTPStatus.domain_unavailable:
                # 421: the server closes the connection (RFC 5321 §3.8); so does aiosmtplib.
                self.close()
                raise refusal or PipelineFailure(
                    stage, aiosmtplib.SMTPResponseException(reply.code, reply.message))
        return reply, refusal


def _refusal(stage: str, reply: SMTPResponse, sender: str, recipients: Sequence[str],
             index: int) -> PipelineFailure | None:
    """The exception aiosmtplib's ``mail()``, ``rcpt()`` or ``data()`` raises for ``reply``."""
    error: aiosmtplib.SMTPResponseException
    if stage == "mail":
        if reply.code == SMTPStatus.completed:
            return None
        error = aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    elif stage == "rcpt":
        if reply.code in (SMTPStatus.completed, SMTPStatus.will_forward):
            return None
        error = aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipients[index - 1])
    else:
        if reply.code == SMTPStatus.start_input:
            return None
        error = aiosmtplib.SMTPDataError(reply.code, reply.message)
    return PipelineFailure(stage, error)
