"""Building the fax email: one message per job, the rendered document attached."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from .jobs import Job, utcnow


def message_id_for(job_id: str, sender: str) -> str:
    """A Message-ID that carries the job id, so replies and reports can be tied back."""
    # The same id on every attempt: a server or service that sees a retry can tell.
    domain = sender.rpartition("@")[2] or "faxgw.invalid"
    return f"<faxgw.{job_id}@{domain}>"


def compose(job: Job, attachment: Path, *, body: bool = True) -> EmailMessage:
    """The email for ``job``: From its sender, To the service address, the attachment.

    ``body`` False leaves the text part out, for services that fax the body too.
    """
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = job.sender
    message["To"] = job.recipient
    message["Subject"] = job.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = job.message_id or message_id_for(job.id, job.sender)
    message["X-Faxgw-Job"] = job.id
    if body:
        # quoted-printable: safe through servers that lack 8BITMIME.
        message.set_content(job.note or "", charset="utf-8", cte="quoted-printable")
    if attachment.suffix.lower() == ".pdf":
        message.add_attachment(attachment.read_bytes(), maintype="application", subtype="pdf",
                               filename=attachment.name)
    else:
        # RFC 3302: a bilevel fax image is image/tiff with application=faxbw.
        message.add_attachment(attachment.read_bytes(), maintype="image", subtype="tiff",
                               filename=attachment.name, params={"application": "faxbw"})
    return message
