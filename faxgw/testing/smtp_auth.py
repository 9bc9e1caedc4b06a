"""SMTP AUTH of the test server, answered like Exchange Online: XOAUTH2, PLAIN and LOGIN.

:class:`ExchangeAuthSMTP` is the authentication half of
:class:`~faxgw.testing.smtp_protocol.ExchangeLikeSMTP` (which inherits it and sets the state
declared here): the AUTH command with its fault point and unrecorded challenge responses,
Exchange's ``530 5.7.57`` before AUTH, the password check, SASL XOAUTH2 with the
:data:`TokenValidator`, and the per-user concurrency slot taken on success. Also here: the AUTH
replies, the AUTH line limit and :func:`parse_xoauth2`. Kept apart from the connection's life
cycle, transcript and faults (:mod:`faxgw.testing.smtp_protocol`) so each stays small.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    syntax,
)

from faxgw.testing.smtp_faults import is_reply_line
from faxgw.testing.smtp_ledger import CONCURRENCY_REPLY, Ledger

if TYPE_CHECKING:
    from faxgw.testing.smtp_protocol import ProtocolSettings

AUTH_SUCCESS_REPLY = "235 2.7.0 Authentication successful"
AUTH_FAILURE_REPLY = "535 5.7.3 Authentication unsuccessful"
NOT_AUTHENTICATED_REPLY = "530 5.7.57 Client not authenticated to send mail"

AUTH_LINE_LIMIT = 16 * 1024
"""Longest AUTH command line accepted. Tokens carrying many group claims exceed 4 KB."""

TokenValidator = Callable[[str, str], "bool | str"]
"""``(user, bearer token) -> True | False | reply line``; see
:class:`~faxgw.testing.smtp_protocol.ExchangeLikeSMTP`."""


def parse_xoauth2(response: bytes) -> tuple[str, str] | None:
    """Split a decoded SASL XOAUTH2 client response into ``(user, token)``.

    The format is ``"user=" user "\\x01auth=Bearer " token "\\x01\\x01"``
    (https://developers.google.com/gmail/imap/xoauth2-protocol, used by Exchange Online).
    Returns None if the response does not have that shape.
    """
    parts = response.split(b"\x01")
    if len(parts) != 4 or parts[2] or parts[3]:
        return None
    user_part, auth_part = parts[0], parts[1]
    if not user_part.startswith(b"user=") or not auth_part.lower().startswith(b"auth=bearer "):
        return None
    user = user_part[len(b"user=") :].decode("utf-8", "replace")
    token = auth_part[len(b"auth=bearer ") :].decode("utf-8", "replace")
    if not user or not token:
        return None
    return user, token


class ExchangeAuthSMTP(SMTP):
    """The AUTH side of one connection; see :class:`~faxgw.testing.smtp_protocol.ExchangeLikeSMTP`
    for what ``settings.token_validator`` answers mean."""

    # Set by ExchangeLikeSMTP.__init__.
    _settings: ProtocolSettings
    _ledger: Ledger
    _auth_user: str | None
    _auth_mechanism: str | None
    _in_auth_exchange: bool

    if TYPE_CHECKING:
        # Defined by ExchangeLikeSMTP (faults).
        async def _apply_fault(self, point: str) -> bool: ...

    # -- authentication --------------------------------------------------------------------

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if await self._apply_fault("AUTH"):
            return
        self._in_auth_exchange = True  # challenge responses carry credentials: not logged
        try:
            await super().smtp_AUTH(arg)
        finally:
            self._in_auth_exchange = False

    async def check_auth_needed(self, caller_method: str) -> bool:
        """Refuse MAIL/RCPT/DATA before AUTH with Exchange's reply, if auth is required."""
        assert self.session is not None
        if self._settings.auth_required and not self.session.authenticated:
            await self.push(NOT_AUTHENTICATED_REPLY)
            return True
        return False

    def _check_password(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd ``authenticator`` for PLAIN and LOGIN."""
        assert isinstance(auth_data, LoginPassword)
        user = auth_data.login.decode("utf-8", "replace")
        expected = (self._settings.users or {}).get(user)
        if expected is None or expected.encode("utf-8") != auth_data.password:
            return AuthResult(success=False, handled=False, message=AUTH_FAILURE_REPLY)
        return self._admit(user, mechanism)

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2, with an initial response (aiosmtplib) or after an empty 334."""
        validator = self._settings.token_validator
        assert validator is not None  # the mechanism is excluded without a validator
        if len(args) == 1:
            # RFC 4954 §4: no initial response, so send an empty challenge ("334 ").
            response = await self.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False, handled=True)  # 501 already sent
        else:
            try:
                response = b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(response, bytes)
        parsed = parse_xoauth2(response)
        if parsed is None:
            return AuthResult(success=False, handled=False, message=AUTH_FAILURE_REPLY)
        user, token = parsed
        verdict = validator(user, token)
        if isinstance(verdict, str):
            if not is_reply_line(verdict):
                raise ValueError("token_validator returned a string that is not a reply line")
            if verdict.startswith("235"):
                return self._admit(user, "XOAUTH2", reply=verdict)
            return AuthResult(success=False, handled=False, message=verdict)
        if verdict:
            return self._admit(user, "XOAUTH2")
        return AuthResult(success=False, handled=False, message=AUTH_FAILURE_REPLY)

    def _admit(self, user: str, mechanism: str, reply: str = AUTH_SUCCESS_REPLY) -> AuthResult:
        """Valid credentials: take a concurrency slot for ``user``, or refuse with 432."""
        if not self._ledger.admit_user(user):
            return AuthResult(success=False, handled=False, message=CONCURRENCY_REPLY)
        self._auth_user = user
        self._auth_mechanism = mechanism
        return AuthResult(success=True, message=reply, auth_data=user)
