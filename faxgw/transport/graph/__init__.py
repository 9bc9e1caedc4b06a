"""The Microsoft Graph transport: httpx sessions, the answer table, the TLS settings.

:class:`GraphTransport` is the adapter behind the :class:`~faxgw.ports.Transport` port for
``[transport] kind = "graph"``: Graph ``sendMail`` with the same email the SMTP path builds
(as MIME, or as JSON when no copy may stay in Sent Items), for tenants where SMTP AUTH is off.
The engine never sees httpx.
"""

from __future__ import annotations

import contextlib

from ...config import GraphConfig
from ...domain.errors import ConfigError
from ...ports import CredentialProvider
from .answers import RULES, Answer, classify_answer, parse_answer
from .check import MailboxCheck, Verdict
from .message import GraphMessage, from_mime
from .session import MAX_SENDMAIL_BASE64, GraphSession, translate_answer, translate_network
from .tls import tls_context

__all__ = ["MAX_SENDMAIL_BASE64", "RULES", "Answer", "GraphMessage", "GraphSession",
           "GraphTransport", "MailboxCheck", "Verdict", "classify_answer", "from_mime",
           "parse_answer", "tls_context", "translate_answer", "translate_network"]


class GraphTransport:
    """Graph sessions for each sending mailbox, authenticated with Graph tokens."""

    name = "graph"

    def __init__(self, settings: GraphConfig, credentials: CredentialProvider) -> None:
        self.settings = settings
        self.credentials = credentials

    def session(self, account: str) -> GraphSession:
        """A new session for ``account`` (opened by its ``open``)."""
        return GraphSession(self.settings, self.credentials, account)

    def warm(self) -> None:
        """Load the trust store now (off the event loop); a bad ``ca_file`` is reported when
        the first session opens."""
        with contextlib.suppress(ConfigError):
            tls_context(self.settings)
