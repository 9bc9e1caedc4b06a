"""A rendered fax PDF as a multi-page bilevel TIFF at fax resolution (TIFF-F style).

Each page is rasterised by pypdfium2 at 204 dpi (one scale for both axes), scaled vertically
to 196 dpi ("fine" fax resolution), fitted into the fax page width of 1728 pixels (scaled
down if wider, centred on white if narrower), and made bilevel by a plain threshold: no
dithering, which would fray the edges of letters into dots. Pages are CCITT Group 4 (MMR) or
Group 3 (MH, 1-D) coded by Pillow's libtiff, with PhotometricInterpretation 0 (WhiteIsZero),
the fax convention: fax coders call 0-bits white, and a T.37 offramp that passes the coded
lines to the fax line unchanged would otherwise send a negative.

Each page is made with its ink as 1-bits already and written as it is; the one tag that says
so (PhotometricInterpretation 0) is then set in place in each page's directory. Asking Pillow
for WhiteIsZero instead makes it invert a bilevel page pixel by pixel in Python: a second per
page, nearly all of the time a long document took.

pdfium is not thread-safe, and the gateway may render from threads: there the rasterising
runs in a child process of its own (``spawn``, never ``fork``, which is unsafe in a threaded
process), one per call. A render process (:mod:`faxgw.render.process`), which renders one
job at a time and is itself stopped when it runs out of time, rasterises in itself instead
(:func:`rasterise_here`): no process is started per job, and none can outlive a render
process that was killed. Either way the TIFF is written to a temporary name next to the
target with each page's black pixel count; it is read back with Pillow and checked (page
count, width, resolution, compression, mode and the black pixel counts: a page written
inverted fails there), then fsynced and renamed into place.

What Pillow cannot write: ``PageNumber`` (its libtiff path writes a wrong value, so it is
left out) and ``FillOrder`` 2; see docs/fax-output.md for the profile S / F comparison.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps
from pypdf import PdfReader

from ..domain.codes import DOCUMENT_UNREADABLE, INTERNAL
from ..domain.errors import DocumentError
from ..fsutil import fsync_dir
from .pdf import Rendered
from .pdfinput import PDFIUM_LOCK
from .tiff_tags import PHOTOMETRIC, set_white_is_zero

if TYPE_CHECKING:
    from pypdfium2 import PdfPage  # type: ignore[import-untyped]

log = logging.getLogger("faxgw.render")

#: The fax page width in pixels at 204 dpi (ITU-T T.4: 1728 picture elements, 215 mm).
FAX_WIDTH = 1728
#: Horizontal resolution of a fax (T.4: 8 pels/mm, as TIFF-F states it: 204 dpi).
X_DPI = 204
#: Vertical resolution: "fine" (7.7 lines/mm). Standard resolution would be 98.
Y_DPI = 196
#: Grey levels below this become black. Above the midpoint on purpose: the anti-aliased
#: edges of thin strokes are kept black, so small type does not break up on the fax.
THRESHOLD = 160
#: Compressions faxgw writes, as Pillow names them.
COMPRESSIONS = ("group4", "group3")
#: TIFF tag numbers used here.
NEW_SUBFILE_TYPE = 254
ROWS_PER_STRIP = 278
#: NewSubfileType bit 1: "a single page of a multi-page image" (TIFF 6.0, required by TIFF-F).
PAGE_OF_MULTIPAGE = 2
#: Seconds allowed for the child, on top of SECONDS_PER_PAGE per page.
BASE_TIMEOUT = 60.0
SECONDS_PER_PAGE = 10.0

#: Grey level → bilevel pixel: ink (below THRESHOLD) 255, paper 0.
_INK = [255 if level < THRESHOLD else 0 for level in range(256)]

# Set in a render process: rasterise in this process rather than in a child of its own.
_here = False


def rasterise_here(enabled: bool = True) -> None:
    """Rasterise in this process from now on (a render process, which renders one job at a
    time and is stopped as a whole when a job runs out of time)."""
    global _here
    _here = enabled


class _RasterFailure(Exception):
    """Raised in the child when pdfium cannot render the PDF; sent to the parent as text."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the child sends back: the black pixel count of each page, or why it failed."""

    black_pixels: tuple[int, ...] = ()
    error: str | None = None
    internal: bool = False


