"""The SMTP listener itself: aiosmtpd on the service's event loop, until it is told to stop.

Who may connect is decided before the greeting: a client outside ``[intake.smtp] networks``
gets ``554 5.7.1`` and the connection is closed; one with too many connections open gets
``421``. Every other decision is :class:`~faxgw.devices.handler.IntakeHandler`'s.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from ..config import Config, IntakeSmtpConfig, split_listen
from ..domain.errors import ConfigError
from .activity import Activity, activity_path
from .handler import IntakeHandler, MailboxFor, Submit
from .replies import Answer, reply
from .staging import sweep
from .users import check_user

__all__ = ["serve_smtp"]

log = logging.getLogger("faxgw.devices")

#: Messages taken at once (each is a thread writing files and a render process): a burst of
#: devices waits for a free one instead of overloading the machine.
_TAKERS = 2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Gate:
    """Who may connect: the allowed networks, and connections open per client address."""

    def __init__(self, networks: list[str], per_client: int) -> None:
        self._networks = [ipaddress.ip_network(entry, strict=False) for entry in networks]
        self._per_client = per_client
        self._open: collections.Counter[str] = collections.Counter()

    def admit(self, peer: Any) -> str | None:
        """None when ``peer`` may connect (and is counted), else the reply that refuses it."""
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            address: IPAddress = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return reply(Answer.CLIENT_NOT_ALLOWED, client=host or "this client")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:192.168.1.7 is 192.168.1.7
        if not any(address in network for network in self._networks):
            return reply(Answer.CLIENT_NOT_ALLOWED, client=address)
        if self._open[host] >= self._per_client:
            return reply(Answer.TOO_MANY_CONNECTIONS, client=address, limit=self._per_client)
        self._open[host] += 1
        return None

    def release(self, peer: Any) -> None:
        """A connection :meth:`admit` counted has ended."""
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]


class IntakeSMTP(SMTP):
    """aiosmtpd's protocol with the gate before the greeting."""

    def __init__(self, handler: IntakeHandler, gate: Gate, activity: Activity,
                 **settings: Any) -> None:
        super().__init__(handler, **settings)
        self._gate = gate
        self._activity = activity
        self._peer: Any = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a client the gate does not admit before aiosmtpd greets it."""
        if self._original_transport is None and self._peer is None:  # not STARTTLS again
            peer = transport.get_extra_info("peername")
            refusal = self._gate.admit(peer)
            if refusal is not None:
                self._refused = True
                self._activity.count("connections_refused")
                log.warning("SMTP intake: refused %s at connect: %s", peer, refusal)
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode("ascii") + b"\r\n")
                transport.close()  # after the reply is written
                return
            self._peer = peer
            self._activity.count("connections")
        super().connection_made(transport)

    async def push(self, status: Any) -> None:
        """Write a reply; aiosmtpd's own ``552`` (over ``max_message_bytes``, declared at
        MAIL or counted in the data) refuses a message the handler never sees: count it."""
        line = status.encode() if isinstance(status, str) else bytes(status)
        if line.startswith(b"552"):
            self._activity.count("messages_refused")
        await super().push(status)

    def connection_lost(self, error: Exception | None) -> None:
        """Count the connection out (aiosmtpd never saw a refused one)."""
        if self._refused:
            return
        if self._peer is not None:
            self._gate.release(self._peer)
            self._peer = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        """A refused client's end is nothing for aiosmtpd."""
        if self._refused:
            return False
        return super().eof_received()


def _tls_context(settings: IntakeSmtpConfig) -> ssl.SSLContext | None:
    if settings.certificate_file is None or settings.key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.certificate_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        # Never the key's content: only which file and why.
        raise ConfigError(f"[intake.smtp] certificate_file / key_file: cannot load "
                          f"{settings.certificate_file}, {settings.key_file}: "
                          f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}"
                          ) from None
    return context


def _authenticator(settings: IntakeSmtpConfig) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = check_user(settings.users_file, name, password)
        if not ok:
            # The name, never the password; a name with control characters is escaped.
            log.warning("SMTP intake: AUTH %s failed for user %r from %s", mechanism, name,
                        session.peer)
        # Only the name is kept in the session (for the sending mailbox), never the password.
        return AuthResult(success=ok, handled=False, auth_data=name if ok else None)
    return authenticate


async def serve_smtp(config: Config, stop: asyncio.Event, submit: Submit, *,
                     mailbox_for: MailboxFor | None = None,
                     on_listening: Callable[[tuple[str, int]], None] | None = None) -> None:
    """Listen on ``[intake.smtp] listen`` until ``stop`` is set; messages become jobs by
    ``submit``. ``mailbox_for`` names the mailbox an authenticated user's faxes are sent as
    (without it, or for a user it gives none, the gateway's own). ``on_listening`` is told
    the address bound (a port of 0 is chosen then).

    At the stop no new connection is taken and the messages being taken are finished."""
    settings = config.intake.smtp
    host, port = split_listen(settings.listen)
    executor = ThreadPoolExecutor(max_workers=_TAKERS, thread_name_prefix="faxgw-smtp")
    activity = Activity(activity_path(config), settings.listen)
    handler = IntakeHandler(config, submit, executor, mailbox_for, activity)
    gate = Gate(settings.networks, settings.max_connections_per_client)
    tls = _tls_context(settings)
    loop = asyncio.get_running_loop()
    password = settings.auth == "password"

    def protocol() -> IntakeSMTP:
        return IntakeSMTP(
            handler, gate, activity, data_size_limit=settings.max_message_bytes,
            hostname=settings.domain, ident="faxgw", tls_context=tls,
            require_starttls=settings.require_tls, timeout=settings.command_timeout,
            auth_required=password, auth_require_tls=True,
            authenticator=_authenticator(settings) if password else None,
            auth_exclude_mechanism=None if password else ["PLAIN", "LOGIN"], loop=loop)

    # What a killed service left half-taken (no 250 was given for it) goes first.
    await asyncio.to_thread(sweep, config)
    server = await loop.create_server(protocol, host=host or None, port=port)
    written = asyncio.Event()  # set once the messages under way are answered
    writer = asyncio.create_task(activity.keep_written(written))
    try:
        bound = server.sockets[0].getsockname()
        activity.listening_on(f"{bound[0]}:{bound[1]}")
        log.warning("SMTP intake listening on %s:%d for <number>@%s", bound[0], bound[1],
                    settings.domain)
        if on_listening is not None:
            on_listening((str(bound[0]), int(bound[1])))
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        # Messages being taken are finished and answered before the service ends.
        await asyncio.to_thread(executor.shutdown, True)
        written.set()
        await writer  # the last counts, marked stopped
