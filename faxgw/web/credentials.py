"""The console's secrets at rest: the admin password as an argon2 hash, API bearer tokens as
SHA-256 digests. Neither file ever holds the secret itself; both are written with mode 0600."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..domain.errors import ConfigError
from ..fsutil import make_private_folder, write_atomic

__all__ = ["add_api_token", "check_api_token", "check_password", "has_password",
           "set_password"]

_HASHER = PasswordHasher()
#: API tokens start with this, so that a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "faxgw_"


def set_password(path: Path, password: str) -> None:
    """Store the argon2 hash of ``password`` in ``path`` (mode 0600)."""
    if not password:
        raise ConfigError("the admin password may not be empty")
    make_private_folder(path.parent)
    write_atomic(path, (_HASHER.hash(password) + "\n").encode(), mode=0o600)


def has_password(path: Path) -> bool:
    """Whether an admin password has been set."""
    try:
        return bool(path.read_text(encoding="utf-8").strip())
    except OSError:
        return False


def check_password(path: Path, password: str) -> bool:
    """Whether ``password`` is the admin password (False when none is set)."""
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    if not stored or not password:
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_api_token(path: Path, name: str = "") -> str:
    """A new bearer token: its digest is added to ``path``, the token itself is returned
    (and is shown once: it cannot be read back)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    label = " ".join(name.split()) or "token"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    when = datetime.now(UTC).isoformat(timespec="seconds")
    lines.append(f"sha256:{_digest(token)} {when} {label}")
    make_private_folder(path.parent)
    write_atomic(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
    return token


def check_api_token(path: Path, token: str) -> bool:
    """Whether ``token`` is one of the tokens in ``path``."""
    if not token:
        return False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    wanted = f"sha256:{_digest(token)}"
    found = False
    for line in lines:
        stored = line.split(" ", 1)[0]
        found |= hmac.compare_digest(stored, wanted)
    return found
