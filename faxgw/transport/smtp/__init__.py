"""The SMTP transport: aiosmtplib sessions (with PIPELINING where offered), the reply table,
the TLS settings.

:class:`SmtpTransport` is the adapter behind the :class:`~faxgw.ports.Transport` port: the
engine asks it for a session per sending mailbox and never sees aiosmtplib.
"""

from __future__ import annotations

import contextlib
import logging

from ...config import SmtpConfig
from ...domain.errors import ConfigError
from ...ports import CredentialProvider
from .session import SmtpSession, translate
from .tls import tls_context

__all__ = ["SmtpSession", "SmtpTransport", "tls_context", "translate"]

log = logging.getLogger("faxgw.transport")


class SmtpTransport:
    """Sessions to ``[smtp] host`` for each sending mailbox, authenticated by ``credentials``."""

    name = "smtp"

    def __init__(self, settings: SmtpConfig, credentials: CredentialProvider) -> None:
        self.settings = settings
        self.credentials = credentials
        self._warned = False

    def session(self, account: str) -> SmtpSession:
        """A new session for ``account`` (opened by its ``open``)."""
        return SmtpSession(self.settings, self.credentials, account)

    def warm(self) -> None:
        """Load the trust store now, not on the event loop when the first session opens (tens
        of milliseconds); a ``ca_file`` that cannot be loaded is reported then. Says once,
        loudly, when certificate checks are off."""
        if self.settings.security == "none":
            return
        if not self.settings.verify_certificate and not self._warned:
            self._warned = True
            log.warning("! [smtp] verify_certificate = false: the mail server's certificate is "
                        "NOT checked; anyone between here and %s can read the faxes and the "
                        "credentials", self.settings.host)
        with contextlib.suppress(ConfigError):
            tls_context(self.settings)
