"""Building the fax email: one message per job, the rendered document attached.

:func:`compose` gives the message as an :class:`~email.message.EmailMessage`;
:func:`message_bytes` gives the same message as the bytes sent in DATA, and is what the
worker uses: it lets the email package build every header, part and boundary, and puts in
the attachment's base64 lines itself, because the generator writes a 60 KB attachment line by
line and that was the larger half of the time a message took to build.
"""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from ..config import Config
from ..domain.jobs import Job, utcnow
from .profiles import rules_for

__all__ = ["build_message", "compose", "message_bytes", "message_id_for"]

# Stands in for the attachment's body while the email package writes the message. It is
# not base64 (a "-"), so it cannot be mistaken for part of a real body.
_BODY_MARK = "faxgw-attachment-body-goes-here"


def message_id_for(job_id: str, sender: str) -> str:
    """A Message-ID that carries the job id, so replies and reports can be tied back."""
    # The same id on every attempt: a server or service that sees a retry can tell.
    domain = sender.rpartition("@")[2] or "faxgw.invalid"
    return f"<faxgw.{job_id}@{domain}>"


def compose(job: Job, attachment: Path, *, body: bool = True) -> EmailMessage:
    """The email for ``job``: From its sender, To the service address, the attachment.

    ``body`` False leaves the text part out, for services that fax the body too.
    """
    return _build(job, attachment, attachment.read_bytes(), body=body)


def message_bytes(job: Job, attachment: Path, *, body: bool = True,
                  subject: str | None = None) -> bytes:
    """The email :func:`compose` builds, as the bytes to send (CRLF line ends).

    Thread-safe; the worker builds messages off the event loop.
    """
    message = _build(job, attachment, b"", body=body, subject=subject)
    part = list(message.iter_parts())[-1]
    part.set_payload(_BODY_MARK)  # Content-Transfer-Encoding stays base64
    head, mark, tail = message.as_bytes().partition(_BODY_MARK.encode("ascii"))
    if not mark:  # pragma: no cover - the email package always writes a payload as given
        raise AssertionError("the attachment's place was not found in the message")
    # 76-character lines, as the email package writes base64. The MIME boundary cannot occur
    # in them: it holds a run of "=" that base64 (at most two, at the very end) never has.
    encoded = base64.encodebytes(attachment.read_bytes()).replace(b"\n", b"\r\n")
    return b"".join((head, encoded, tail))


def _build(job: Job, attachment: Path, content: bytes, *, body: bool,
           subject: str | None = None) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
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
