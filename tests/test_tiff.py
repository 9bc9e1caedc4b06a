"""Fax TIFF output: read back with Pillow, tags, pages, resolution, width, legibility.

Each conversion starts a rasterising process (about half a second), so the files are
made once per module and the tests look at them.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import TiffImageFile

from faxgw.domain import codes
from faxgw.domain.errors import DocumentError
from faxgw.render import render_pdf
from faxgw.render.tiff import FAX_WIDTH, check_tiff, pdf_to_tiff

from . import documents as docs

SAMPLES = Path(__file__).resolve().parent.parent / "faxgw" / "samples"
TIFF_TAGS = {"compression": 259, "photometric": 262, "new_subfile_type": 254}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiff")


@pytest.fixture(scope="module")
def letter_g4(work: Path) -> Path:
    """The vector sample letter (2 A4 pages) as a Group 4 fax TIFF."""
    pdf = render_pdf([SAMPLES / "letter.pdf"], work / "letter.pdf")
    return pdf_to_tiff(pdf.path, work / "letter.tif", compression="group4").path


@pytest.fixture(scope="module")
def scan_g3(work: Path) -> Path:
    """The scanned JPEG sample as a Group 3 (MH) fax TIFF."""
    pdf = render_pdf([SAMPLES / "scan.jpg"], work / "scan.pdf")
    return pdf_to_tiff(pdf.path, work / "scan.tif", compression="group3").path


def frames(path: Path) -> Iterator[TiffImageFile]:
    with Image.open(path) as image:
        assert isinstance(image, TiffImageFile)
        for index in range(image.n_frames):
            image.seek(index)
            image.load()
            yield image


def black_ratio(page: Image.Image) -> float:
    return page.histogram()[0] / (page.width * page.height)


@pytest.mark.parametrize(("fixture", "pages", "compression", "tag"), [
    ("letter_g4", 2, "group4", 4), ("scan_g3", 1, "group3", 3),
])
def test_tiff_reads_back_as_a_fax(request: pytest.FixtureRequest, fixture: str, pages: int,
                                  compression: str, tag: int) -> None:
    path: Path = request.getfixturevalue(fixture)
    with Image.open(path) as image:
        assert isinstance(image, TiffImageFile)
        assert image.format == "TIFF"
        assert image.n_frames == pages
    for page in frames(path):
        assert page.mode == "1"
        assert page.width == FAX_WIDTH == 1728
        # A4 (297 mm, 841.89 pt) at 196 lines per inch.
        assert abs(page.height - round(841.89 / 72 * 196)) <= 1
        assert page.info["compression"] == compression
        assert tuple(round(value) for value in page.info["dpi"]) == (204, 196)
        assert page.tag_v2[TIFF_TAGS["compression"]] == tag
        # WhiteIsZero, the fax convention (TIFF-F, profile S).
        assert page.tag_v2[TIFF_TAGS["photometric"]] == 0
        assert page.tag_v2[TIFF_TAGS["new_subfile_type"]] == 2
        assert page.tag_v2[296] == 2  # ResolutionUnit: inch
        assert page.tag_v2[278] == page.height  # one strip per page


def test_vector_letter_is_legible(letter_g4: Path) -> None:
    first = next(frames(letter_g4))
    # Text on white: a few per cent black. Far more would be a negative or a grey fill
    # thresholded to black; none would be text lost to the threshold.
    assert 0.005 < black_ratio(first) < 0.20
    # Black and white are where a letter has them: white margins, text in the upper part.
    assert first.getpixel((10, 10)) == 255
    assert first.getpixel((FAX_WIDTH - 10, first.height - 10)) == 255
    upper = first.crop((0, 0, first.width, first.height // 3))
    assert black_ratio(upper) > black_ratio(first)


def test_scan_is_legible(scan_g3: Path) -> None:
    page = next(frames(scan_g3))
    assert 0.005 < black_ratio(page) < 0.20


def test_letter_size_page_is_fitted_into_the_fax_width(work: Path) -> None:
    # US Letter is 612 pt wide: 1734 pixels at 204 dpi, wider than the fax line.
    pdf = render_pdf([docs.letter_pdf(work / "us.pdf")], work / "us-fax.pdf", paper="Letter")
    tiff = pdf_to_tiff(pdf.path, work / "us.tif")
    assert tiff.pages == 1
    page = next(frames(tiff.path))
    assert page.width == FAX_WIDTH
    assert abs(page.height - round(792 / 72 * 196 * 1728 / 1734)) <= 2
    # The drawn frame (36 pt inside the page edge) is still on the page on both sides.
    row = page.crop((0, page.height // 2, page.width, page.height // 2 + 1))
    black_columns = [x for x in range(page.width) if row.getpixel((x, 0)) == 0]
    assert black_columns and black_columns[0] > 50 and black_columns[-1] < FAX_WIDTH - 50


def test_rendered_describes_the_tiff(letter_g4: Path) -> None:
    assert letter_g4.name == "letter.tif"
    assert not list(letter_g4.parent.glob(".*.tmp")), "no temporary files are left"


def test_conversions_from_several_threads(work: Path) -> None:
    # The worker converts from threads; pdfium is not thread-safe, so each call has its
    # own process and the results must not mix.
    sources = {
        "three": docs.text_pdf(work / "three.pdf", 3, label="Three"),
        "one": docs.text_pdf(work / "one.pdf", 1, label="One"),
    }
    rendered = {name: render_pdf([path], work / f"{name}-fax.pdf")
                for name, path in sources.items()}

    def convert(name: str) -> tuple[str, int]:
        result = pdf_to_tiff(rendered[name].path, work / f"{name}.tif")
        return name, result.pages

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(convert, ["three", "one"]))
    assert results == {"three": 3, "one": 1}


def test_check_rejects_a_wrong_page_count(letter_g4: Path) -> None:
    with pytest.raises(DocumentError) as caught:
        check_tiff(letter_g4, pages=3, compression="group4")
    assert caught.value.code == codes.INTERNAL
    assert "2 pages, expected 3" in caught.value.message


def test_the_page_count_given_is_the_one_checked(work: Path) -> None:
    # The attachment's count from when it was rendered: pdfium's pages must come to it.
    pdf = render_pdf([SAMPLES / "letter.pdf"], work / "counted.pdf")
    assert pdf_to_tiff(pdf.path, work / "counted.tif", pages=pdf.pages).pages == 2
    with pytest.raises(DocumentError) as caught:
        pdf_to_tiff(pdf.path, work / "miscounted.tif", pages=3)
    assert caught.value.code == codes.INTERNAL
    assert "2 pages, expected 3" in caught.value.message
    assert not (work / "miscounted.tif").exists()


def test_check_rejects_a_wrong_compression(letter_g4: Path) -> None:
    with pytest.raises(DocumentError, match="compression group4, expected group3"):
        check_tiff(letter_g4, pages=2, compression="group3")


def test_check_rejects_an_inverted_page(letter_g4: Path) -> None:
    # What a Pillow that ignores WhiteIsZero would write: the black pixels become white.
    first = next(frames(letter_g4))
    inverted = first.width * first.height - first.histogram()[0]
    with pytest.raises(DocumentError, match="page 1 reads back with"):
        check_tiff(letter_g4, pages=2, compression="group4", first_page_black=inverted)


def test_check_rejects_a_tiff_that_is_not_a_fax(work: Path) -> None:
    wrong = docs.fax_tiff(work / "narrow.tif", 1, size=(1000, 500), dpi=(200, 200))
    with pytest.raises(DocumentError) as caught:
        check_tiff(wrong, pages=1, compression="group4")
    assert "width 1000, expected 1728" in caught.value.message
    assert "resolution (200, 200), expected (204, 196)" in caught.value.message


def test_a_stuck_rasteriser_is_stopped(work: Path) -> None:
    pdf = render_pdf([SAMPLES / "letter.pdf"], work / "slow.pdf")
    with pytest.raises(DocumentError) as caught:
        pdf_to_tiff(pdf.path, work / "slow.tif", timeout=0.01)
    assert caught.value.code == codes.INTERNAL
    assert "was stopped" in caught.value.message
    assert not (work / "slow.tif").exists()
    assert not list(work.glob(".slow.tif.*"))


def test_unknown_compression() -> None:
    with pytest.raises(ValueError, match="compression"):
        pdf_to_tiff(SAMPLES / "letter.pdf", Path("/nonexistent/x.tif"), compression="lzw")
