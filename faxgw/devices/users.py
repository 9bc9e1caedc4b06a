"""The devices' SMTP users: ``name:argon2hash`` per line, never a password itself.

Written by ``faxgw intake user NAME`` (mode 0600, replaced atomically), read by the listener
when a client authenticates. A user file that cannot be read lets nobody in, and says so
in the log once per attempt, without the password.
"""

from __future__ import annotations

import logging
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..domain.errors import ConfigError
from ..fsutil import make_private_folder, write_atomic

__all__ = ["check_user", "set_user"]

log = logging.getLogger("faxgw.devices")

_HASHER = PasswordHasher()


def _read(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, colon, stored = line.strip().partition(":")
        if colon and name and not name.startswith("#"):
            users[name] = stored.strip()
    return users


def set_user(path: Path, name: str, password: str) -> None:
    """Add ``name`` to ``path`` or change its password; only the argon2 hash is kept."""
    if not name or ":" in name or any(c.isspace() or not c.isprintable() for c in name):
        raise ConfigError(f"user name {name!r}: one word without ':' (e.g. scanner-2f)")
    if not password:
        raise ConfigError("the password may not be empty")
    try:
        users = _read(path)
    except FileNotFoundError:
        users = {}
    users[name] = _HASHER.hash(password)
    make_private_folder(path.parent)
    text = "".join(f"{user}:{stored}\n" for user, stored in users.items())
    write_atomic(path, text.encode(), mode=0o600)


def check_user(path: Path | None, name: str, password: str) -> bool:
    """Whether ``name`` may send with ``password`` (False for an unknown name)."""
    if path is None or not name or not password:
        return False
    try:
        stored = _read(path).get(name)
    except (OSError, UnicodeError) as exc:
        log.error("SMTP intake: cannot read the users file %s: %s", path,
                  getattr(exc, "strerror", None) or type(exc).__name__)
        return False
    if not stored:
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
