"""The TLS settings for the mail server, made once per setting and shared by every session."""

from __future__ import annotations

import ssl
from pathlib import Path

from ...config import SmtpConfig
from ...domain.errors import ConfigError

# Loading the system's CA certificates takes tens of milliseconds on the event loop: one
# context per setting is made and shared by every session (an SSLContext is made for that).
_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}


def tls_context(settings: SmtpConfig) -> ssl.SSLContext:
    """The TLS settings for the mail server: system CAs plus ``ca_file``, TLS 1.2 minimum.

    Made once and shared; a ``ca_file`` that changes on disk gives a new context.
    """
    key = (settings.ca_file, _file_stamp(settings.ca_file), settings.verify_certificate)
    context = _contexts.get(key)
    if context is None:
        context = _contexts[key] = _new_tls_context(settings)
    return context


def _file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None  # _new_tls_context says what is wrong with it
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _new_tls_context(settings: SmtpConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[smtp] ca_file: cannot load {settings.ca_file}: {exc}") from None
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
