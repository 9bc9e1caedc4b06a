"""What a device's email carries: its documents in order, its subject, its text.

Scanners send a short text ("Please find attached the scanned document") and the scan as an
attachment; some put images inline. Every part that is not the message's text is a
document, in the order of the message, and the renderer judges each by its content, exactly
as for a dropped file: a part of a type the gateway cannot fax fails its job with a code,
it is not silently dropped. Only signatures and the HTML twin of the text are left out;
a message with an HTML body and no plain one has its text read from the HTML
(:mod:`~faxgw.devices.html_text`).
"""

from __future__ import annotations

import email
import email.policy
import mimetypes
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from .html_text import html_to_text

__all__ = ["Document", "Letter", "read_letter"]

#: Parts that carry no page: signatures of the message itself, delivery reports.
_NOT_DOCUMENTS = frozenset({
    "application/pkcs7-signature", "application/x-pkcs7-signature",
    "application/pgp-signature", "application/pgp-keys",
    "message/delivery-status", "message/disposition-notification",
})

#: Characters that may not stand in a document's name: path separators, controls.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029/\\]")
#: Control characters in a subject or a note (a note keeps its line breaks and tabs).
_SUBJECT_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOTE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_NAME = 120


@dataclass(frozen=True, slots=True)
class Document:
    """One attachment (or inline image): a safe file name and its bytes."""

    name: str
    data: bytes


@dataclass(slots=True)
class Letter:
    """A received message as faxgw needs it."""

    subject: str = ""
    #: The ``From`` header, as written (for the log: the device or person that sent it).
    author: str = ""
    #: The text body (``text/plain``, else the text an HTML body shows), trimmed; "" when
    #: there is none.
    text: str = ""
    documents: list[Document] = field(default_factory=list)


def read_letter(data: bytes) -> Letter:
    """Parse a message as it came in DATA; never raises for a malformed message (what cannot
    be read is left out, and a message left with nothing is refused as such)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    letter = Letter(subject=_clean(str(message.get("Subject", "") or ""), _SUBJECT_CONTROL),
                    author=_clean(str(message.get("From", "") or ""), _SUBJECT_CONTROL))
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    if body is not None:
        letter.text = _text_of(body)
    elif (body := message.get_body(preferencelist=("html",))) is not None:
        # HTML only: the text it shows, read as data (nothing run, nothing fetched).
        letter.text = _tidy(html_to_text(_content_of(body)))
    for index, part in enumerate(message.walk()):
        if part.is_multipart() or part is body:
            continue
        kind = part.get_content_type()
        disposition = part.get_content_disposition()
        if kind in _NOT_DOCUMENTS:
            continue
        if kind.startswith("text/") and disposition != "attachment" and not part.get_filename():
            continue  # the text (or its HTML twin), not a document
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        letter.documents.append(Document(_name_for(part, index), payload))
    return letter


def _content_of(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError):  # an unknown or lying charset
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return content if isinstance(content, str) else ""


def _text_of(part: Message) -> str:
    return _tidy(_content_of(part))


def _tidy(content: str) -> str:
    text = _NOTE_CONTROL.sub(" ", content)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip()


def _clean(text: str, pattern: re.Pattern[str]) -> str:
    # A folded header keeps no line break in faxgw: a job's subject is a header again.
    return " ".join(pattern.sub(" ", text).split())


def _name_for(part: Message, index: int) -> str:
    """The part's file name, made safe; a name of its own when it has none (inline images)."""
    name = part.get_filename() or ""
    name = _BAD_NAME.sub("_", name).strip().lstrip(".")
    if len(name) > _MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: _MAX_NAME - len(suffix) - 1] + dot + suffix) if dot else name[:_MAX_NAME]
    if not name:
        extension = mimetypes.guess_extension(part.get_content_type()) or ".bin"
        name = f"part-{index}{extension}"
    return name
