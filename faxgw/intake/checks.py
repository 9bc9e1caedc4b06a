"""What a job may say: header values without control characters, senders that are allowed.

A subject, sender or document name ends up in an email header, a log line or the job log.
Python's email package raises on a line break in a header, and a line break in a log line
forges a second line; so a job whose texts hold control characters is refused at intake
(code 407), whichever way it came in. A note is the email's body or the cover page's text,
never a header: it may have several lines (line breaks and tabs), but no other control
characters. A job may name its own sender only when
``[intake] allowed_senders`` allows it (code 408): the configured mailbox is the default,
and sending as another mailbox is a right an administrator grants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["control_refusal", "has_control", "sender_refusal", "shown"]

#: C0 and C1 controls (NUL, CR, LF, ESC, NEL …), DEL, and the Unicode line and paragraph
#: separators, which some mail clients and terminals also break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


#: What a note may not hold: the controls above but line breaks and tabs.
_NOTE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, C1, DEL, U+2028, U+2029)."""
    return _CONTROL.search(text) is not None


def shown(text: str) -> str:
    """``text`` fit for one log line or message: control characters, and the bytes of a file
    name that are not UTF-8, written as escapes (``\\n``, ``\\x00``, ``\\u2028``, ``\\xe9``);
    everything else as it is."""
    return _UNSHOWABLE.sub(_escape, text)


#: Control characters, and the lone surrogates os.fsdecode makes of undecodable bytes.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if "\udc80" <= char <= "\udcff":  # a byte os.fsdecode could not decode
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def control_refusal(fields: Iterable[tuple[str, str]], names: Sequence[str] = ()) -> str | None:
    """Why a job's texts cannot be used, or None. ``fields`` are (what, value) pairs such as
    ``("subject", "...")``; ``names`` the documents' file names."""
    for what, value in fields:
        pattern = _NOTE_CONTROL if what == "note" else _CONTROL
        if pattern.search(value) is not None:
            return f"the {what} '{shown(value)}' holds control characters"
    for name in names:
        if has_control(name):
            return f"the file name '{shown(name)}' holds control characters"
    return None


def sender_refusal(sender: str, *, allowed: Sequence[str], default: str) -> str | None:
    """Why a job may not name ``sender``, or None.

    A job that names no sender, or the configured default sender, is always allowed.
    Otherwise ``sender`` must be one of ``allowed`` (lower-case addresses, or ``@domain``
    for every address of a domain); an empty ``allowed`` allows no sender of a job's own.
    """
    wanted = sender.strip().lower()
    if not wanted or wanted == default.strip().lower():
        return None
    local, at, domain = wanted.rpartition("@")
    if at and local and domain and (wanted in allowed or f"@{domain}" in allowed):
        return None
    if not allowed:
        return (f"the sender '{shown(sender)}' is not the configured sender, and "
                "[intake] allowed_senders allows no other")
    return f"the sender '{shown(sender)}' is not in [intake] allowed_senders"


def notify_refusal(address: str) -> str | None:
    """Why ``address`` cannot be told how a job ends (one plain address), or None ("" is
    nobody)."""
    if not address:
        return None
    local, at, domain = address.rpartition("@")
    if (not at or not local or "." not in domain or len(address) > 254
            or any(c.isspace() or c in ',;<>()[]\\"' for c in address) or has_control(address)):
        return f"notify {shown(address)!r} is not one email address such as name@example.com"
    return None
