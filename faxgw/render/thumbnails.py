"""Small pictures of a rendered fax's pages (PNG), for people to look at before and after
it is sent (the web console's preview and job page).

They are made from the attachment faxgw rendered, never from an original document: a PDF
attachment is drawn by pdfium (holding :data:`~faxgw.render.pdfinput.PDFIUM_LOCK`, as every
use of pdfium in one process does), a fax TIFF is scaled by Pillow, its fine (196 dpi) or
normal (98 dpi) lines brought back to square pixels, so that a page looks as it will print.
Greyscale, a few hundred pixels wide: enough to check what goes out, small to send.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageSequence

from .pdfinput import PDFIUM_LOCK

__all__ = ["PageImage", "page_image", "page_images"]

#: Width of a page picture in pixels: about 50 dpi on A4 or Letter paper, sharp at the size
#: the console shows it on a phone or, at twice its pixels, on a high-density screen.
WIDTH = 400


@dataclass(frozen=True, slots=True)
class PageImage:
    """One page as a PNG, with its size in pixels."""

    png: bytes
    width: int
    height: int


def _png(image: Image.Image) -> PageImage:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return PageImage(buffer.getvalue(), image.width, image.height)


def _is_pdf(path: Path) -> bool:
    return path.suffix.lower() == ".pdf"


def _pdf_pages(path: Path, indexes: range, width: int) -> tuple[list[PageImage], int]:
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    images: list[PageImage] = []
    with PDFIUM_LOCK:
        document = pdfium.PdfDocument(str(path))
        try:
            total = len(document)
            for index in indexes:
                if index >= total:
                    break
                page = document[index]
                try:
                    page_width, _ = page.get_size()
                    bitmap = page.render(scale=width / max(page_width, 1.0), grayscale=True)
                    grey = bitmap.to_pil().convert("L")
                    if grey.width != width:  # pdfium rounds the scaled size up
                        grey = grey.resize((width, max(1, round(
                            grey.height * width / grey.width))), Image.Resampling.LANCZOS)
                finally:
                    page.close()
                images.append(_png(grey))
        finally:
            document.close()
    return images, total


def _tiff_frame(frame: Image.Image, width: int) -> PageImage:
    """A fax page at square pixels, ``width`` wide (its lines are closer than its dots)."""
    x_dpi, y_dpi = frame.info.get("dpi", (204, 196))
    grey = frame.convert("L")
    ratio = (float(x_dpi) / float(y_dpi)) if x_dpi and y_dpi else 1.0
    height = max(1, round(grey.height * ratio * width / grey.width))
    return _png(grey.resize((width, height), Image.Resampling.LANCZOS))


def _tiff_pages(path: Path, indexes: range, width: int) -> tuple[list[PageImage], int]:
    images: list[PageImage] = []
    with Image.open(path) as tiff:
        total = getattr(tiff, "n_frames", 1)
        for index, frame in enumerate(ImageSequence.Iterator(tiff)):
            if index >= indexes.stop:
                break
            if index in indexes:
                images.append(_tiff_frame(frame, width))
    return images, total


def page_images(path: Path, *, limit: int, width: int = WIDTH) -> tuple[list[PageImage], int]:
    """The first ``limit`` pages of the attachment at ``path`` (a PDF or a fax TIFF) as
    pictures ``width`` pixels wide, and how many pages it has."""
    pages = range(max(0, limit))
    return (_pdf_pages if _is_pdf(path) else _tiff_pages)(path, pages, width)


def page_image(path: Path, index: int, *, width: int = WIDTH) -> PageImage | None:
    """Page ``index`` (from 0) of the attachment as a picture; None when it has no such
    page."""
    pages = range(index, index + 1)
    images, _ = (_pdf_pages if _is_pdf(path) else _tiff_pages)(path, pages, width)
    return images[0] if images else None

