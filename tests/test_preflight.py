"""Pre-flight: each limit, with the numbers in the message, on real rendered documents."""

from __future__ import annotations

import io
import random
from email.generator import BytesGenerator
from pathlib import Path

import pytest
from PIL import Image

from faxgw.config import config_from_dict
from faxgw.domain import codes
from faxgw.domain.errors import JobError
from faxgw.domain.jobs import Job
from faxgw.fax.message import compose
from faxgw.fax.profiles import ServiceRules, rules_for
from faxgw.render import Rendered, render_pdf
from faxgw.render.preflight import check, encoded_size, message_size, violations

from . import documents as docs

SAMPLES = Path(__file__).resolve().parent.parent / "faxgw" / "samples"


def rules(tmp_path: Path, **service: object) -> ServiceRules:
    return rules_for(config_from_dict({"service": service}, base=tmp_path).service)


def broken(rendered: Rendered, subject: str, service_rules: ServiceRules,
           smtp_limit: int | None = None) -> JobError:
    with pytest.raises(JobError) as caught:
        check(rendered, subject, service_rules, smtp_max_message_bytes=smtp_limit)
    return caught.value


def noise_pdf(tmp_path: Path, megapixels: float) -> Path:
    """A PDF holding an incompressible (noise) image: its size is known in advance."""
    side = int((megapixels * 1_000_000) ** 0.5)
    rng = random.Random(7)
    image = Image.frombytes("L", (side, side), rng.randbytes(side * side))
    source = tmp_path / "noise.png"
    image.save(source, format="PNG", compress_level=1)
    return render_pdf([source], tmp_path / "noise.pdf").path


@pytest.fixture
def letter(tmp_path: Path) -> Rendered:
    return render_pdf([SAMPLES / "letter.pdf"], tmp_path / "letter-fax.pdf")


def test_within_every_limit_passes(tmp_path: Path, letter: Rendered) -> None:
    check(letter, "Fax to +4930123456", rules(tmp_path, profile="interfax"),
          smtp_max_message_bytes=35_000_000)


def test_too_many_pages_for_the_service_setting(tmp_path: Path) -> None:
    many = render_pdf([docs.text_pdf(tmp_path / "23.pdf", 23)], tmp_path / "fax.pdf")
    error = broken(many, "x", rules(tmp_path, max_pages=20))
    assert error.code == codes.TOO_MANY_PAGES
    assert error.message == "23 pages, limit 20 ([service] max_pages)"


def test_interfax_takes_100_pages_not_101(tmp_path: Path) -> None:
    service_rules = rules(tmp_path, profile="interfax")
    hundred = render_pdf([docs.text_pdf(tmp_path / "100.pdf", 100)], tmp_path / "a.pdf")
    check(hundred, "x", service_rules)
    more = render_pdf([docs.text_pdf(tmp_path / "100.pdf", 100), SAMPLES / "note.txt"],
                      tmp_path / "b.pdf")
    error = broken(more, "x", service_rules)
    assert error.message == "101 pages, limit 100 (interfax profile)"


def test_attachment_over_the_service_limit(tmp_path: Path) -> None:
    big = render_pdf([SAMPLES / "scan.jpg"], tmp_path / "scan.pdf")
    assert big.bytes > 300_000
    error = broken(big, "x", rules(tmp_path, max_attachment_bytes=200_000))
    assert error.code == codes.TOO_LARGE
    assert error.message == (
        f"attachment {big.bytes / 1000:.1f} kB, limit 200 kB ([service] max_attachment_bytes)")


def test_encoded_message_over_the_mail_servers_limit(tmp_path: Path) -> None:
    pdf = noise_pdf(tmp_path, 1.5)
    rendered = Rendered(path=pdf, pages=1, bytes=pdf.stat().st_size)
    # The file fits the service (20 MB) and the server's limit as a file: only its
    # encoded form, a third larger, does not.
    limit = 1_800_000
    assert rendered.bytes < limit < encoded_size(rendered.bytes)
    error = broken(rendered, "x", rules(tmp_path, profile="interfax"), smtp_limit=limit)
    assert error.code == codes.TOO_LARGE
    assert error.message == (
        f"message {message_size(rendered) / 1_000_000:.1f} MB after encoding (base64 adds "
        "a third), limit 1.8 MB (mail server)")


def test_subject_too_long(tmp_path: Path, letter: Rendered) -> None:
    subject = "Rechnung 2024-0815 für Herrn Jürgen Groß, Müller & Söhne GmbH, Łódź"
    assert len(subject) > 60
    error = broken(letter, subject, rules(tmp_path, profile="interfax"))
    assert error.code == codes.SUBJECT_TOO_LONG
    assert error.message == f"subject {len(subject)} characters, limit 60 (interfax profile)"


def test_wrong_attachment_type(tmp_path: Path, letter: Rendered) -> None:
    error = broken(letter, "x", rules(tmp_path, profile="rfc3192"))
    assert error.code == codes.DOCUMENT_UNSUPPORTED
    assert error.message == "the attachment is PDF, the rfc3192 profile sends TIFF"


def test_every_broken_limit_is_listed_first_one_raised(tmp_path: Path) -> None:
    many = render_pdf([docs.text_pdf(tmp_path / "5.pdf", 5)], tmp_path / "fax.pdf")
    service_rules = rules(tmp_path, max_pages=2, max_subject_chars=5, max_attachment_bytes=100)
    found = violations(many, "a long subject", service_rules)
    assert [error.code for error in found] == [
        codes.TOO_MANY_PAGES, codes.TOO_LARGE, codes.SUBJECT_TOO_LONG]
    assert broken(many, "a long subject", service_rules).code == codes.TOO_MANY_PAGES


def test_sizes_that_round_alike_are_shown_in_bytes(tmp_path: Path) -> None:
    rendered = Rendered(path=tmp_path / "x.pdf", pages=1, bytes=20_000_400)
    error = broken(rendered, "x", rules(tmp_path, profile="interfax"))
    assert error.message == "attachment 20,000,400 bytes, limit 20,000,000 bytes (interfax profile)"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 1000, 123_457])
def test_encoded_size_is_what_the_email_carries(tmp_path: Path, size: int) -> None:
    attachment = tmp_path / "fax.pdf"
    attachment.write_bytes(random.Random(size).randbytes(size))
    job = Job(id="j", number="+4930123456", recipient="+4930123456@fax.tc",
              sender="fax@contoso.com", subject="s", note="note")
    message = compose(job, attachment)
    part = next(iter(message.iter_attachments()))
    payload = part.get_payload()
    assert isinstance(payload, str)
    # On the wire every line ends in CRLF, one byte more than the "\n" kept in memory.
    assert encoded_size(size) == len(payload) + payload.count("\n")
    wire = io.BytesIO()
    BytesGenerator(wire).flatten(message)
    assert message_size(Rendered(attachment, 1, size)) >= len(wire.getvalue())
