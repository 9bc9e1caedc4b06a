"""Values the configuration checks: durations with their unit, placeholders in templates,
listening addresses."""

from __future__ import annotations

import ipaddress
from typing import Any


def check_template(template: str, known: str, **example: str) -> None:
    """Fail now, not when the first fax is sent, on a placeholder that cannot be filled."""
    try:
        template.format(**example)
    except KeyError as exc:
        raise ValueError(f"unknown placeholder {{{exc.args[0]}}}; use {known}") from None
    except (IndexError, ValueError) as exc:
        # "{}" or "{0}", an unmatched brace: write a literal brace as {{ or }}
        raise ValueError(f"is not a valid template ({exc}); use {known}, "
                         "and {{ or }} for a brace") from None


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a host and a port; raises ValueError."""
    host, colon, port_text = value.strip().rpartition(":")
    if not colon or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{value!r} is not host:port, e.g. \"127.0.0.1:8025\"")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""

    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from a duration with its unit: ``"90s"``, ``"15m"``, ``"24h"``, ``"30d"``,
    ``"2w"``. A bare number is refused: ``retention = 30`` would mean 30 seconds to the
    gateway and 30 days to the person who wrote it."""
    example = '"90s", "15m", "24h", "30d"'
    if isinstance(value, bool) or isinstance(value, int | float):
        raise ValueError(f"give a unit: a duration such as {example}")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a duration such as {example}")
    text = value.strip().lower()
    if text[-1] not in _DURATION_UNITS:
        try:
            float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration such as {example}") from None
        raise ValueError(f"{value!r} has no unit: write it as {text}s, {text}m, {text}h or "
                         f"{text}d") from None
    try:
        seconds = float(text[:-1]) * _DURATION_UNITS[text[-1]]
    except ValueError:
        raise ValueError(f"{value!r} is not a duration such as {example}") from None
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds
