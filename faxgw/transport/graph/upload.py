"""The Graph upload path for faxes too large for one ``sendMail`` request.

Graph takes about 4 MB per request. A larger fax email goes as: a draft made from the same MIME
without its attachments (``POST /users/{mailbox}/messages``, base64 MIME, so its Message-ID and
headers stay), each attachment added (small ones in one request, larger ones through an upload
session: ``createUploadSession``, then the bytes in order in chunks under 4 MB, ``PUT`` to the
session's URL *without* an Authorization header, as Graph requires), then ``send``. Drafts need
``Mail.ReadWrite`` besides ``Mail.Send``.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

#: Attachments up to this size (raw) go in one request (their base64 stays under 4 MB).
SMALL_ATTACHMENT = 3_000_000
#: Upload chunks: a multiple of 320 KiB (Graph's rule), under 4 MB.
CHUNK_BYTES = 12 * 320 * 1024
#: How many upload sessions one attachment may take: an expired one (404/410 from its URL) is
#: replaced once, the upload starting again from its first byte.
UPLOAD_SESSIONS = 2
#: Said when a draft, attachment or send is refused for want of permission.
READ_WRITE_HINT = ("faxes over 3.5 MB go through a draft and an upload session, which need "
                   "the Mail.ReadWrite permission besides Mail.Send (delegated: consent to it; "
                   "application: grant it, limited to the fax mailboxes by RBAC for "
                   "Applications)")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment taken out of the MIME."""

    name: str
    content_type: str
    data: bytes


def split_attachments(message: bytes) -> tuple[bytes, list[Attachment]]:
    """The MIME without its attachments (headers, Message-ID and text as they were), and the
    attachments."""
    parsed = BytesParser(policy=email.policy.SMTP).parsebytes(message)
    assert isinstance(parsed, EmailMessage)
    attachments: list[Attachment] = []
    for part in parsed.iter_attachments():
        assert isinstance(part, EmailMessage)
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            attachments.append(Attachment(part.get_filename() or "attachment",
                                          content_type(part), data))
    if parsed.is_multipart():
        kept: list[Any] = [part for part in parsed.iter_parts()
                if part.get_content_disposition() != "attachment"]
        parsed.set_payload(kept)
    return parsed.as_bytes(policy=email.policy.SMTP), attachments


def content_type(part: Message) -> str:
    """The part's media type with its parameters (``image/tiff; application=faxbw``: RFC 3302
    fax TIFF) but without ``name``, which Graph takes from the attachment's own name."""
    params = [f"{key}={value}" for key, value in part.get_params(failobj=[])[1:]
              if key.lower() not in ("name", "charset")]
    return "; ".join([part.get_content_type(), *params])


def chunks(size: int) -> list[tuple[int, int]]:
    """The byte ranges (first, last) of an upload, in order."""
    return [(start, min(start + CHUNK_BYTES, size) - 1) for start in range(0, size, CHUNK_BYTES)]
