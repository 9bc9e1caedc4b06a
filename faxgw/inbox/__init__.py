"""Reading the sending mailbox for the fax service's reports and bounces (the
:class:`~faxgw.ports.Inbox` port): :mod:`~faxgw.inbox.imap` (aioimaplib over implicit TLS,
XOAUTH2 or a password) and :mod:`~faxgw.inbox.graph` (Microsoft Graph over httpx, delta
links), chosen by :func:`~faxgw.inbox.factory.open_inbox` from ``[inbox] method``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .factory import open_inbox

if TYPE_CHECKING:
    from .graph import GraphInbox
    from .imap import ImapInbox

__all__ = ["GraphInbox", "ImapInbox", "open_inbox"]


def __getattr__(name: str) -> Any:
    # The readers load on first use (their clients are not small): see open_inbox.
    if name == "GraphInbox":
        from .graph import GraphInbox
        return GraphInbox
    if name == "ImapInbox":
        from .imap import ImapInbox
        return ImapInbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
