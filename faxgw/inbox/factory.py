"""Which inbox reader ``[inbox] method`` asks for: :func:`open_inbox`."""

from __future__ import annotations

from ..config import Config
from ..domain.errors import ConfigError
from ..ports import CredentialProvider, Inbox


def open_inbox(config: Config, credentials: CredentialProvider, account: str) -> Inbox | None:
    """The reader of ``account``'s mailbox, not connected yet (it connects when first used);
    None when ``[inbox] method = "none"`` (reports are not read)."""
    method = config.inbox.method
    if method == "none":
        return None
    # Each reader is imported when chosen: aioimaplib and httpx cost a start-up that does
    # not read the mailbox nothing.
    if method == "imap":
        from .imap import ImapInbox
        return ImapInbox(config.inbox, credentials, account)
    if config.auth.method != "oauth2":
        raise ConfigError(f'[inbox] method = "graph" needs [auth] method = "oauth2" (it is '
                          f'"{config.auth.method}"): Graph takes OAuth2 tokens only')
    from .graph import GraphInbox
    return GraphInbox(config, credentials, account)
