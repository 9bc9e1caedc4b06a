"""Reading the sending mailbox for the fax service's reports and bounces (the
:class:`~faxgw.ports.Inbox` port): :mod:`~faxgw.inbox.imap` (aioimaplib over implicit TLS,
XOAUTH2 or a password) and :mod:`~faxgw.inbox.graph` (Microsoft Graph over httpx, delta
links), chosen by :func:`~faxgw.inbox.factory.open_inbox` from ``[inbox] method``."""

from __future__ import annotations

from .factory import open_inbox
from .graph import GraphInbox
from .imap import ImapInbox

__all__ = ["GraphInbox", "ImapInbox", "open_inbox"]
