"""The aiosmtpd plumbing under each test-server connection: its handler hooks and its session.

aiosmtpd calls a *handler* object's ``handle_*`` hooks and makes one ``Session`` per
connection; :class:`~faxgw.testing.smtp_protocol.ExchangeLikeSMTP` does the real work, so the
handler here only forwards to it (EHLO keywords, end of DATA, errors) and the session only
silences a deprecation warning. Kept apart from the connection class, which is large enough.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from faxgw.testing.smtp_ledger import Ledger

if TYPE_CHECKING:
    from faxgw.testing.smtp_protocol import ExchangeLikeSMTP

SERVER_ERROR_REPLY = "451 4.3.0 Temporary server error"


class QuietSession(Session):
    """aiosmtpd's Session, minus a log warning on every successful AUTH.

    aiosmtpd 1.4's ``smtp_AUTH`` always sets the deprecated ``Session.login_data``, whose
    setter logs "login_data is deprecated" each time; a test log full of those hides the
    lines that matter.
    """

    @property  # type: ignore[override]
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class Handler:
    """aiosmtpd hooks; the work is done by the connection (the ``server`` argument)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # The 5-argument hook replaces aiosmtpd's own bookkeeping, so it must remember the
        # client's name itself. An "AUTH" keyword with no mechanism (no auth configured)
        # would be a lie; leave it out.
        session.host_name = hostname
        lines = [line for line in responses if line.rstrip() != "250-AUTH"]
        if cast("ExchangeLikeSMTP", server).offers_dsn:
            lines.insert(len(lines) - 1, "250-DSN")
        if cast("ExchangeLikeSMTP", server).offers_pipelining:
            lines.insert(len(lines) - 1, "250-PIPELINING")
        return lines

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await cast("ExchangeLikeSMTP", server).finish_message(envelope)

    async def handle_exception(self, error: Exception) -> str:
        # A TLS handshake the client aborted (e.g. it rejected our certificate) is client
        # behaviour, not a server fault; aiosmtpd closes that connection itself.
        if not isinstance(error, TLSSetupException):
            self._ledger.note_error(error)
        # Never echo the exception text: a raising token validator might quote the token.
        return SERVER_ERROR_REPLY

