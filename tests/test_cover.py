"""The cover page: non-ASCII text, templates, page counts, and the attachment it leads."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import TiffImageFile
from pypdf import PdfReader

from faxgw.config import config_from_dict
from faxgw.domain.errors import ConfigError, DocumentError
from faxgw.fax.profiles import ServiceRules, rules_for
from faxgw.render.attachment import CoverInfo, build_attachment
from faxgw.render.cover import load_template, render_cover

from . import documents as docs

SAMPLES = Path(__file__).resolve().parent.parent / "faxgw" / "samples"

INFO = CoverInfo(
    to_number="+48421234567",
    to_address="+48421234567@fax.tc",
    sender="Jürgen Groß <fax@contoso.com>",
    date=datetime(2024, 5, 6, 14, 30, tzinfo=UTC),
    subject="Rechnung für Łódź",
    note="Bitte an Émile weiterleiten.\nMerci, café é à ç.",
)


def text_of(pdf: bytes | Path, page: int = 0) -> str:
    source = io.BytesIO(pdf) if isinstance(pdf, bytes) else pdf
    return PdfReader(source).pages[page].extract_text()


def rules(tmp_path: Path, **service: object) -> ServiceRules:
    return rules_for(config_from_dict({"service": service}, base=tmp_path).service)


def test_cover_prints_non_ascii_names(tmp_path: Path) -> None:
    pdf = render_cover(INFO, document_pages=2)
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 1
    text = text_of(pdf)
    for expected in ("Łódź", "Jürgen Groß", "Émile", "café é à ç", "+48421234567",
                     "2024-05-06 14:30 UTC", "3 (this page included)"):
        assert expected in text, expected


def test_cover_on_letter_paper(tmp_path: Path) -> None:
    pdf = PdfReader(io.BytesIO(render_cover(INFO, document_pages=1, paper="Letter")))
    box = pdf.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)


def test_long_note_runs_onto_more_pages_and_pages_count_them(tmp_path: Path) -> None:
    info = CoverInfo(INFO.to_number, INFO.to_address, INFO.sender, INFO.date, INFO.subject,
                     note="Zeile mit Text\n" * 150)
    pdf = render_cover(info, document_pages=2)
    cover_pages = len(PdfReader(io.BytesIO(pdf)).pages)
    assert cover_pages > 1
    assert f"{2 + cover_pages} (this page included)" in text_of(pdf)


def test_user_template(tmp_path: Path) -> None:
    template = tmp_path / "cover.txt"
    template.write_text(
        "# Our cover page\n= Telefax von Müller & Söhne\n---\nAn: {to} ({address})\n"
        "Von: {from}\nSeiten: {pages}\nBetreff: {subject}\nDatum: {date}\n{{vertraulich}}\n"
        "\n{note}\n", encoding="utf-8")
    text = text_of(render_cover(INFO, document_pages=4, template=template))
    assert "Telefax von Müller & Söhne" in text
    assert "An: +48421234567 (+48421234567@fax.tc)" in text
    assert "Seiten: 5" in text
    assert "{vertraulich}" in text
    assert "Our cover page" not in text  # comments are left out


@pytest.mark.parametrize(("content", "problem"), [
    ("To: {recipient}\n", "line 1: unknown placeholder {recipient}"),
    ("# fine\nTo: {to\n", "line 2: "),
    ("To: {to.__class__}\n", "unknown placeholder {to.__class__}"),
])
def test_bad_template_is_a_config_error(tmp_path: Path, content: str, problem: str) -> None:
    template = tmp_path / "cover.txt"
    template.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_template(template)
    assert str(caught.value).startswith("[service] cover_template: ")
    assert problem in str(caught.value)


def test_missing_or_binary_template(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_template(tmp_path / "missing.txt")
    binary = tmp_path / "cover.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_template(binary)


def test_user_values_are_not_template_code(tmp_path: Path) -> None:
    info = CoverInfo("+4930123456", "x@fax.tc", "a@b.c", INFO.date, "Betreff {note}",
                     note="{to} {0} {")
    text = text_of(render_cover(info, document_pages=1))
    assert "Betreff {note}" in text and "{to} {0} {" in text


# -- the attachment ------------------------------------------------------------------------

def test_attachment_with_cover_counts_the_cover(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    result = build_attachment([SAMPLES / "letter.pdf", SAMPLES / "note.txt"], job, "j1",
                              rules(tmp_path), cover=INFO)
    assert result.path == job / "fax-j1.pdf"
    assert result.pages == 4  # cover + 2 letter pages + 1 text page
    assert result.bytes == result.path.stat().st_size
    assert "Rechnung für Łódź" in text_of(result.path, 0)
    assert "4 (this page included)" in text_of(result.path, 0)
    assert "Jürgen Groß" in text_of(result.path, 3)  # note.txt names him too
    assert sorted(path.name for path in job.iterdir()) == ["fax-j1.pdf"]


def test_attachment_without_cover(tmp_path: Path) -> None:
    result = build_attachment([SAMPLES / "letter.pdf"], tmp_path, "j2", rules(tmp_path),
                              cover=None)
    assert result.pages == 2


def test_tiff_attachment_for_rfc3192_with_cover(tmp_path: Path) -> None:
    result = build_attachment([SAMPLES / "letter.pdf"], tmp_path, "j3",
                              rules(tmp_path, profile="rfc3192"), cover=INFO)
    assert result.path == tmp_path / "fax-j3.tif"
    assert result.pages == 3
    assert result.bytes == result.path.stat().st_size
    assert (tmp_path / "fax-j3.pdf").exists()  # kept for inspection
    with Image.open(result.path) as image:
        assert isinstance(image, TiffImageFile)
        assert image.n_frames == 3
        assert image.info["compression"] == "group3"
        assert image.size[0] == 1728


def test_bad_template_fails_before_rendering(tmp_path: Path) -> None:
    template = tmp_path / "cover.txt"
    template.write_text("{oops}\n", encoding="utf-8")
    job = tmp_path / "job"
    job.mkdir()
    with pytest.raises(ConfigError):
        build_attachment([SAMPLES / "letter.pdf"], job, "j4",
                         rules(tmp_path, cover_template=str(template)), cover=INFO)
    assert list(job.iterdir()) == []


def test_bad_document_names_the_file(tmp_path: Path) -> None:
    broken = docs.truncated(tmp_path / "broken.pdf", SAMPLES / "letter.pdf")
    with pytest.raises(DocumentError) as caught:
        build_attachment([broken], tmp_path, "j5", rules(tmp_path), cover=INFO)
    assert caught.value.filename == "broken.pdf"
    assert not (tmp_path / "fax-j5.pdf").exists()
