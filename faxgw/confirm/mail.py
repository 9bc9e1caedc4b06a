"""Reading a received message: its handles (Message-IDs, faxgw's headers) and its text.

Every message read here is untrusted: sizes are bounded and nothing is fetched.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message
from html.parser import HTMLParser

#: faxgw's Message-ID (``<faxgw.<job id>@domain>``) and a notification's.
_JOB_MSGID = re.compile(r"<faxgw\.([0-9a-f]{12}-[0-9a-f]{8})@", re.IGNORECASE)
_NOTIFY_MSGID = re.compile(r"<faxgw-notify\.([0-9a-f]{12}-[0-9a-f]{8})\.", re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]{1,500}>")
_JOB_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{8}$")
#: Enough of a body for any report; a longer one is read only this far.
MAX_TEXT = 256 * 1024


def parse(raw: bytes) -> EmailMessage:
    """The message as the email package reads it (never raises on bad structure)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header(message: Message, name: str) -> str:
    """A header's value as text ("" when missing or unreadable)."""
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a malformed header reads as missing, never as a crash
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def message_ids(text: str) -> tuple[str, ...]:
    """The ``<...>`` Message-IDs in a header value, in order."""
    return tuple(_MSGID.findall(text))


def job_of_message_id(message_id: str) -> str | None:
    """The job id in one of faxgw's Message-IDs, else None."""
    found = _JOB_MSGID.search(message_id)
    return found.group(1).lower() if found else None


def is_notification_id(message_id: str) -> bool:
    """Whether ``message_id`` is one of faxgw's notifications (a report about it is ignored)."""
    return _NOTIFY_MSGID.search(message_id) is not None


def clean_job_id(value: str) -> str | None:
    """``value`` when it has the form of a job id, else None."""
    value = value.strip().lower()
    return value if _JOB_ID.match(value) else None


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "tr", "div", "li"):
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _decoded(part: Message) -> str:
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else ""
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def text_of(message: Message) -> str:
    """The message's readable text: its text/plain parts, else its HTML as text (not its
    attachments' text, nor an embedded original message)."""
    plain: list[str] = []
    html: list[str] = []
    for part in _walk_own(message):
        if part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain":
            plain.append(_decoded(part))
        elif part.get_content_type() == "text/html":
            parser = _Text()
            parser.feed(_decoded(part)[:MAX_TEXT])
            html.append("".join(parser.parts))
    return "\n".join(plain or html)[:MAX_TEXT]


def attachments(message: Message, *types: str) -> list[tuple[str, str]]:
    """Text attachments as (file name, text) whose type or name suffix is in ``types``
    (e.g. ``"text/csv", ".csv"``)."""
    found = []
    for part in _walk_own(message):
        name = (part.get_filename() or "").lower()
        if part.get_content_type() in types or any(name.endswith(t) for t in types
                                                     if t.startswith(".")):
            found.append((name, _decoded(part)[:MAX_TEXT]))
    return found


def _walk_own(message: Message) -> list[Message]:
    """The message's parts, without descending into an embedded message (the original a
    bounce carries is not the bounce's own text)."""
    parts: list[Message] = []
    stack = [message]
    while stack and len(parts) < 200:
        part = stack.pop(0)
        if part.get_content_maintype() == "message":
            continue
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(p for p in payload if isinstance(p, Message))
            continue
        parts.append(part)
    return parts