def pdf_to_tiff(
    pdf: Path,
    out: Path,
    *,
    compression: str = "group4",
    timeout: float | None = None,
) -> Rendered:
    """Write the PDF ``pdf`` as a multi-page bilevel fax TIFF at ``out``; describe it.

    ``compression`` is ``"group4"`` (CCITT T.6, MMR) or ``"group3"`` (CCITT T.4 1-D, MH).
    ``timeout`` limits the rasterising child (default: 60 s + 10 s per page); it is killed
    when the time is up. In a render process (:func:`rasterise_here`) there is no child, and
    the render process's own time limit applies. Raises
    :class:`~faxgw.domain.errors.DocumentError` with code 410 when pdfium cannot render a
    page, and code 590 (internal) when the child fails, times out or the file read back
    does not pass the checks. Nothing is left at ``out`` on failure.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
    pdf, out = Path(pdf), Path(out)
    pages = len(PdfReader(pdf).pages)
    limit = timeout if timeout is not None else BASE_TIMEOUT + SECONDS_PER_PAGE * pages
    handle, temp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        outcome = _rasterise_here(pdf, temp, compression) if _here else _run_child(
            pdf, temp, compression, limit)
        if outcome.error is not None:
            code = INTERNAL if outcome.internal else DOCUMENT_UNREADABLE
            raise DocumentError(f"{out.name}: {outcome.error}", code=code, filename=out.name)
        check_tiff(temp, pages=pages, compression=compression,
                   black_pixels=outcome.black_pixels, name=out.name)
        with temp.open("rb") as file:
            os.fsync(file.fileno())  # the child wrote it; make it durable before the rename
        os.replace(temp, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    size = out.stat().st_size
    log.debug("%s: %d pages, %s, %d bytes", out, pages, compression, size)
    return Rendered(path=out, pages=pages, bytes=size)


def check_tiff(
    path: Path,
    *,
    pages: int,
    compression: str,
    black_pixels: tuple[int, ...] | None = None,
    name: str | None = None,
) -> None:
    """Raise :class:`DocumentError` (code 590) unless ``path`` is the fax TIFF expected.

    Checks the page count, and on every page: width 1728, mode ``"1"``, ``compression``,
    204 x 196 dpi, WhiteIsZero, and (when given) each page's number of black pixels.
    """
    label = name or path.name

    def fail(problem: str) -> DocumentError:
        return DocumentError(f"{label}: the fax TIFF failed its check: {problem}",
                             code=INTERNAL, filename=label)

    try:
        with Image.open(path, formats=["TIFF"]) as image:
            frames = getattr(image, "n_frames", 1)
            if frames != pages:
                raise fail(f"{frames} pages, expected {pages}")
            for index in range(frames):
                image.seek(index)
                _check_page(image, index + 1, compression, fail)
                if black_pixels is not None:
                    black = image.histogram()[0]
                    if black != black_pixels[index]:
                        raise fail(f"page {index + 1} reads back with {black} black pixels, "
                                   f"{black_pixels[index]} were written")
    except DocumentError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise fail(f"Pillow cannot read it back ({exc})") from exc


def _check_page(
    image: Image.Image, number: int, compression: str, fail: Callable[[str], DocumentError]
) -> None:
    problems: list[str] = []
    if image.width != FAX_WIDTH:
        problems.append(f"width {image.width}, expected {FAX_WIDTH}")
    if image.mode != "1":
        problems.append(f"mode {image.mode}, expected 1 (bilevel)")
    if image.info.get("compression") != compression:
        problems.append(f"compression {image.info.get('compression')}, expected {compression}")
    dpi = tuple(round(float(value)) for value in image.info.get("dpi", (0, 0)))
    if dpi != (X_DPI, Y_DPI):
        problems.append(f"resolution {dpi}, expected ({X_DPI}, {Y_DPI})")
    photometric = getattr(image, "tag_v2", {}).get(PHOTOMETRIC)
    if photometric != 0:
        problems.append(f"PhotometricInterpretation {photometric}, expected 0 (WhiteIsZero)")
    if problems:
        raise fail(f"page {number}: {'; '.join(problems)}")


def _run_child(pdf: Path, temp: Path, compression: str, timeout: float) -> _Outcome:
    """Rasterise in a spawned child; kill it if it takes longer than ``timeout`` seconds."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main,
        args=(sender, str(pdf), str(temp), compression),
        name="faxgw-rasterise",
        daemon=True,
    )
    try:
        process.start()
        sender.close()  # the child holds the only writing end: EOF means it is gone
        if not receiver.poll(timeout):
            return _Outcome(error=f"rasterising took longer than {timeout:.0f} s and was "
                                  "stopped", internal=True)
        try:
            outcome = receiver.recv()
        except EOFError:
            process.join(5)
            return _Outcome(error="the rasterising process ended without a result "
                                  f"(exit code {process.exitcode})", internal=True)
        assert isinstance(outcome, _Outcome)
        return outcome
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        if process.pid is not None:
            process.join(5)
            if process.exitcode is not None:  # close() refuses a process still running
                process.close()


