"""A real SMTP server for tests, benchmarks and the demo, shaped like Exchange Online.

:class:`FaxSMTPServer` listens on a real loopback socket (aiosmtpd), with real TLS from a
throw-away trustme CA, and answers the way ``smtp.office365.com:587`` does: STARTTLS
first, ``AUTH LOGIN PLAIN XOAUTH2`` only after it, Exchange's reply texts and per-mailbox
limits. Faults are scripted in the *server* (:class:`~faxgw.testing.smtp_faults.FaultPlan`);
nothing here touches the client, so the code under test runs unchanged.

It runs in a background thread with its own event loop, so a synchronous test and code
under test that calls ``asyncio.run(...)`` in the main thread can both talk to it::

    with FaxSMTPServer(users={"fax@example.com": "secret"}) as server:
        server.faults.reply("DATA_END", "554 5.2.252 SendAsDenied", times=1)
        ...  # send with aiosmtplib to server.host:server.port, trusting server.ca_file
        assert server.messages[0].message["Subject"] == "Fax"

A tiny command line serves humans and the demo::

    python -m faxgw.testing.smtp_server --port 2525 --maildir out/ --user fax:secret

Modules: :mod:`~faxgw.testing.smtp_protocol` (one connection), :mod:`~faxgw.testing.smtp_ledger`
(records and limits), :mod:`~faxgw.testing.smtp_faults` (the fault plan),
:mod:`~faxgw.testing.smtp_flights` (when commands arrived, which came in one write),
:mod:`~faxgw.testing.smtp_cli` (the command line).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

import trustme

from faxgw.testing.smtp_faults import FaultPlan
from faxgw.testing.smtp_ledger import Ledger, Received
from faxgw.testing.smtp_protocol import ExchangeLikeSMTP, ProtocolSettings, TokenValidator

__all__ = ["EXCHANGE_MESSAGE_SIZE_LIMIT", "FaxSMTPServer"]

EXCHANGE_MESSAGE_SIZE_LIMIT = 37_748_736
"""The ``SIZE`` Exchange Online advertises: 36 MiB, i.e. its 35 MB limit after MIME encoding."""

TlsMode = Literal["starttls", "tls", "none"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_DRAIN_TIMEOUT = 5.0


def _make_tls(directory: Path, hostname: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh trustme CA; return it and the CA's PEM file."""
    ca = trustme.CA()
    # Clients connect by name or by address; the certificate covers both.
    cert = ca.issue_cert(*dict.fromkeys(["localhost", "127.0.0.1", hostname]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no client certificates asked for
    # Exchange Online refuses TLS 1.0/1.1 (with "421 4.7.66" after the handshake); here
    # the handshake itself fails, which is what an up-to-date client sees first anyway.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert.configure_cert(context)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


class FaxSMTPServer:
    """An Exchange-like SMTP submission server on ``127.0.0.1``, for tests.

    Args:
        tls: ``"starttls"`` (plain greeting; anything but EHLO/NOOP/QUIT/STARTTLS before
            STARTTLS gets aiosmtpd's ``530 Must issue a STARTTLS command first``, HELO
            included; AUTH advertised only after it), ``"tls"`` (implicit TLS
            from the first byte) or ``"none"`` (plaintext, AUTH offered in clear so a test
            can see whether a client would send credentials; see
            :attr:`credentials_seen_in_clear`).
        users: PLAIN/LOGIN accounts, user name -> password. ``None``: no PLAIN/LOGIN.
        token_validator: decides XOAUTH2 as ``(user, bearer token) -> bool | str``; a
            string is the reply line to send (``235 ...`` accepts, anything else refuses).
            ``None``: XOAUTH2 not offered.
        auth_required: if any authentication is configured, MAIL/RCPT/DATA before AUTH
            get ``530 5.7.57 Client not authenticated to send mail``.
        reply_delay: seconds between a command's arrival and its reply (the greeting
            included: from the connection), to model a distant server; other connections are
            served meanwhile. Commands pipelined together wait once, not once each.
        max_connections_per_user: concurrent authenticated sessions allowed per user (3 at
            Exchange Online); the next one's AUTH gets ``432 4.3.2 Concurrent connections
            limit exceeded...`` and counts in :attr:`refused_connections`.
        messages_per_minute_per_user: messages accepted per user in any rolling 60 s (30 at
            Exchange Online); the next one gets ``432 4.3.2 STOREDRV.ClientSubmit; sender
            thread limit exceeded`` after its data and counts in :attr:`rate_refusals`.
        maildir: if set, each accepted message is also written to ``<maildir>/<n>.eml``.
        hostname: the name in the greeting and EHLO reply (also in the certificate).
        port: TCP port; 0 (the default) picks a free one.
        clock: time source for the rate window; tests pass a fake to advance time.
        data_size_limit: the advertised ``SIZE``; bigger messages get ``552``.
        dsn: advertise ``DSN`` (RFC 3461) and accept its parameters (``ENVID``, ``RET`` on
            MAIL; ``NOTIFY``, ``ORCPT`` on RCPT), recorded with each message received.
        pipelining: advertise ``PIPELINING`` (RFC 2920), as Exchange Online does. aiosmtpd
            reads commands one line at a time from a buffered stream, so it takes pipelined
            commands as they come; :attr:`flights` shows which commands arrived together.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        *,
        tls: TlsMode = "starttls",
        users: Mapping[str, str] | None = None,
        token_validator: TokenValidator | None = None,
        auth_required: bool = True,
        reply_delay: float = 0.0,
        max_connections_per_user: int | None = None,
        messages_per_minute_per_user: int | None = None,
        maildir: Path | None = None,
        hostname: str = "localhost",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        data_size_limit: int = EXCHANGE_MESSAGE_SIZE_LIMIT,
        dsn: bool = False,
        pipelining: bool = True,
    ) -> None:
        if tls not in ("starttls", "tls", "none"):
            raise ValueError(f"tls must be 'starttls', 'tls' or 'none', not {tls!r}")
        if reply_delay < 0:
            raise ValueError("reply_delay must be >= 0")
        for name, limit in (
            ("max_connections_per_user", max_connections_per_user),
            ("messages_per_minute_per_user", messages_per_minute_per_user),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be >= 1 or None")
        self.tls: TlsMode = tls
        self.users: dict[str, str] | None = dict(users) if users is not None else None
        self.token_validator = token_validator
        self.auth_required = auth_required and bool(users or token_validator)
        self.reply_delay = reply_delay
        self.maildir = Path(maildir) if maildir is not None else None
        self.hostname = hostname
        self.data_size_limit = data_size_limit
        self.dsn = dsn
        self.pipelining = pipelining
        self.faults = FaultPlan()

        self._ledger = Ledger(
            max_connections_per_user=max_connections_per_user,
            messages_per_minute_per_user=messages_per_minute_per_user,
            clock=clock,
            maildir=self.maildir,
        )
        # The same list objects the server appends to (under the ledger's lock).
        self.messages: list[Received] = self._ledger.messages
        """Accepted messages, in order of acceptance."""
        self.dropped_messages: list[Received] = self._ledger.dropped_messages
        """Messages received in full whose connection a ``drop("DATA_END")`` fault cut."""
        self.commands: list[tuple[int, str]] = self._ledger.commands
        """``(session_id, command line)`` for every command; AUTH payloads as ``***``."""
        self.replies: list[tuple[int, str]] = self._ledger.replies
        """``(session_id, reply)``; the lines of a multi-line reply joined with ``\\n``."""
        self.errors: list[BaseException] = self._ledger.errors
        """Unexpected exceptions inside the server (answered ``451 4.3.0``); tests assert empty."""

        self._requested_port = port
        self._port: int | None = None
        self._ca_file: Path | None = None
        self._tempdir: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._listening = threading.Event()
        self._start_error: BaseException | None = None

    # -- what the server saw ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the server is not running: call start() first")
        return self._port

    @property
    def ca_file(self) -> Path:
        """PEM file of the CA that signed the server certificate (exists while running)."""
        if self._ca_file is None:
            raise RuntimeError("the server is not running: call start() first")
        return self._ca_file

    @property
    def flights(self) -> list[tuple[int, tuple[str, ...]]]:
        """``(session_id, command lines)`` per write of the client, in order of arrival: a
        client that pipelines sends ``MAIL``, ``RCPT`` and ``DATA`` in one flight."""
        return self._ledger.flights()

    @property
    def max_concurrent_sessions(self) -> int:
        """High-water mark of simultaneous connections."""
        return self._ledger.max_concurrent_sessions

    @property
    def max_concurrent_sessions_by_user(self) -> dict[str, int]:
        """High-water mark of simultaneous authenticated sessions, per user."""
        return dict(self._ledger.max_concurrent_sessions_by_user)

    @property
    def active_sessions(self) -> int:
        """Connections open right now."""
        return self._ledger.active_sessions

    @property
    def refused_connections(self) -> int:
        """Sessions refused at AUTH by ``max_connections_per_user``."""
        return self._ledger.refused_connections

    @property
    def rate_refusals(self) -> int:
        """Messages refused by ``messages_per_minute_per_user``."""
        return self._ledger.rate_refusals

    @property
    def credentials_seen_in_clear(self) -> bool:
        """Whether any AUTH command arrived on a connection without TLS."""
        return self._ledger.credentials_seen_in_clear

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` is true, e.g. until a closed session is counted.

        A client's ``quit()`` returns when it has read ``221``; the server notices the
        closed connection a moment later. Raises TimeoutError after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition still false after {timeout} s")
            time.sleep(0.005)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> FaxSMTPServer:
        """Start serving; return once the socket listens. Returns the server itself."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        self._tempdir = tempfile.mkdtemp(prefix="faxgw-smtp-")
        context, self._ca_file = _make_tls(Path(self._tempdir), self.hostname)
        self._listening.clear()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._run, args=(context,), name="FaxSMTPServer", daemon=True
        )
        self._thread.start()
        if not self._listening.wait(_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the SMTP server did not start within {_START_TIMEOUT} s")
        if self._start_error is not None or self._port is None:
            error = self._start_error
            self.stop()
            raise RuntimeError(f"the SMTP server could not start: {error}") from error
        return self

    def stop(self) -> None:
        """Close every connection, stop listening and join the server thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is not None:
            if thread.is_alive() and loop is not None and stopping is not None:
                loop.call_soon_threadsafe(stopping.set)
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError(f"the SMTP server thread did not stop within {_STOP_TIMEOUT} s")
        self._thread = self._loop = self._stopping = None
        self._port = None
        self._ca_file = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> FaxSMTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, context: ssl.SSLContext) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(context))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._listening.set()  # never leave start() waiting if we died early

    async def _serve(self, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        settings = ProtocolSettings(
            hostname=self.hostname,
            tls_mode=self.tls,
            tls_context=context,
            users=self.users,
            token_validator=self.token_validator,
            auth_required=self.auth_required,
            reply_delay=self.reply_delay,
            data_size_limit=self.data_size_limit,
            dsn=self.dsn,
            pipelining=self.pipelining,
            faults=self.faults,
            ledger=self._ledger,
        )
        try:
            server = await loop.create_server(
                lambda: ExchangeLikeSMTP(settings),
                host=self.host,
                port=self._requested_port,
                ssl=context if self.tls == "tls" else None,
            )
        except OSError as error:  # e.g. the port is taken
            self._start_error = error
            self._listening.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        self._stopping = stopping
        self._listening.set()
        try:
            await stopping.wait()
        finally:
            server.close()
            for connection in list(settings.live):
                connection.abort_connection()
            await server.wait_closed()
            # connection_lost() runs in a later loop iteration; let every connection finish
            # so no transport outlives the loop (that would be a ResourceWarning).
            deadline = loop.time() + _DRAIN_TIMEOUT
            while settings.live and loop.time() < deadline:
                await asyncio.sleep(0.01)
            leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)


if __name__ == "__main__":
    # The command line lives in its own module; this keeps `python -m` on the name people
    # know. (Imported here, not at the top: smtp_cli imports this module.)
    from faxgw.testing.smtp_cli import main

    raise SystemExit(main())
