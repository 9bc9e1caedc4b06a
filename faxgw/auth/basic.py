"""Credential providers that need no sign-in: no authentication, or a user name and password."""

from __future__ import annotations

from ..config import Config
from ..domain.signin import AccountStatus, KeepaliveResult
from ..ports import Credentials, Resource
from .fingerprint import credentials_fingerprint


class _NoSignIn:
    """What a provider without a stored sign-in answers: nothing to keep alive or show."""

    def fingerprint(self) -> object:
        """Nothing that could change."""
        return None

    async def keepalive(self) -> list[KeepaliveResult]:
        """Nothing to refresh."""
        return []

    def status(self) -> list[AccountStatus]:
        """No sign-in to report."""
        return []

    def close(self) -> None:
        """Nothing to release."""


class NoAuth(_NoSignIn):
    """Send without authenticating (a relay that trusts the host)."""

    async def credentials(self, account: str, *, resource: Resource = Resource.SMTP,
                          force_refresh: bool = False) -> Credentials:
        """Always no credentials."""
        return Credentials("none")


class PasswordAuth(_NoSignIn):
    """SMTP AUTH PLAIN/LOGIN with ``[auth] username`` and a password from a file or the env."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def fingerprint(self) -> object:
        """Changes when the password file or the password in the environment changes."""
        return credentials_fingerprint(self._config)

    async def credentials(self, account: str, *, resource: Resource = Resource.SMTP,
                          force_refresh: bool = False) -> Credentials:
        """The configured user name (or the sending mailbox) and the password, read now."""
        username = self._config.auth.username or account
        return Credentials("password", username, self._config.smtp_password())
