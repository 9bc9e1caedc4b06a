"""A PDF that already is what would be sent is attached as it came; anything else is written
anew (fitted, decrypted, its forms, scripts and embedded files left behind)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from faxgw.app.wiring import open_spool
from faxgw.domain.jobs import Job
from faxgw.render import render_pdf
from faxgw.render.job import render_job

from . import documents as docs
from .conftest import MakeConfig

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


def _job_folder(tmp_path: Path, document: Path) -> tuple[Path, Path]:
    """A job's folder with ``document`` among its originals, and where its PDF goes."""
    docs_folder = tmp_path / "job" / "docs"
    docs_folder.mkdir(parents=True)
    original = docs_folder / document.name
    original.write_bytes(document.read_bytes())  # a file of its own (the helpers share theirs)
    return original, tmp_path / "job" / "fax-job.pdf"


def test_a_jobs_own_pdf_attached_as_read_is_linked_not_copied(tmp_path: Path) -> None:
    original, out = _job_folder(tmp_path, docs.text_pdf(tmp_path / "a4.pdf", pages=3))

    rendered = render_pdf([original], out, link_originals=True)

    assert (rendered.pages, rendered.bytes) == (3, original.stat().st_size)
    assert out.stat().st_ino == original.stat().st_ino and out.stat().st_nlink == 2
    assert out.read_bytes() == original.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["docs", "fax-job.pdf"]
    # Rendered again (a retry): the same, and the original is left as it was.
    render_pdf([original], out, link_originals=True)
    assert out.stat().st_ino == original.stat().st_ino and out.stat().st_nlink == 2


def test_what_is_written_anew_or_lies_elsewhere_is_copied(tmp_path: Path) -> None:
    fitted, out = _job_folder(tmp_path, docs.letter_pdf(tmp_path / "letter.pdf", pages=1))
    render_pdf([fitted], out, link_originals=True)
    assert out.stat().st_nlink == 1 and fitted.stat().st_nlink == 1

    elsewhere = tmp_path / "elsewhere.pdf"
    elsewhere.write_bytes(docs.text_pdf(tmp_path / "made.pdf", pages=1).read_bytes())
    render_pdf([elsewhere], out, link_originals=True)
    assert out.stat().st_ino != elsewhere.stat().st_ino
    assert out.read_bytes() == elsewhere.read_bytes()

    own = tmp_path / "job" / "docs" / "own.pdf"
    own.write_bytes(elsewhere.read_bytes())
    render_pdf([own], out)  # not asked to link: preview, which renders the user's files
    assert out.stat().st_ino != own.stat().st_ino and own.stat().st_nlink == 1


def test_a_link_is_made_only_to_the_file_that_was_read(tmp_path: Path) -> None:
    from faxgw.fsutil import link_atomic

    source = tmp_path / "a.pdf"
    (tmp_path / "made").mkdir()
    source.write_bytes(docs.text_pdf(tmp_path / "made" / "a.pdf", pages=1).read_bytes())
    out = tmp_path / "out.pdf"
    out.write_bytes(b"before")
    assert link_atomic(source, out, size=source.stat().st_size + 1) is None  # changed since
    pointer = tmp_path / "pointer.pdf"
    pointer.symlink_to(source)
    assert link_atomic(pointer, out, size=source.stat().st_size) is None  # never followed
    assert out.read_bytes() == b"before" and source.stat().st_nlink == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "made", "out.pdf",
                                                          "pointer.pdf"]
    assert link_atomic(source, out, size=source.stat().st_size) == source.stat().st_size
    assert out.stat().st_ino == source.stat().st_ino


@pytest.mark.parametrize("cover", [False, True])
def test_a_jobs_pdf_is_stored_once_unless_a_cover_page_makes_it_anew(
        make_config: MakeConfig, tmp_path: Path, cover: bool) -> None:
    """What a job's render makes of a PDF it attaches as read: the same file as the original
    (one copy on disk); with a cover page, a PDF of its own."""
    config = make_config(service={"cover": cover})
    spool = open_spool(config)
    spool.ensure()
    letter = tmp_path / "letter.pdf"
    letter.write_bytes(docs.text_pdf(tmp_path / "made.pdf", pages=2).read_bytes())
    intake = spool.submit("+4930123456", [letter])
    [original] = spool.documents(intake.id)

    rendered = render_job(Job(id=intake.id, number=intake.number), spool, config)

    assert rendered.pages == 2 + cover
    linked = rendered.path.stat().st_ino == original.stat().st_ino
    assert linked is not cover
    assert original.read_bytes() == letter.read_bytes()
