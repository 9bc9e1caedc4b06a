"""SMTP submission with aiosmtplib: one authenticated session sends many messages.

:class:`SmtpSession` is the SMTP adapter's :class:`~faxgw.ports.Session`. This module is the
one boundary where aiosmtplib's and ssl's exceptions become faxgw's, classified once by the
reply table (:func:`translate`). A session is opened with TLS as ``[smtp] security`` says
(STARTTLS is required, never optional, when configured; certificates are validated with TLS
1.2 as the minimum) and only then authenticated, so credentials never cross a plaintext
connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence

import aiosmtplib

from ...config import SmtpConfig
from ...domain import codes
from ...domain.disposition import Disposition
from ...domain.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    DeliveryError,
    PermanentError,
    TransientError,
)
from ...ports import Accepted, CredentialProvider, Credentials
from .pipelining import PipelineFailure, PipeliningSMTP
from .replies import classify_reply
from .tls import tls_context

log = logging.getLogger("faxgw.transport")

#: Assumed slowest upload rate: the DATA timeout grows with the message (the reply to the
#: final dot comes only after the whole message has been uploaded).
_MIN_UPLOAD_BYTES_PER_SECOND = 50_000


def _reply_text(code: int, message: str) -> str:
    return f"{code} {message}".strip()


def translate(exc: BaseException, *, stage: str,
              credentials_kind: str = "none") -> DeliveryError:
    """Turn an aiosmtplib/ssl/OS exception into faxgw's, classified by the one table.

    ``stage`` is where it happened: ``connect``, ``auth``, ``mail``, ``rcpt`` or ``data``.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = _reply_text(exc.code, exc.message)
        rule = classify_reply(exc.code, exc.message)
        code = rule.code
        if rule.disposition is Disposition.AUTH and credentials_kind == "password" and (
            code == codes.SIGN_IN_AGAIN
        ):
            code = codes.AUTH_REJECTED
        text = f"{stage}: the server replied {reply}"
        kind: type[DeliveryError] = TransientError
        if rule.disposition is Disposition.AUTH:
            kind = AuthError
        elif rule.disposition is Disposition.PERMANENT:
            kind = PermanentError
        elif isinstance(exc, aiosmtplib.SMTPConnectResponseError):
            kind = ConnectError
        return kind(text, code=code, reply=reply, disposition=rule.disposition,
                    retry_after=rule.retry_after)
    if stage == "data" and isinstance(
        exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)
    ):
        # The message data may have reached the server before the connection broke:
        # it may have been accepted. Retrying gives at-least-once delivery.
        return TransientError(
            f"data: connection lost before the server confirmed the message ({_short(exc)}); "
            "it may have been delivered",
            code=codes.NO_CONNECTION,
            ambiguous=True,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectError(
            f"{stage}: the server's certificate could not be verified ({exc.verify_message}); "
            "check [smtp] host and ca_file",
            code=codes.NO_CONNECTION,
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return ConnectError(f"{stage}: the server did not answer in time ({_short(exc)})",
                            code=codes.NO_CONNECTION)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | ssl.SSLError):
        return ConnectError(f"{stage}: {_short(exc)}", code=codes.NO_CONNECTION)
    raise exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class SmtpSession:
    """One connection to the mail server for one sending mailbox, reused for many messages.

    Use as ``async with SmtpSession(...) as session: await session.send(...)``.
    """

    def __init__(self, settings: SmtpConfig, credentials: CredentialProvider, account: str,
                 *, require_tls_for_auth: bool = True) -> None:
        self.settings = settings
        self.account = account
        self._provider = credentials
        self._require_tls_for_auth = require_tls_for_auth
        self._smtp: PipeliningSMTP | None = None
        self.messages_sent = 0

    @property
    def usable(self) -> bool:
        """Whether the connection is open and can take another message."""
        return self._smtp is not None and self._smtp.is_connected

    async def __aenter__(self) -> SmtpSession:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _client(self) -> PipeliningSMTP:
        security = self.settings.security
        return PipeliningSMTP(
            hostname=self.settings.host,
            port=self.settings.port,
            use_tls=security == "tls",
            # True, not None: STARTTLS is required; a server that does not offer it is an
            # error, never a silent fallback to plaintext.
            start_tls=security == "starttls",
            validate_certs=self.settings.verify_certificate,
            tls_context=tls_context(self.settings) if security != "none" else None,
            timeout=self.settings.timeout_seconds,
        )

    async def open(self) -> None:
        """Connect, secure the connection, and authenticate as ``account``."""
        credentials = await self._provider.credentials(self.account)
        if credentials.kind != "none" and self.settings.security == "none" and (
            self._require_tls_for_auth
        ):
            raise ConfigError(
                "[smtp] security: \"none\" would send credentials in clear text; use "
                "\"starttls\" or \"tls\""
            )
        smtp = self._client()
        try:
            await smtp.connect()
        except Exception as exc:  # noqa: BLE001 - translated at this one boundary
            await _release(smtp, smtp.transport)
            raise translate(exc, stage="connect") from None
        self._smtp = smtp
        try:
            await self._authenticate(credentials)
        except BaseException:
            await self.close()
            raise

    async def _authenticate(self, credentials: Credentials) -> None:
        assert self._smtp is not None
        if credentials.kind == "none":
            return
        try:
            await self._auth_once(credentials)
        except aiosmtplib.SMTPAuthenticationError as exc:
            error = translate(exc, stage="auth", credentials_kind=credentials.kind)
            # Exchange answers an expired or revoked token with 535 5.7.3: take a fresh
            # token once and try again; a second refusal is a real authentication failure.
            if credentials.kind != "bearer" or error.code != codes.SIGN_IN_AGAIN:
                raise error from None
            log.info("↻ %s: token refused (%s), refreshing once", self.account, exc.code)
            fresh = await self._provider.credentials(self.account, force_refresh=True)
            try:
                await self._auth_once(fresh)
            except Exception as again:  # noqa: BLE001
                raise translate(again, stage="auth", credentials_kind=fresh.kind) from None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, stage="auth", credentials_kind=credentials.kind) from None

    async def _auth_once(self, credentials: Credentials) -> None:
        smtp = self._smtp
        assert smtp is not None
        if credentials.kind == "bearer":
            await smtp.auth_xoauth2(credentials.username, credentials.secret)
            return
        # One mechanism, one try: aiosmtplib's login() walks through every mechanism on
        # failure, which would turn one refusal into several (and a lockout sooner).
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()  # auth_plain/auth_login do not send the EHLO after STARTTLS
        methods = smtp.server_auth_methods
        if "plain" in methods:
            await smtp.auth_plain(credentials.username, credentials.secret)
        elif "login" in methods:
            await smtp.auth_login(credentials.username, credentials.secret)
        else:
            raise ConnectError(
                f"auth: the server offers no password mechanism (AUTH {' '.join(methods) or '-'})",
                code=codes.NO_CONNECTION,
            )

    async def send(self, message: bytes, *, sender: str, recipients: Sequence[str],
                   envelope_id: str = "") -> Accepted:
        """Submit one message; return the server's final reply (e.g. ``250 2.0.0 OK``).

        With ``envelope_id``, and when the server offers DSN (RFC 3461), a bounce is asked
        for on failure or delay only, with the original's headers and ``envelope_id``:
        ``ENVID``, ``RET=HDRS``, ``NOTIFY=FAILURE,DELAY``. When it offers PIPELINING (RFC
        2920), MAIL, RCPT and DATA go in one write; every reply is classified as it would be
        one command at a time."""
        if self._smtp is None or not self._smtp.is_connected:
            raise ConnectError("the connection to the mail server is closed",
                               code=codes.NO_CONNECTION)
        smtp = self._smtp
        stage = "mail"
        mail_options: list[str] = []
        rcpt_options: list[str] = []
        if envelope_id and smtp.supports_extension("dsn"):
            mail_options = ["RET=HDRS", f"ENVID={xtext(envelope_id)}"]
            rcpt_options = ["NOTIFY=FAILURE,DELAY"]
        timeout = self.settings.timeout_seconds + len(message) / _MIN_UPLOAD_BYTES_PER_SECOND
        try:
            if smtp.supports_pipelining:
                # RFC 2920: MAIL, RCPT and DATA in one round trip instead of three.
                response = await smtp.send_pipelined(
                    sender, recipients, message, mail_options=mail_options,
                    rcpt_options=rcpt_options, data_timeout=timeout)
            else:
                await smtp.mail(sender, options=mail_options)
                stage = "rcpt"
                for recipient in recipients:
                    await smtp.rcpt(recipient, options=rcpt_options)
                stage = "data"
                response = await smtp.data(message, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - translated at this one boundary
            if isinstance(exc, PipelineFailure):
                stage, exc = exc.stage, exc.error
            error = translate(exc, stage=stage)
            if smtp.is_connected and not isinstance(error, ConnectError) and not error.ambiguous:
                # Leave the session clean for the next message.
                try:
                    await smtp.rset()
                except Exception:  # noqa: BLE001
                    smtp.close()
            raise error from None
        self.messages_sent += 1
        return Accepted(_reply_text(response.code, response.message))

    async def close(self) -> None:
        """Say QUIT politely; close regardless."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        transport = smtp.transport
        if smtp.is_connected:
            try:
                await smtp.quit()
            except Exception:  # noqa: BLE001 - the session is over either way
                pass
        await _release(smtp, transport)


async def _release(smtp: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None) -> None:
    """Close the socket now, not after a TLS shutdown handshake the server may never finish.

    A graceful TLS close waits for the peer's close_notify; a process that ends right after
    (``faxgw run --once``) would leave the socket to the garbage collector. After QUIT nothing
    more is owed to the server, so abort and let the loop run the close once.
    """
    smtp.close()
    if transport is not None:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        await asyncio.sleep(0)


def xtext(text: str) -> str:
    """``text`` as RFC 3461 xtext: ``+`` and ``=`` and any character outside ``!``..``~``
    as ``+`` and two hex digits."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}"
                   for c in text.encode("ascii", "replace").decode("ascii"))
