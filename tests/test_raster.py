"""The rasterising pipeline underneath the fax TIFF: pdfium pages → bits → libtiff.

Everything here runs in the test process (``rasterise`` itself, the libtiff writer, the
directory reader); tests/test_tiff.py covers ``pdf_to_tiff`` as jobs use it.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fpdf import FPDF
from PIL import Image
from PIL.TiffImagePlugin import TiffImageFile
from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    BooleanObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    TextStringObject,
)

from faxgw.domain.errors import DocumentError
from faxgw.render.libtiff import FaxTiffWriter, LibtiffError
from faxgw.render.raster import FAX_WIDTH, THRESHOLD, bilevel, rasterise
from faxgw.render.tiff import check_tiff
from faxgw.render.tiff_ifd import TiffStructureError, read_directories

ROOT = Path(__file__).resolve().parent.parent
ROW_BYTES = FAX_WIDTH // 8
#: Paper sizes in points, and the page heights they become at 196 dpi (fitted to 1728 px).
SIZES = {"A4": ((595.28, 841.89), 2292), "A5": ((419.53, 595.28), 1621),
         "Letter": ((612.0, 792.0), 2149)}


def striped_pdf(path: Path, papers: list[str]) -> Path:
    """One page per paper size; page n has n black bars, so pages can be told apart."""
    pdf = FPDF(unit="pt")
    for number, paper in enumerate(papers, start=1):
        pdf.add_page(format=SIZES[paper][0])
        for bar in range(number):
            pdf.rect(72, 72 + 30 * bar, 300, 12, style="F")
    pdf.output(str(path))
    return path


def form_pdf(path: Path) -> Path:
    """An A4 page with one filled-in text field (72-500 x 700-760 pt), no appearance stream:
    pdfium draws the value once its form environment is set up."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=SIZES["A4"][0][0], height=SIZES["A4"][0][1])
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    field = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Widget"),
        NameObject("/FT"): NameObject("/Tx"), NameObject("/T"): TextStringObject("name"),
        NameObject("/V"): TextStringObject("HELLO FAX"), NameObject("/F"): NumberObject(4),
        NameObject("/DA"): TextStringObject("/Helv 36 Tf 0 g"),
        NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (72, 700, 500, 760)])}))
    page[NameObject("/Annots")] = ArrayObject([field])
    writer.root_object[NameObject("/AcroForm")] = DictionaryObject({
        NameObject("/Fields"): ArrayObject([field]),
        NameObject("/NeedAppearances"): BooleanObject(True),
        NameObject("/DR"): DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/Helv"): font})})})
    with path.open("wb") as file:
        writer.write(file)
    return path


def pages_of(path: Path) -> list[Image.Image]:
    with Image.open(path) as image:
        assert isinstance(image, TiffImageFile)
        pages = []
        for index in range(image.n_frames):
            image.seek(index)
            pages.append(image.copy())
        return pages


def fresh(path: Path) -> Path:
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("compression", ["group3", "group4"])
def test_pages_come_out_in_order_at_their_own_sizes(tmp_path: Path, compression: str) -> None:
    papers = ["A4", "A5", "A4", "Letter", "A4", "A4"]
    pdf = striped_pdf(tmp_path / "mixed.pdf", papers)
    out = fresh(tmp_path / "mixed.tif")
    outcome = rasterise(pdf, out, compression=compression)

    pages = pages_of(out)
    assert all(page.width == FAX_WIDTH for page in pages)
    for page, paper in zip(pages, papers, strict=True):
        assert abs(page.height - SIZES[paper][1]) <= 1, paper
    # n bars on page n: the black grows page by page (the pages were not mixed up).
    black = [page.histogram()[0] for page in pages]
    assert black == sorted(black) and len(set(black)) == len(black)
    assert outcome.first_page_black == black[0]
    directories = read_directories(out, limit=100)
    assert outcome.coded_bytes == tuple(int(d[279][0]) for d in directories)
    check_tiff(out, pages=len(papers), compression=compression,
               first_page_black=outcome.first_page_black, coded_bytes=outcome.coded_bytes)


def test_group3_and_group4_hold_the_same_pixels(tmp_path: Path) -> None:
    pdf = striped_pdf(tmp_path / "bars.pdf", ["A4"] * 4)
    outputs = {}
    for compression in ("group3", "group4"):
        rasterise(pdf, fresh(tmp_path / f"{compression}.tif"), compression=compression)
        pages = pages_of(tmp_path / f"{compression}.tif")
        outputs[compression] = [page.tobytes() for page in pages]
    assert outputs["group3"] == outputs["group4"]


def test_a_form_field_shows_its_value(tmp_path: Path) -> None:
    # Pages with form fields take the other way (rendered at 204 dpi, scaled to 196 dpi).
    out = fresh(tmp_path / "form.tif")
    outcome = rasterise(form_pdf(tmp_path / "form.pdf"), out, compression="group4")
    [page] = pages_of(out)
    assert page.size == (FAX_WIDTH, SIZES["A4"][1])
    left = (FAX_WIDTH - round(SIZES["A4"][0][0] * 204 / 72)) // 2
    field = page.crop((left + 72 * 204 // 72, round((841.89 - 760) * 196 / 72),
                       left + 500 * 204 // 72, round((841.89 - 700) * 196 / 72)))
    black = page.histogram()[0]
    assert black > 1000  # the value is there, in black
    assert field.histogram()[0] == black == outcome.first_page_black  # and only in the field


def test_the_threshold_makes_dark_grey_black_and_light_grey_white() -> None:
    grey = np.full((2, FAX_WIDTH), 255, dtype=np.uint8)
    grey[0, :8] = THRESHOLD - 1  # dark enough: ink
    grey[1, :8] = THRESHOLD  # light: paper
    bits = bilevel(grey)
    assert bits.shape == (2, ROW_BYTES)
    assert bits[0, 0] == 0xFF and bits[1, 0] == 0 and not bits[:, 1:].any()


def test_writer_pages_read_back_as_written(tmp_path: Path) -> None:
    out = fresh(tmp_path / "written.tif")
    heights = [40, 25]
    with FaxTiffWriter(out, compression="group4", pages=2, width=FAX_WIDTH,
                       dpi=(204, 196)) as writer:
        coded = []
        for height in heights:
            bits = bytearray(ROW_BYTES * height)
            bits[:ROW_BYTES] = b"\xff" * ROW_BYTES  # first row all ink
            coded.append(writer.add_page(bits, height))
    pages = pages_of(out)
    assert [page.size for page in pages] == [(FAX_WIDTH, height) for height in heights]
    for page in pages:
        assert page.mode == "1"
        assert page.histogram()[0] == FAX_WIDTH  # ink written as 1-bits reads as black
        assert page.getpixel((0, 0)) == 0 and page.getpixel((0, 1)) == 255
    directories = read_directories(out, limit=10)
    for number, directory in enumerate(directories):
        assert directory[262] == (0,)  # WhiteIsZero
        assert directory[254] == (2,)  # page of a multi-page document
        assert directory[297] == (number, 2)  # PageNumber: page, total
        assert directory[278] == (heights[number],)  # one strip
        assert directory[279] == (coded[number],)


def test_writer_refuses_what_is_not_a_page(tmp_path: Path) -> None:
    out = fresh(tmp_path / "refuse.tif")
    with pytest.raises(ValueError, match="compression"):
        FaxTiffWriter(out, compression="lzw", pages=1, width=FAX_WIDTH, dpi=(204, 196))
    writer = FaxTiffWriter(out, compression="group3", pages=1, width=FAX_WIDTH, dpi=(204, 196))
    with pytest.raises(ValueError, match="bytes for 10 rows"):
        writer.add_page(bytearray(ROW_BYTES * 9), 10)
    writer.close()
    with pytest.raises(LibtiffError, match="closed"):
        writer.add_page(bytearray(ROW_BYTES), 1)
    writer.close()  # twice: nothing happens


def test_writer_does_not_follow_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    (tmp_path / "link.tif").symlink_to(target)
    with pytest.raises(OSError):
        FaxTiffWriter(tmp_path / "link.tif", compression="group4", pages=1, width=FAX_WIDTH,
                      dpi=(204, 196))
    assert target.read_bytes() == b"keep"


def test_directory_reader_refuses_broken_files(tmp_path: Path) -> None:
    not_tiff = tmp_path / "not.tif"
    not_tiff.write_bytes(b"%PDF-1.7\n")
    with pytest.raises(TiffStructureError, match="not a"):
        read_directories(not_tiff, limit=5)
    # One directory whose "next directory" points back at itself.
    looping = tmp_path / "loop.tif"
    looping.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0)
                        + struct.pack("<I", 8))
    with pytest.raises(TiffStructureError, match="loops"):
        read_directories(looping, limit=5)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 3))
    with pytest.raises(TiffStructureError, match="past the end"):
        read_directories(cut, limit=5)