def _rasterise_here(pdf: Path, out: Path, compression: str) -> _Outcome:
    """Rasterise in this process (one pdfium user at a time); the outcome as a child's."""
    try:
        with PDFIUM_LOCK:
            counts = rasterise(pdf, out, compression=compression)
        return _Outcome(black_pixels=tuple(counts))
    except _RasterFailure as exc:
        return _Outcome(error=str(exc))
    except MemoryError:
        raise  # the render process's to handle (it ends itself), as for any document
    except Exception as exc:  # raised as DocumentError(590) by pdf_to_tiff
        return _Outcome(error=f"rasterising failed: {type(exc).__name__}: {exc}",
                        internal=True)


def _child_main(sender: Connection, pdf: str, out: str, compression: str) -> None:
    """Entry point of the rasterising child: render, write the TIFF, report."""
    try:
        counts = rasterise(Path(pdf), Path(out), compression=compression)
        outcome = _Outcome(black_pixels=tuple(counts))
    except _RasterFailure as exc:
        outcome = _Outcome(error=str(exc))
    except Exception as exc:  # reported to the parent, which raises DocumentError(590)
        outcome = _Outcome(error=f"rasterising failed: {type(exc).__name__}: {exc}",
                           internal=True)
    try:
        sender.send(outcome)
    finally:
        sender.close()


def rasterise(pdf: Path, out: Path, *, compression: str = "group4") -> list[int]:
    """Rasterise ``pdf`` into the fax TIFF ``out`` in *this* process; return black pixels
    per page.

    Not thread-safe (pdfium): call it in a process of its own, as :func:`pdf_to_tiff` does.
    Pages are written one at a time, so memory does not grow with the page count.
    """
    import pypdfium2 as pdfium
    from PIL.TiffImagePlugin import AppendingTiffWriter

    try:
        document = pdfium.PdfDocument(str(pdf))
    except pdfium.PdfiumError as exc:
        raise _RasterFailure(f"pdfium cannot open the PDF: {exc}") from exc
    counts: list[int] = []
    try:
        # Form fields show their values only when pdfium's form environment is set up
        # before the pages are loaded.
        document.init_forms()
        # Without form fields a page is rendered at 204 x 196 dpi at once; pdfium draws
        # form fields only at one scale for both axes, so with them the page is rendered at
        # 204 dpi and scaled to 196 dpi vertically.
        direct = pdfium.raw.FPDF_GetFormType(document) == pdfium.raw.FORMTYPE_NONE
        with AppendingTiffWriter(str(out), new=True) as writer:
            for index in range(len(document)):
                page = document[index]
                try:
                    frame = _page_to_bilevel(page, direct=direct)
                except pdfium.PdfiumError as exc:
                    raise _RasterFailure(f"pdfium cannot render page {index + 1}: {exc}") from exc
                finally:
                    page.close()
                # Ink is 255 (1-bits) here: the black pixels of the page.
                counts.append(frame.histogram()[255])
                frame.save(
                    writer,
                    format="TIFF",
                    compression=compression,
                    dpi=(X_DPI, Y_DPI),
                    software="faxgw",
                    tiffinfo={
                        NEW_SUBFILE_TYPE: PAGE_OF_MULTIPAGE,
                        # One strip per page, as fax software writes it (TIFF-F).
                        ROWS_PER_STRIP: frame.height,
                    },
                )
                writer.newFrame()
    finally:
        document.close()
    set_white_is_zero(out, len(counts))
    return counts


