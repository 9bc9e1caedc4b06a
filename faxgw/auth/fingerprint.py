"""What tells a paused account that its credentials changed, without reading a secret."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..config import PASSWORD_ENV, Config


def credentials_fingerprint(config: Config) -> object:
    """Something that changes when the credentials change: a new sign-in rewrites the token
    cache, a new password replaces the password file. Never contains a secret."""
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
