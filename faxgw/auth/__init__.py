"""Credential providers: none, password, oauth2 (msal, token cache)."""

from __future__ import annotations

from ..config import Config
from ..domain.errors import ConfigError
from ..ports import CredentialProvider, Credentials
from .basic import NoAuth, PasswordAuth
from .fingerprint import credentials_fingerprint

__all__ = ["CredentialProvider", "Credentials", "credentials_fingerprint", "make_provider"]


def make_provider(config: Config) -> CredentialProvider:
    """The credential provider ``[auth] method`` names."""
    method = config.auth.method
    if method == "none":
        return NoAuth()
    if method == "password":
        return PasswordAuth(config)
    if method == "oauth2":
        from .oauth2 import OAuth2Provider

        return OAuth2Provider(config)
    raise ConfigError(f"[auth] method: unknown method {method!r}")
