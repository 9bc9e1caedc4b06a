"""The TLS settings for Microsoft Graph, made once per setting and shared by every session."""

from __future__ import annotations

import ssl

from ...config import GraphConfig
from ...domain.errors import ConfigError

_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}


def tls_context(settings: GraphConfig) -> ssl.SSLContext:
    """System CAs plus ``[graph] ca_file``, TLS 1.2 minimum, certificates always checked."""
    stamp = None
    if settings.ca_file is not None:
        try:
            stat = settings.ca_file.stat()
            stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = None
    key = (settings.ca_file, stamp)
    context = _contexts.get(key)
    if context is None:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"[graph] ca_file: cannot load {settings.ca_file}: "
                                  f"{exc}") from None
        _contexts[key] = context
    return context