def _render_at_fax_resolution(page: PdfPage) -> Image.Image:
    """The page in grey at 204 x 196 dpi, centred on white in the fax width, in one pass
    (pdfium with a transform matrix: nothing is resampled afterwards)."""
    import ctypes

    import pypdfium2 as pdfium

    raw = pdfium.raw
    width_pt, height_pt = page.get_size()
    # Pages wider than the fax line are scaled down to fit it rather than cut.
    x_scale = min(X_DPI / 72, FAX_WIDTH / width_pt)
    y_scale = x_scale * Y_DPI / X_DPI
    width = min(FAX_WIDTH, max(1, round(width_pt * x_scale)))
    height = max(1, round(height_pt * y_scale))
    left = (FAX_WIDTH - width) // 2
    bitmap = pdfium.PdfBitmap.new_native(FAX_WIDTH, height, raw.FPDFBitmap_Gray)
    bitmap.fill_rect((255, 255, 255, 255), 0, 0, FAX_WIDTH, height)
    matrix = raw.FS_MATRIX(x_scale, 0, 0, y_scale, left, 0)
    clipping = raw.FS_RECTF(0, 0, FAX_WIDTH, height)
    raw.FPDF_RenderPageBitmapWithMatrix(bitmap, page, ctypes.byref(matrix),
                                        ctypes.byref(clipping),
                                        raw.FPDF_ANNOT | raw.FPDF_GRAYSCALE)
    grey: Image.Image = bitmap.to_pil().convert("L")
    return grey


def _page_to_bilevel(page: PdfPage, *, direct: bool = False) -> Image.Image:
    """One pdfium page as a bilevel image 1728 pixels wide at 204 x 196 dpi."""
    if direct:
        grey = _render_at_fax_resolution(page)
    else:
        width_pt, _height_pt = page.get_size()
        # One scale for both axes (pdfium has no other for form fields); pages wider than
        # the fax line are scaled down to fit it rather than cut.
        scale = min(X_DPI / 72, FAX_WIDTH / width_pt)
        bitmap = page.render(scale=scale, grayscale=True)
        grey = bitmap.to_pil().convert("L")
        height = max(1, round(grey.height * Y_DPI / X_DPI))
        grey = grey.resize((grey.width, height), Image.Resampling.LANCZOS)
    if grey.width < FAX_WIDTH:
        left = (FAX_WIDTH - grey.width) // 2
        grey = ImageOps.expand(grey, border=(left, 0, FAX_WIDTH - grey.width - left, 0),
                               fill=255)
    elif grey.width > FAX_WIDTH:  # rounding of the scale: at most a pixel or two
        grey = grey.crop((0, 0, FAX_WIDTH, grey.height))
    # Ink as 1-bits, paper as 0: the bits WhiteIsZero means (see set_white_is_zero). One
    # table lookup from grey to bilevel, no dithering.
    return grey.point(_INK, "1")
