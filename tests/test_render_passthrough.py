"""A PDF that already is what would be sent is attached as it came; anything else is written
anew (fitted, decrypted, its forms, scripts and embedded files left behind)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from faxgw.render import render_pdf

from . import documents as docs

SAMPLES = Path(__file__).resolve().parent.parent / "faxgw" / "samples"


def _rendered(tmp_path: Path, *documents: Path, paper: str = "A4") -> bytes:
    out = tmp_path / "out.pdf"
    rendered = render_pdf(list(documents), out, paper=paper)
    assert rendered.pages == len(PdfReader(out).pages)
    return out.read_bytes()


def test_a_pdf_already_on_the_paper_is_attached_byte_for_byte(tmp_path: Path) -> None:
    source = docs.text_pdf(tmp_path / "a4.pdf", pages=3)
    assert _rendered(tmp_path, source) == source.read_bytes()


def test_a_pdf_of_other_paper_is_fitted(tmp_path: Path) -> None:
    source = docs.letter_pdf(tmp_path / "letter.pdf", pages=2)
    out = _rendered(tmp_path, source)
    assert out != source.read_bytes()
    page = PdfReader(tmp_path / "out.pdf").pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)


def test_on_letter_paper_the_letter_pdf_passes_through(tmp_path: Path) -> None:
    source = docs.letter_pdf(tmp_path / "letter.pdf", pages=2)
    assert _rendered(tmp_path, source, paper="letter") == source.read_bytes()


def test_an_owner_password_pdf_is_written_anew_without_it(tmp_path: Path) -> None:
    plain = docs.text_pdf(tmp_path / "plain.pdf", pages=1)
    locked = docs.encrypted_pdf(tmp_path / "locked.pdf", plain, algorithm="AES-128")
    out = _rendered(tmp_path, locked)
    assert out != locked.read_bytes()
    assert not PdfReader(tmp_path / "out.pdf").is_encrypted


@pytest.mark.parametrize("key", ["/OpenAction", "/AcroForm", "/Names"])
def test_a_pdf_with_more_than_pages_is_written_anew(tmp_path: Path, key: str) -> None:
    writer = PdfWriter(clone_from=PdfReader(docs.text_pdf(tmp_path / "plain.pdf", pages=1)))
    action = DictionaryObject({NameObject("/S"): NameObject("/JavaScript"),
                               NameObject("/JS"): TextStringObject("app.alert(1)")})
    writer._root_object[NameObject(key)] = writer._add_object(action)
    source = tmp_path / "active.pdf"
    writer.write(source)
    out = _rendered(tmp_path, source)
    assert out != source.read_bytes()
    assert b"app.alert" not in out
    assert key not in PdfReader(tmp_path / "out.pdf").trailer["/Root"]


def test_bytes_before_the_header_are_not_passed_on(tmp_path: Path) -> None:
    source = tmp_path / "prefixed.pdf"
    source.write_bytes(b"\r\n" + docs.text_pdf(tmp_path / "a4.pdf").read_bytes())
    out = _rendered(tmp_path, source)
    assert out.startswith(b"%PDF-")


def test_documents_are_joined_in_order(tmp_path: Path) -> None:
    first = docs.text_pdf(tmp_path / "one.pdf", pages=2, label="First")
    second = docs.text_pdf(tmp_path / "two.pdf", pages=1, label="Second")
    _rendered(tmp_path, first, second)
    texts = [page.extract_text() for page in PdfReader(tmp_path / "out.pdf").pages]
    assert ["First 1" in texts[0], "First 2" in texts[1], "Second 1" in texts[2]] == [True] * 3


def test_a_pdf_read_only_by_repairing_it_is_not_passed_on(tmp_path: Path) -> None:
    """A table that lists objects that are not there: the lenient reader reads around it;
    the file is written anew (by pdfium's repaired copy), never passed on as it came."""
    from .test_render_pdfium import broken_xref_pdf

    source = broken_xref_pdf(tmp_path / "contract.pdf")
    out = _rendered(tmp_path, source)
    assert out != source.read_bytes()
    assert len(PdfReader(io.BytesIO(out), strict=True).pages) == 2
