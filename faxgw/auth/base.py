"""What the transport asks of a credential provider, whatever the auth method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one SMTP session authenticates with.

    ``secret`` is a password or an OAuth2 access token; it is kept out of ``repr`` so that a
    logged or raised object never shows it.
    """

    mechanism: Literal["none", "password", "xoauth2"]
    username: str = ""
    secret: str = field(default="", repr=False)


class CredentialProvider(Protocol):
    """Gives the credentials for a sending mailbox before each SMTP session.

    Raises :class:`faxgw.errors.AuthError` (code 361, 370, …) when a person must act, and
    :class:`faxgw.errors.ConnectError` (360) when the identity provider cannot be reached.
    """

    async def credentials(self, account: str, *, force_refresh: bool = False) -> Credentials:
        """Credentials for ``account`` (the sending mailbox); ``force_refresh`` after a 535."""
        ...
