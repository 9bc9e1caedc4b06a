"""Building the fax email: one message per job, the rendered document attached.

:func:`compose` gives the message as an :class:`~email.message.EmailMessage`, built by the
email package's own means; :func:`message_bytes` gives the same message as the bytes sent in
DATA, and is what the worker uses. It is built for speed, by the same package:

* the attachment's base64 lines are put in afterwards, because the generator writes a 60 KB
  attachment line by line, which was the larger half of the time a message took to build;
* header values that need nothing done to them (short, printable ASCII: most of them) are
  set as they are: parsed into the policy's header objects, as the other values are (to be
  checked, encoded and folded), they came out the same and cost most of what was left.

Both give one ``MIME-Version`` at the top of the message (RFC 2045), none in its parts.
"""

from __future__ import annotations

import base64
import email.policy
from email import quoprimime
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime
from pathlib import Path

from ..config import Config
from ..domain.jobs import Job, utcnow
from .profiles import rules_for

__all__ = ["build_message", "compose", "message_bytes", "message_id_for"]

# Stands in for the attachment's body while the email package writes the message. It is
# not base64 (a "-"), so it cannot be mistaken for part of a real body.
_BODY_MARK = "faxgw-attachment-body-goes-here"
_POLICY = email.policy.SMTP
#: The longest header line and encoded body line the policy writes (RFC 5322's 78).
_MAX_LINE = _POLICY.max_line_length or 78


def message_id_for(job_id: str, sender: str) -> str:
    """A Message-ID that carries the job id, so replies and reports can be tied back."""
    # The same id on every attempt: a server or service that sees a retry can tell.
    domain = sender.rpartition("@")[2] or "faxgw.invalid"
    return f"<faxgw.{job_id}@{domain}>"


def compose(job: Job, attachment: Path, *, body: bool = True) -> EmailMessage:
    """The email for ``job``: From its sender, To the service address, the attachment.

    ``body`` False leaves the text part out, for services that fax the body too.
    """
    message = _build(job, attachment, attachment.read_bytes(), body=body)
    # The email package puts MIME-Version in the part it makes for an attachment, and at the
    # top only when the message had content before the attachment was added.
    for part in message.iter_parts():
        del part["MIME-Version"]
    if "MIME-Version" not in message:
        message["MIME-Version"] = "1.0"
    return message


def message_bytes(job: Job, attachment: Path, *, body: bool = True,
                  subject: str | None = None) -> bytes:
    """The email for ``job`` as the bytes to send (CRLF line ends): the message
    :func:`compose` gives, built for speed.

    Thread-safe; the worker builds messages off the event loop.
    """
    message = EmailMessage(policy=_POLICY)
    for name, value in _headers(job, job.subject if subject is None else subject):
        _put(message, name, value)
    _put(message, "MIME-Version", "1.0")
    _put(message, "Content-Type", "multipart/mixed")  # the generator adds the boundary
    parts: list[Message[str, str] | str] = [_text_part(job.note or "")] if body else []
    parts.append(_attachment_part(attachment.name))
    message.set_payload(parts)
    head, mark, tail = message.as_bytes().partition(_BODY_MARK.encode("ascii"))
    if not mark:  # pragma: no cover - the email package always writes a payload as given
        raise AssertionError("the attachment's place was not found in the message")
    # 76-character lines, as the email package writes base64. The MIME boundary cannot occur
    # in them: it holds a run of "=" that base64 (at most two, at the very end) never has.
    encoded = base64.encodebytes(attachment.read_bytes()).replace(b"\n", b"\r\n")
    return b"".join((head, encoded, tail))


def _headers(job: Job, subject: str) -> list[tuple[str, str]]:
    return [("From", job.sender), ("To", job.recipient), ("Subject", subject),
            ("Date", format_datetime(utcnow())),
            ("Message-ID", job.message_id or message_id_for(job.id, job.sender)),
            ("X-Faxgw-Job", job.id)]


def _put(part: MIMEPart, name: str, value: str) -> None:
    """Set a header. A short printable ASCII value is written as given: parsing it into the
    policy's header object (which every other value goes through, to be checked, encoded
    and folded) would write it the same, at several times the cost."""
    if value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= _MAX_LINE:
        part.set_raw(name, value)
    else:
        part[name] = value


def _text_part(note: str) -> MIMEPart:
    """The note as text, quoted-printable: safe through servers that lack 8BITMIME."""
    part = MIMEPart(policy=_POLICY)
    _put(part, "Content-Type", 'text/plain; charset="utf-8"')
    _put(part, "Content-Transfer-Encoding", "quoted-printable")
    # As the email package's set_content encodes text: lines ended by "\n", each encoded
    # line at most as long as the policy allows.
    lines = note.encode("utf-8").splitlines()
    part.set_payload(quoprimime.body_encode(b"".join(line + b"\n" for line in lines)
                                            .decode("latin-1") or "\n", _MAX_LINE))
    return part


def _attachment_part(filename: str) -> MIMEPart:
    """The attachment's part, its body :data:`_BODY_MARK` (the base64 goes in afterwards)."""
    part = MIMEPart(policy=_POLICY)
    if filename.lower().endswith(".pdf"):
        _put(part, "Content-Type", "application/pdf")
    else:
        # RFC 3302: a bilevel fax image is image/tiff with application=faxbw.
        _put(part, "Content-Type", 'image/tiff; application="faxbw"')
    _put(part, "Content-Transfer-Encoding", "base64")
    if filename.isascii() and filename.isprintable() and not set(filename) & set('"\\'):
        _put(part, "Content-Disposition", f'attachment; filename="{filename}"')
    else:  # the email package encodes it (RFC 2231)
        part.add_header("Content-Disposition", "attachment", filename=filename)
    part.set_payload(_BODY_MARK)
    return part


def _build(job: Job, attachment: Path, content: bytes, *, body: bool,
           subject: str | None = None) -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["From"] = job.sender
    message["To"] = job.recipient
    message["Subject"] = job.subject if subject is None else subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = job.message_id or message_id_for(job.id, job.sender)
    message["X-Faxgw-Job"] = job.id
    if body:
        # quoted-printable: safe through servers that lack 8BITMIME.
        message.set_content(job.note or "", charset="utf-8", cte="quoted-printable")
    if attachment.suffix.lower() == ".pdf":
        message.add_attachment(content, maintype="application", subtype="pdf",
                               filename=attachment.name)
    else:
        # RFC 3302: a bilevel fax image is image/tiff with application=faxbw.
        message.add_attachment(content, maintype="image", subtype="tiff",
                               filename=attachment.name, params={"application": "faxbw"})
    return message


def build_message(job: Job, attachment: Path, config: Config) -> bytes:
    """The job's email with ``attachment``, as the service wants it (with a body or none, the
    subject with the job's token where the profile asks for it)."""
    rules = rules_for(config.service)
    return message_bytes(job, attachment, body=rules.body,
                         subject=rules.email_subject(job.subject, job.id))
