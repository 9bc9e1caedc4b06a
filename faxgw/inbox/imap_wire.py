"""The IMAP wire details under :mod:`faxgw.inbox.imap`: aioimaplib made safe for the gateway,
and the parsing of the answers it hands back as lines.

aioimaplib is used as it is, with three corrections in a subclass of its protocol:

- it logs every command it sends at DEBUG, and scrubs only the raw secret: the base64 XOAUTH2
  string (which holds the token) and a quoted password with a ``"`` in it would be logged.
  Here a command with a secret is logged by name only;
- when the server refuses an XOAUTH2 token it sends a challenge (``+ <base64 JSON error>``)
  and waits for the client's empty answer before its ``NO`` (RFC 7628, Google's and
  Microsoft's XOAUTH2); aioimaplib does not answer it, so the command would hang until its
  timeout. Here the empty line is sent;
- a lost connection leaves its commands waiting for their timeout; here they fail at once.

Its XOAUTH2 command is replaced as well (:meth:`ImapClient.xoauth2`): aioimaplib's encodes
the mailbox name as ASCII only.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any

import aioimaplib

log = logging.getLogger(__name__)

_FETCH_LINE = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_LITERAL = re.compile(rb"\{(\d+)\}$")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")


class ConnectionLost(aioimaplib.AioImapException):
    """The server closed the connection (or it broke) while a command waited."""

    def __init__(self) -> None:
        super().__init__("the connection to the IMAP server was lost")


class _Protocol(aioimaplib.IMAP4ClientProtocol):
    """aioimaplib's protocol with the corrections described in the module docstring."""

    lost = False

    def send(self, line: str, scrub: str | None = None) -> None:
        if scrub:
            # "TAG AUTHENTICATE XOAUTH2 …" / "TAG LOGIN …": name the command, never the rest.
            log.debug("sending %s", " ".join(line.split()[:2]))
        else:
            log.debug("sending %s", line)
        assert self.transport is not None
        self.transport.write(f"{line}\r\n".encode())

    def _continuation(self, line: bytes) -> None:
        pending = self.pending_sync_command
        if pending is not None and pending.name == "AUTHENTICATE":
            # The server's error challenge: answer with an empty line to get its NO.
            assert self.transport is not None
            self.transport.write(b"\r\n")
            return
        super()._continuation(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiting = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in waiting:
            if command is not None:
                # aioimaplib's own way to end a command with an error (see its timeouts).
                command._exception = ConnectionLost()
                command.close(b"connection lost", "KO")
        super().connection_lost(exc)


class ImapClient(aioimaplib.IMAP4_SSL):
    """aioimaplib's implicit-TLS client with :class:`_Protocol`."""

    protocol: _Protocol

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(local_loop.create_connection(
            lambda: self.protocol, host, port, ssl=ssl_context, server_hostname=host))

    @property
    def alive(self) -> bool:
        """Whether the connection is still open (the server may have closed it meanwhile)."""
        transport = self.protocol.transport
        return not self.protocol.lost and transport is not None and not transport.is_closing()

    async def xoauth2(self, user: str, token: str) -> aioimaplib.Response:  # type: ignore[override]
        """``AUTHENTICATE XOAUTH2`` with the initial response (SASL-IR). aioimaplib's own
        encodes the string as ASCII only; this one takes any mailbox name."""
        protocol = self.protocol
        command = aioimaplib.Command("AUTHENTICATE", protocol.new_tag(), "XOAUTH2",
                                     xoauth2_string(user, token), loop=protocol.loop)
        response = await asyncio.wait_for(protocol.execute(command, scrub=token), self.timeout)
        if response.result == "OK":
            protocol.state = aioimaplib.AUTH
        return response

    async def refresh_capabilities(self) -> None:
        """Ask CAPABILITY again: a server advertises MOVE, UIDPLUS, … only after login."""
        await asyncio.wait_for(self.protocol.capability(), self.timeout)


# -- answers ---------------------------------------------------------------------------------


def text_of(response: Any) -> str:
    """The server's words in a tagged answer, for messages (never holds a secret)."""
    lines = [line for line in response.lines if isinstance(line, bytes | bytearray)]
    last = bytes(lines[-1]) if lines else b""
    return f"{response.result} {last.decode('utf-8', 'replace')}".strip()


def uidvalidity_of(response: Any) -> int:
    """UIDVALIDITY from a SELECT's answer (``* OK [UIDVALIDITY n]``)."""
    for line in response.lines:
        if isinstance(line, bytes | bytearray):
            found = _UIDVALIDITY.search(bytes(line))
            if found:
                return int(found.group(1))
    raise ValueError("the server's SELECT answer has no UIDVALIDITY")


def uids_of_search(response: Any) -> list[int]:
    """The UIDs of a ``UID SEARCH`` answer (``* SEARCH 4 5 9``; aioimaplib hands over
    ``4 5 9``, the words after ``SEARCH``, then the tagged answer's text)."""
    uids: list[int] = []
    for line in response.lines[:-1]:
        words = bytes(line).split()
        if words and words[0] == b"SEARCH":
            words = words[1:]
        uids += [int(word) for word in words if word.isdigit()]
    return uids


def messages_of_fetch(response: Any) -> dict[int, bytes]:
    """UID → message from a ``UID FETCH … (UID BODY.PEEK[])`` answer.

    aioimaplib hands each literal over as a separate item after the line that announced it
    (``1 FETCH (UID 7 BODY[] {1234}``); a server may put ``UID`` before or after the body.
    """
    found: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None
    expecting_literal = False
    for item in response.lines:
        data = bytes(item)
        if expecting_literal:
            body, expecting_literal = data, False
            continue
        if _FETCH_LINE.match(data):
            uid, body = None, None
        match = _UID.search(data)
        if match:
            uid = int(match.group(1))
        expecting_literal = bool(_LITERAL.search(data))
        if uid is not None and body is not None:
            found[uid] = body
            uid, body = None, None
    return found


def uid_set(uids: list[int]) -> str:
    """``1:3,7`` for [1, 2, 3, 7]: short commands for long runs of UIDs."""
    ranges: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0]
    for uid in ordered[1:] + [0]:
        if uid == previous + 1:
            previous = uid
            continue
        ranges.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = uid
    return ",".join(ranges)


def mailbox_name(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3):
    aioimaplib sends mailbox names as they are given."""
    encoded: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            encoded.append("&" + base64.b64encode(utf16).decode().rstrip("=")
                           .replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            encoded.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    text = "".join(encoded)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def xoauth2_string(user: str, token: str) -> str:
    """The base64 XOAUTH2 initial response: ``user=<mailbox>^Aauth=Bearer <token>^A^A``."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
