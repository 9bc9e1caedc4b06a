"""Scrubbing secrets out of log lines that libraries write.

faxgw never logs a token, password or device code itself. msal and the HTTP stack do, at
DEBUG (``faxgw -vvv``): msal's token cache events carry the device code under ``"code"``,
and request logs can carry form fields. :class:`SecretFilter` sits on faxgw's log handler and
replaces the values of such fields with ``***`` in every line, whoever wrote it.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SecretFilter", "redact"]

#: Field names whose values are secrets (OAuth2 and OIDC parameters, credentials).
SECRET_FIELDS = (
    "access_token", "refresh_token", "id_token", "device_code", "code", "client_secret",
    "client_assertion", "assertion", "password", "secret",
)
_NAMES = "|".join(SECRET_FIELDS)
# "name": "value" (JSON, Python reprs with either quote) and name=value (forms, query strings).
_QUOTED = re.compile(rf"""(["'](?:{_NAMES})["']\s*:\s*["'])[^"']*(["'])""")
_FORM = re.compile(rf"""(?<![\w-])((?:{_NAMES})=)[^&\s"',;]+""")


def redact(text: str) -> str:
    """``text`` with the values of secret fields replaced by ``***``."""
    return _FORM.sub(r"\1***", _QUOTED.sub(r"\1***\2", text))


class SecretFilter(logging.Filter):
    """A handler filter that scrubs :data:`SECRET_FIELDS` values from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
