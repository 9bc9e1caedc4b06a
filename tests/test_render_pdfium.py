"""PDFs that pypdf cannot read but a viewer opens are faxed, through pdfium's repaired copy.

The files are real PDFs (made by fpdf2 and pypdf) damaged the way files come damaged: a
metadata stream without its end, a cross-reference table that claims more entries than it
has. Each is first shown to defeat pypdf on its own, so that the fallback is what is tested.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject, StreamObject

from faxgw.app.wiring import build_worker
from faxgw.domain import codes
from faxgw.domain.errors import DocumentError
from faxgw.render import render_pdf
from faxgw.render.pdfinput import _onto_paper, pdf_to_paper
from faxgw.testing.smtp_server import FaxSMTPServer

from . import documents as docs
from .conftest import MakeConfig

A4 = docs.A4


def _with_metadata(source: Path) -> bytes:
    """``source`` with an XMP metadata stream on the catalog and on page 1, as Acrobat
    writes them."""
    writer = PdfWriter(clone_from=PdfReader(source))
    metadata = StreamObject()
    metadata.set_data(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>METADATA</x:xmpmeta>")
    metadata[NameObject("/Type")] = NameObject("/Metadata")
    metadata[NameObject("/Subtype")] = NameObject("/XML")
    reference = writer._add_object(metadata)
    writer.pages[0][NameObject("/Metadata")] = reference
    writer._root_object[NameObject("/Metadata")] = reference
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def broken_metadata_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose metadata stream lost its ``endstream``: the pages are whole."""
    data = _with_metadata(docs.text_pdf(path, pages))
    end = b"</x:xmpmeta>\nendstream"
    assert data.count(end) == 1
    path.write_bytes(data.replace(end, b"</x:xmpmeta>\n" + b" " * len(b"endstream")))
    return path


def broken_xref_pdf(path: Path, source: Path | None = None) -> Path:
    """A PDF whose cross-reference table says it has four entries more than it has."""
    data = (source or docs.text_pdf(path, 2)).read_bytes()
    found = re.search(rb"xref\s+0 (\d+)", data)
    assert found is not None
    count = int(found.group(1))
    path.write_bytes(data[:found.start(1)] + str(count + 4).encode() + data[found.end(1):])
    return path


def _pypdf_alone_fails(path: Path) -> None:
    with pytest.raises(Exception) as caught:
        _onto_paper(path.read_bytes(), path.name, A4)
    assert not isinstance(caught.value, DocumentError)


@pytest.mark.parametrize("make", [broken_metadata_pdf, broken_xref_pdf],
                         ids=["broken-metadata", "broken-xref"])
def test_a_pdf_pypdf_cannot_read_is_faxed_through_pdfium(tmp_path: Path, make: object) -> None:
    source = make(tmp_path / "contract.pdf")  # type: ignore[operator]
    _pypdf_alone_fails(source)

    rendered = render_pdf([source], tmp_path / "out.pdf")

    reader = PdfReader(rendered.path)
    assert rendered.pages == len(reader.pages) == 2
    assert [page.extract_text().strip() for page in reader.pages] == ["Page 1", "Page 2"]


def test_the_repaired_copy_goes_through_the_same_steps(tmp_path: Path) -> None:
    # A Letter page is fitted to A4 like any other: the copy is not passed on as it is.
    source = broken_xref_pdf(tmp_path / "letter.pdf", docs.letter_pdf(tmp_path / "l.pdf", 1))
    _pypdf_alone_fails(source)
    page = PdfReader(io.BytesIO(pdf_to_paper(source.read_bytes(), source.name, A4))).pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)
    assert "Letter page 1" in page.extract_text()


def test_a_password_stays_411_when_pypdf_cannot_read_the_file(
        tmp_path: Path, samples: Path) -> None:
    locked = docs.encrypted_pdf(tmp_path / "locked-source.pdf", samples / "letter.pdf",
                                user_password="secret", algorithm="RC4-128")
    source = broken_xref_pdf(tmp_path / "locked.pdf", locked)
    _pypdf_alone_fails(source)
    with pytest.raises(DocumentError) as caught:
        render_pdf([source], tmp_path / "out.pdf")
    assert caught.value.code == codes.DOCUMENT_ENCRYPTED
    assert str(caught.value) == "locked.pdf: the PDF is protected by a password"


def test_what_neither_can_read_fails_as_damaged_with_pypdfs_cause(tmp_path: Path) -> None:
    source = tmp_path / "broken.pdf"
    # A header, objects that are not objects, an end: complete, and unreadable to both.
    source.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nxref\n0 3\n"
                       b"trailor\n<< /Root 1 0 R >>\nstartxref\n9\n%%EOF\n")
    with pytest.raises(DocumentError) as caught:
        render_pdf([source], tmp_path / "out.pdf")
    assert caught.value.code == codes.DOCUMENT_UNREADABLE
    assert str(caught.value).startswith("broken.pdf: the PDF is damaged: ")
    assert not (tmp_path / "out.pdf").exists()


def test_a_pdf_cut_off_is_not_repaired_into_fewer_pages(tmp_path: Path) -> None:
    # pdfium would show the pages before the cut; faxgw refuses the file, as before.
    source = docs.truncated(tmp_path / "cut.pdf", docs.text_pdf(tmp_path / "t.pdf", 3), 0.8)
    with pytest.raises(DocumentError) as caught:
        render_pdf([source], tmp_path / "out.pdf")
    assert caught.value.code == codes.DOCUMENT_UNREADABLE


def test_in_a_render_process_the_repaired_pdf_is_sent_and_the_worker_is_told(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A render process passes on what is logged at the level the worker's root logger has
    # when the process starts.
    caplog.set_level(logging.INFO)
    source = broken_metadata_pdf(tmp_path / "contract.pdf")
    worker = build_worker(make_config(smtp_server), render_processes=1)
    try:
        folder = worker.spool.layout.outgoing / "+4930123456"
        folder.mkdir(parents=True)
        shutil.copy(source, folder / source.name)
        assert asyncio.run(worker.run_once()).sent == 1
        [job] = worker.store.list_jobs()
        assert job.pages == 2
    finally:
        worker.close()
    # Logged in the render process, and passed on to the worker's log.
    assert "contract.pdf: pypdf cannot read the PDF (PdfReadError); pdfium's repaired copy " \
           "is used" in caplog.text
