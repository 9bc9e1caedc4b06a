"""Pre-flight: will the service and the mail server take this fax? Checked before queueing.

A fax that breaks a limit should fail at intake with the limit named, not hours later at
the far end. :func:`check` raises the first broken limit as a
:class:`~faxgw.domain.errors.JobError` with the limit's code; :func:`violations` lists them all
(``faxgw preview`` shows every one).

Sizes: the service's limit (``max_attachment_bytes``) is on the file, before encoding. The
mail server's limit is on the whole message as sent: the attachment in base64 (4 characters
for every 3 bytes, in lines of 76 plus CRLF, RFC 2045 section 6.8) and the rest of the message,
allowed :data:`MESSAGE_ALLOWANCE` bytes here.
"""

from __future__ import annotations

import math

from ..domain import codes
from ..domain.errors import JobError
from ..fax.profiles import ServiceRules, format_bytes
from .rendered import Rendered

#: Base64 line length in MIME (RFC 2045 6.8); each line ends in CRLF.
BASE64_LINE = 76
#: Bytes allowed for everything in the message besides the encoded attachment: headers,
#: MIME boundaries, the text part. Generous: a note of a few pages fits.
MESSAGE_ALLOWANCE = 64 * 1024

#: File suffixes of each attachment type.
SUFFIXES = {"pdf": (".pdf",), "tiff": (".tif", ".tiff")}


def encoded_size(size: int) -> int:
    """Bytes ``size`` bytes take in base64 MIME: 4 per 3 (rounded up), CRLF every 76."""
    characters = 4 * math.ceil(size / 3)
    return characters + 2 * math.ceil(characters / BASE64_LINE)


def message_size(rendered: Rendered) -> int:
    """The estimated size of the whole fax email (encoded attachment plus allowance)."""
    return encoded_size(rendered.bytes) + MESSAGE_ALLOWANCE


def violations(
    rendered: Rendered,
    subject: str,
    rules: ServiceRules,
    *,
    smtp_max_message_bytes: int | None = None,
) -> list[JobError]:
    """Every limit the fax breaks, in the order :func:`check` looks at them."""
    found: list[JobError] = []
    suffix = rendered.path.suffix.lower()
    if suffix not in SUFFIXES[rules.attach_as]:
        kind = suffix.lstrip(".").upper() or "without a type"
        found.append(JobError(
            f"the attachment is {kind}, the {rules.origin('attach_as')} sends "
            f"{rules.attach_as.upper()}", code=codes.DOCUMENT_UNSUPPORTED))
    if rules.max_pages is not None and rendered.pages > rules.max_pages:
        found.append(JobError(
            f"{rendered.pages} pages, limit {rules.max_pages} ({rules.origin('max_pages')})",
            code=codes.TOO_MANY_PAGES))
    limit = rules.max_attachment_bytes
    if limit is not None and rendered.bytes > limit:
        size, limit_text = _sizes(rendered.bytes, limit)
        found.append(JobError(
            f"attachment {size}, limit {limit_text} ({rules.origin('max_attachment_bytes')})",
            code=codes.TOO_LARGE))
    if smtp_max_message_bytes is not None:
        encoded = message_size(rendered)
        if encoded > smtp_max_message_bytes:
            size, limit_text = _sizes(encoded, smtp_max_message_bytes)
            found.append(JobError(
                f"message {size} after encoding (base64 adds a third), "
                f"limit {limit_text} (mail server)", code=codes.TOO_LARGE))
    if rules.max_subject_chars is not None and len(subject) > rules.max_subject_chars:
        found.append(JobError(
            f"subject {len(subject)} characters, limit {rules.max_subject_chars} "
            f"({rules.origin('max_subject_chars')})", code=codes.SUBJECT_TOO_LONG))
    return found


def check(
    rendered: Rendered,
    subject: str,
    rules: ServiceRules,
    *,
    smtp_max_message_bytes: int | None = None,
) -> None:
    """Raise :class:`JobError` for the first limit the fax breaks; return if none.

    Codes: 412 attachment type, 421 pages, 420 size (service or mail server), 422
    subject. The message carries the numbers: ``23 pages, limit 20 (interfax profile)``.
    """
    found = violations(rendered, subject, rules, smtp_max_message_bytes=smtp_max_message_bytes)
    if found:
        raise found[0]


def _sizes(size: int, limit: int) -> tuple[str, str]:
    """Both sizes for a message; in bytes when rounding would make them look equal."""
    size_text, limit_text = format_bytes(size), format_bytes(limit)
    if size_text == limit_text:
        return f"{size:,} bytes", f"{limit:,} bytes"
    return size_text, limit_text
