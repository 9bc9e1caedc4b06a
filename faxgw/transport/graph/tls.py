"""The TLS settings for Microsoft Graph, made once per setting and shared by every session."""

from __future__ import annotations

import ssl

from ...config import GraphConfig
from ...tlsutil import shared_context


def tls_context(settings: GraphConfig) -> ssl.SSLContext:
    """System CAs plus ``[graph] ca_file``, TLS 1.2 minimum, certificates always checked."""
    return shared_context("graph", settings.ca_file)
