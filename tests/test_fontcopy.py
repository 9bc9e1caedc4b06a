"""Text set in the small copy of the font looks exactly as in the whole font; other text
is set in the whole font; the copy's folder is private and does not outlive its process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped]
from fpdf import FPDF
from pypdf import PdfReader

from faxgw.render.fontcopy import font_for
from faxgw.render.text import _close_fonts, _typeset, resolve_font, text_to_pdf

A4 = (595.28, 841.89)
COMMON_TEXT = ("Sehr geehrte Damen und Herren, bitte rufen Sie zurück: 030 123 456.\n"
               "Zaÿ “quoted” – dash — € 12,50 … Łódź, Šibenik, Ørsted\n\tTab\f"
               "Second page.\n")


def _pixels(pdf: bytes) -> list[bytes]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [bytes(page.render(scale=2, grayscale=True).buffer) for page in document]
    finally:
        document.close()


def _in_whole_font(text: str) -> bytes:
    """The same text typeset as ``text_to_pdf`` does, in the whole font."""
    font = resolve_font(None)
    pdf = FPDF(unit="pt", format=A4)
    try:
        _typeset(pdf, text, A4, font)
        return bytes(pdf.output())
    finally:
        _close_fonts(pdf)


def test_common_text_is_set_in_the_copy_and_looks_the_same() -> None:
    font = resolve_font(None)
    assert font is not None, "DejaVu fonts are needed (fonts-dejavu-core)"
    copy = font_for(COMMON_TEXT, font)
    assert copy != font and copy.stat().st_size < font.stat().st_size / 4
    made = text_to_pdf(COMMON_TEXT.encode(), "note.txt", A4)
    assert _pixels(made) == _pixels(_in_whole_font(COMMON_TEXT))
    assert "Łódź" in PdfReader(io.BytesIO(made)).pages[0].extract_text()


def test_text_with_other_letters_is_set_in_the_whole_font() -> None:
    font = resolve_font(None)
    assert font is not None
    text = "Привет, Ζεύς — 你\n"
    assert font_for(text, font) == font
    made = text_to_pdf(text.encode(), "note.txt", A4)
    assert "Привет" in PdfReader(io.BytesIO(made)).pages[0].extract_text()


_CHILD = """
import os, stat
from faxgw.render.fontcopy import font_for
from faxgw.render.text import resolve_font
copy = font_for("plain text", resolve_font(None))
st = os.stat(copy.parent)
print(copy.parent, oct(stat.S_IMODE(st.st_mode)), copy.parent.name == f"faxgw-fonts-{os.getpid()}")
"""


def test_the_copys_folder_is_private_and_ends_with_its_process(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    ended = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"],
                             stdout=subprocess.PIPE, text=True)
    pid = int(ended.communicate()[0])
    leftover = tmp_path / f"faxgw-fonts-{pid}"
    leftover.mkdir(mode=0o700)
    (leftover / "common-DejaVuSansMono.ttf").write_bytes(b"left by a killed process")

    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[1:] == ["0o700", "True"], out
    assert Path(out[0]).parent == tmp_path
    assert not Path(out[0]).exists()  # removed when its process ended
    assert not leftover.exists()  # swept by the next process that made one
    assert [entry.name for entry in tmp_path.iterdir()] == []