def test_check_catches_a_page_that_is_not_the_one_written(tmp_path: Path) -> None:
    pdf = striped_pdf(tmp_path / "two.pdf", ["A4", "A4"])
    out = fresh(tmp_path / "two.tif")
    outcome = rasterise(pdf, out, compression="group4")
    swapped = tuple(reversed(outcome.coded_bytes))
    with pytest.raises(DocumentError, match="page 1: .* coded bytes"):
        check_tiff(out, pages=2, compression="group4", coded_bytes=swapped)
    with pytest.raises(DocumentError, match="more than 1 pages, expected 1"):
        check_tiff(out, pages=1, compression="group4")
    # Cut short: the last page's strip ends past the end of the file.
    data = out.read_bytes()
    last = read_directories(out, limit=5)[-1]
    end = int(last[273][0] + last[279][0])
    out.write_bytes(data[:end - 10])
    with pytest.raises(DocumentError, match="failed its check"):
        check_tiff(out, pages=2, compression="group4")


def test_a_rasterising_process_does_not_import_the_pdf_writers() -> None:
    # A rasterising process of its own starts by importing this module: it must stay light.
    code = ("import sys, faxgw.render.raster; "
            "print(sorted(m for m in ('pypdf', 'fpdf', 'img2pdf') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "[]"


def test_a_write_that_fails_midway_fails_the_rasterising(tmp_path: Path) -> None:
    # The file may grow to two pages only (RLIMIT_FSIZE, in a process of its own): libtiff
    # fails on the third, in the coding thread, and the rendering thread raises it.
    pdf = striped_pdf(tmp_path / "five.pdf", ["A4"] * 5)
    out = fresh(tmp_path / "five.tif")
    code = f"""
import resource, signal
from pathlib import Path
from faxgw.render.raster import rasterise
from faxgw.render.libtiff import LibtiffError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
first = rasterise(Path({str(pdf)!r}), Path({str(out)!r}), compression="group3")
two_pages = sum(first.coded_bytes[:2]) + 2000
resource.setrlimit(resource.RLIMIT_FSIZE, (two_pages, resource.RLIM_INFINITY))
try:
    rasterise(Path({str(pdf)!r}), Path({str(out)!r}), compression="group3")
except LibtiffError as exc:
    print("failed:", exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    # Its strip or its directory, whichever write crosses the limit first.
    assert re.fullmatch(r"failed: libtiff could not (code|write) page 3", result.stdout.strip())
