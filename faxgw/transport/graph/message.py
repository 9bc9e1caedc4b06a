"""The fax email as Graph's JSON ``message`` resource, made from the MIME the SMTP path sends.

MIME ``sendMail`` always keeps a copy in the mailbox's Sent Items; only the JSON form of
``sendMail`` takes ``"saveToSentItems": false``. So with ``[graph] save_to_sent_items = false``
the same email is sent as JSON: :func:`from_mime` reads the prepared MIME (the one source of
truth for subject, addresses, body, Message-ID and attachment) and :class:`GraphMessage`
writes Graph's fields, so that what arrives matches the SMTP email field for field:

- ``subject``, ``from``, ``toRecipients`` (and ``ccRecipients``), ``body`` (plain text);
- ``internetMessageId``: the job's Message-ID, the same on every attempt and by either path;
- ``attachments``: ``#microsoft.graph.fileAttachment`` with ``name``, ``contentType`` and
  ``contentBytes`` (base64 of the exact attachment bytes);
- ``internetMessageHeaders``: Graph takes only ``X-`` headers, at most
  :data:`MAX_CUSTOM_HEADERS`; faxgw's own (``X-Faxgw-…``) are taken first.
"""

from __future__ import annotations

import base64
import email.policy
import json
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from typing import Any

from .upload import Attachment, content_type

log = logging.getLogger("faxgw.transport")

#: Graph refuses more custom headers than this on a message (and any not starting ``x-``).
MAX_CUSTOM_HEADERS = 5
#: faxgw's own headers: kept first when there are more ``X-`` headers than Graph takes.
OWN_HEADER_PREFIX = "x-faxgw-"
_FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"


@dataclass(frozen=True, slots=True)
class GraphMessage:
    """The fields of one fax email, as Graph's ``message`` resource names them."""

    subject: str
    sender: tuple[str, str] | None  # (name, address); None: the mailbox itself
    to: tuple[tuple[str, str], ...]
    cc: tuple[tuple[str, str], ...] = ()
    body: str | None = None  # None: the email has no text part (the profile leaves it out)
    message_id: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)

    def resource(self, *, with_attachments: bool = True) -> dict[str, Any]:
        """Graph's ``message`` resource (for ``sendMail`` or a draft)."""
        message: dict[str, Any] = {
            "subject": self.subject,
            "toRecipients": [_recipient(address) for address in self.to],
        }
        if self.sender is not None:
            message["from"] = _recipient(self.sender)
        if self.cc:
            message["ccRecipients"] = [_recipient(address) for address in self.cc]
        if self.body is not None:
            message["body"] = {"contentType": "text", "content": self.body}
        if self.message_id:
            message["internetMessageId"] = self.message_id
        if self.headers:
            message["internetMessageHeaders"] = [{"name": name, "value": value}
                                                 for name, value in self.headers]
        if with_attachments and self.attachments:
            message["attachments"] = [file_attachment(item) for item in self.attachments]
        return message

    def send_mail_body(self, *, save_to_sent_items: bool) -> bytes:
        """The JSON of ``POST /users/{mailbox}/sendMail``."""
        return json.dumps({"message": self.resource(),
                           "saveToSentItems": save_to_sent_items}).encode("utf-8")

    def draft_body(self) -> bytes:
        """The JSON of ``POST /users/{mailbox}/messages``: the message without its
        attachments (they follow through upload sessions)."""
        return json.dumps(self.resource(with_attachments=False)).encode("utf-8")


def file_attachment(item: Attachment) -> dict[str, str]:
    """One ``#microsoft.graph.fileAttachment`` with the exact bytes, base64."""
    return {"@odata.type": _FILE_ATTACHMENT, "name": item.name,
            "contentType": item.content_type,
            "contentBytes": base64.b64encode(item.data).decode("ascii")}


def _recipient(address: tuple[str, str]) -> dict[str, dict[str, str]]:
    name, addr = address
    return {"emailAddress": {"name": name, "address": addr} if name else {"address": addr}}


def _addresses(message: EmailMessage, header: str) -> tuple[tuple[str, str], ...]:
    values = [str(value) for value in message.get_all(header, [])]
    return tuple((name, addr) for name, addr in getaddresses(values) if addr)


def _custom_headers(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    """The ``X-`` headers Graph will take: faxgw's own first, then others, at most five."""
    custom = [(str(name), str(value)) for name, value in message.items()
              if str(name).lower().startswith("x-")]
    ordered = sorted(custom, key=lambda item: not item[0].lower().startswith(OWN_HEADER_PREFIX))
    if len(ordered) > MAX_CUSTOM_HEADERS:
        left_out = ", ".join(name for name, _ in ordered[MAX_CUSTOM_HEADERS:])
        # Graph refuses the whole message with a sixth; these headers are only informative.
        log.warning("Graph takes at most %d X- headers: %s left out", MAX_CUSTOM_HEADERS,
                    left_out)
    return tuple(ordered[:MAX_CUSTOM_HEADERS])


def from_mime(mime: bytes) -> GraphMessage:
    """Read the prepared fax email (the bytes the SMTP path would send).

    The top-level headers (cut off before the body) are read with the modern policy (RFC 2047
    subjects, display names); the parts with ``compat32``, which walks a 60 KB base64
    attachment about twice as fast: this runs once per fax on the sending path.
    """
    head = mime.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in mime else \
        mime.split(b"\n\n", 1)[0]
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(head + b"\r\n\r\n")
    assert isinstance(headers, EmailMessage)
    senders = _addresses(headers, "From")
    attachments: list[Attachment] = []
    body: str | None = None
    for part in BytesParser(policy=email.policy.compat32).parsebytes(mime).walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                attachments.append(Attachment(part.get_filename() or "attachment",
                                              content_type(part), data))
        elif body is None and part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            text = raw.decode(part.get_content_charset() or "utf-8", "replace") \
                if isinstance(raw, bytes) else ""
            # The text as written: Graph makes its own line ends when it builds the MIME.
            body = text.replace("\r\n", "\n")
    return GraphMessage(
        subject=str(headers.get("Subject", "")),
        sender=senders[0] if senders else None,
        to=_addresses(headers, "To"),
        cc=_addresses(headers, "Cc"),
        body=body,
        message_id=str(headers.get("Message-ID", "")).strip(),
        headers=_custom_headers(headers),
        attachments=tuple(attachments),
    )
