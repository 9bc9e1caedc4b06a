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


def _shape(message: EmailMessage) -> list[list[tuple[str, str]]]:
    """Every header of every part (in any order), with what differs per build (date,
    boundary) left out."""
    shape = []
    for part in message.walk():
        headers = []
        for name, value in part.items():
            if name == "Date":
                continue
            if name == "Content-Type" and part.is_multipart():
                value = part.get_content_type()
            headers.append((name, str(value)))
        shape.append(sorted(headers))
    return shape


#: Jobs whose headers take each way through the lean build: values set as they are, and
#: values the email package encodes (non-ASCII) or folds (too long for one line).
JOBS = {
    "plain": {"subject": "Fax", "note": ""},
    "encoded": {},
    "folded": {"subject": "Fax to +4930123456 " + "about the order of 28 November " * 3},
    "multi-line note": {"note": "Seite 1 von 3\nBitte rufen Sie zur\u00fcck: " + "x" * 90},
}


@pytest.mark.parametrize("body", [True, False])
@pytest.mark.parametrize("fields", JOBS.values(), ids=list(JOBS))
@pytest.mark.parametrize("filename", ["fax-1.pdf", "Rechnung M\u00e4rz \"1\".pdf"])
def test_bytes_are_the_composed_message(tmp_path: Path, body: bool, fields: dict[str, str],
                                        filename: str) -> None:
    attachment = tmp_path / filename
    text_pdf(attachment, pages=3)
    job = _job(**fields)

    data = message_bytes(job, attachment, body=body)
    sent, composed = _parse(data), compose(job, attachment, body=body)

    assert _shape(sent) == _shape(composed)
    [part] = list(sent.iter_attachments())
    assert part.get_content() == attachment.read_bytes()
    assert part.get_filename() == filename
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


@pytest.mark.parametrize("body", [True, False])
def test_mime_version_is_at_the_top_and_only_there(tmp_path: Path, body: bool) -> None:
    attachment = tmp_path / "fax-1.pdf"
    text_pdf(attachment, pages=1)

    for message in (_parse(message_bytes(_job(), attachment, body=body)),
                    compose(_job(), attachment, body=body)):
        # RFC 2045: the message says it is MIME; its parts need not, and should not.
        assert message.get_all("MIME-Version") == ["1.0"]
        assert all("MIME-Version" not in part for part in message.iter_parts())


def test_a_header_that_would_break_the_message_is_refused(tmp_path: Path) -> None:
    attachment = tmp_path / "fax-1.pdf"
    text_pdf(attachment, pages=1)

    with pytest.raises(ValueError):
        message_bytes(_job(subject="Fax\r\nBcc: someone@example.org"), attachment)
