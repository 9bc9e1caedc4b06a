"""The TLS settings for the mail server, made once per setting and shared by every session."""

from __future__ import annotations

import ssl

from ...config import SmtpConfig
from ...tlsutil import shared_context


def tls_context(settings: SmtpConfig) -> ssl.SSLContext:
    """The TLS settings for the mail server: system CAs plus ``ca_file``, TLS 1.2 minimum.

    Made once and shared; a ``ca_file`` that changes on disk gives a new context.
    """
    return shared_context("smtp", settings.ca_file, verify=settings.verify_certificate)
