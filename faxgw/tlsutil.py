"""The TLS settings a client trusts (the transports, the mailbox readers): the system's CAs
plus an extra CA file, TLS 1.2 at least. Loading the system's CA certificates takes tens of
milliseconds: one context per setting is made and shared by every session (an SSLContext is
made for that), and made again when the CA file changes on disk."""

from __future__ import annotations

import ssl
from pathlib import Path

from .domain.errors import ConfigError

_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}


def shared_context(section: str, ca_file: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """The context for ``[section]``'s ``ca_file``; ``verify`` False checks nothing (the
    caller warns). A CA file that cannot be loaded is a :class:`ConfigError` naming it."""
    key = (section, ca_file, _file_stamp(ca_file), verify)
    context = _contexts.get(key)
    if context is None:
        context = _contexts[key] = _new_context(section, ca_file, verify)
    return context


def _file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None  # _new_context says what is wrong with it
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _new_context(section: str, ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[{section}] ca_file: cannot load {ca_file}: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
