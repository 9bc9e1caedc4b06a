"""Credential providers that need no sign-in: no authentication, or a user name and password."""

from __future__ import annotations

from ..config import Config
from .base import Credentials


class NoAuth:
    """Send without authenticating (a relay that trusts the host)."""

    async def credentials(self, account: str, *, force_refresh: bool = False) -> Credentials:
        """Always no credentials."""
        return Credentials("none")


class PasswordAuth:
    """SMTP AUTH PLAIN/LOGIN with ``[auth] username`` and a password from a file or the env."""

    def __init__(self, config: Config) -> None:
        self._config = config

    async def credentials(self, account: str, *, force_refresh: bool = False) -> Credentials:
        """The configured user name (or the sending mailbox) and the password, read now."""
        username = self._config.auth.username or account
        return Credentials("password", username, self._config.smtp_password())
