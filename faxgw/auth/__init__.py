"""Credential providers: none, password, oauth2 (msal, token cache)."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from .base import CredentialProvider, Credentials
from .basic import NoAuth, PasswordAuth

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


def credentials_fingerprint(config: Config) -> object:
    """Something that changes when the credentials change: a new sign-in rewrites the token
    cache, a new password replaces the password file. Never contains a secret."""
    import hashlib
    import os

    from ..config import PASSWORD_ENV

    paths: list[Path | None] = []
    if config.auth.method == "oauth2":
        paths.append(config.auth.token_cache)
    elif config.auth.method == "password":
        paths.append(config.auth.password_file)
    stamps: list[object] = []
    for path in paths:
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        stamps.append((st.st_mtime_ns, st.st_size, st.st_ino) if st else None)
    if config.auth.method == "password":
        secret = os.environ.get(PASSWORD_ENV, "")
        stamps.append(hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else None)
    return tuple(stamps)
