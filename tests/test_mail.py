"""The fax email: the lean byte build the worker sends matches the email package's own."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest

from faxgw.domain.jobs import Job
from faxgw.fax.message import compose, message_bytes

from .documents import text_pdf


def _job(**overrides: object) -> Job:
    fields: dict[str, object] = dict(
        id="20261128-0405-abcd", number="+4930123456", sender="fax@contoso.com",
        recipient="+4930123456@fax.example.net", subject="Fax to +4930123456 — Rechnung",
        note="Bitte bestätigen.\nDanke!")
    fields.update(overrides)
    return Job(**fields)  # type: ignore[arg-type]


def _parse(data: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(data, policy=email.policy.default))


def _shape(message: EmailMessage) -> list[tuple[str, str]]:
    """Every header of every part, with what differs per build (date, boundary) left out."""
    shape = []
    for part in message.walk():
        for name, value in part.items():
            if name == "Date":
                continue
            if name == "Content-Type" and part.is_multipart():
                value = part.get_content_type()
            shape.append((name, str(value)))
    return shape


@pytest.mark.parametrize("body", [True, False])
def test_bytes_are_the_composed_message(tmp_path: Path, body: bool) -> None:
    attachment = tmp_path / "fax-1.pdf"
    text_pdf(attachment, pages=3)
    job = _job()

    data = message_bytes(job, attachment, body=body)
    sent, composed = _parse(data), compose(job, attachment, body=body)

    assert _shape(sent) == _shape(composed)
    [part] = list(sent.iter_attachments())
    assert part.get_content() == attachment.read_bytes()
    assert part.get_filename() == "fax-1.pdf"
    assert sent["Subject"] == job.subject
    if body:
        text = sent.get_body(("plain",)).get_content()
        assert text.replace("\r\n", "\n") == job.note + "\n"
    # What goes into DATA: CRLF only, and no line longer than SMTP allows.
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_tiff_attachment_is_a_fax_image(tmp_path: Path) -> None:
    attachment = tmp_path / "fax-1.tif"
    attachment.write_bytes(b"II*\x00" + bytes(range(256)) * 40)

    sent = _parse(message_bytes(_job(), attachment))

    [part] = list(sent.iter_attachments())
    assert part.get_content_type() == "image/tiff"
    assert part.get_param("application") == "faxbw"
    assert part.get_content() == attachment.read_bytes()
