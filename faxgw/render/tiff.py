"""A rendered fax PDF as a multi-page bilevel TIFF at fax resolution (TIFF-F style).

Pages are rasterised by pdfium at 204 × 196 dpi, 1728 pixels wide, made bilevel by a plain
threshold and coded CCITT Group 4 (MMR) or Group 3 (MH, 1-D) by libtiff, with
PhotometricInterpretation 0 (WhiteIsZero), the fax convention: fax coders call 0-bits white,
and a T.37 offramp that passes the coded lines to the fax line unchanged would otherwise send
a negative. How a page is made is :mod:`faxgw.render.raster`'s concern; this module runs it
and checks what it wrote.

pdfium is not thread-safe, and the gateway may render from threads: there the rasterising
runs in a child process of its own (``spawn``, never ``fork``, which is unsafe in the
gateway's threaded process), one per call. A render process (:mod:`faxgw.render.process`),
which renders one job at a time and is itself stopped when it runs out of time, rasterises
in itself instead (:func:`rasterise_here`): no process is started per job, and none can
outlive a render process that was killed. Either way a long document may be shared with
helper processes forked for it (:mod:`faxgw.render.parts`), which end with the process that
forked them. The TIFF is written to a temporary name next to the target, read back with
Pillow and checked (see :func:`check_tiff`), then fsynced and renamed into place.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import COMPRESSION_INFO
from pypdf import PdfReader

from ..domain.codes import DOCUMENT_UNREADABLE, INTERNAL
from ..domain.errors import DocumentError
from ..fsutil import TEMP_SUFFIX, fsync_dir
from .libtiff import (
    BITS_PER_SAMPLE,
    COMPRESSION,
    IMAGE_WIDTH,
    PHOTOMETRIC,
    RESOLUTION_UNIT,
    SAMPLES_PER_PIXEL,
    STRIP_BYTE_COUNTS,
    STRIP_OFFSETS,
    X_RESOLUTION,
    Y_RESOLUTION,
)
from .parts import processes_for
from .pdfinput import PDFIUM_LOCK
from .raster import FAX_WIDTH, X_DPI, Y_DPI, Outcome, RasterFailure, child_main, rasterise
from .rendered import Rendered
from .tiff_ifd import Directory, read_directories

__all__ = ["COMPRESSIONS", "FAX_WIDTH", "X_DPI", "Y_DPI", "check_tiff", "pdf_to_tiff",
           "rasterise_here"]

log = logging.getLogger("faxgw.render")

#: Compressions faxgw writes, as Pillow names them.
COMPRESSIONS = ("group4", "group3")
#: Seconds allowed for the child, on top of SECONDS_PER_PAGE per page.
BASE_TIMEOUT = 60.0
SECONDS_PER_PAGE = 10.0

# Set in a render process: rasterise in this process rather than in a child of its own.
_here = False


def rasterise_here(enabled: bool = True) -> None:
    """Rasterise in this process from now on (a render process, which renders one job at a
    time and is stopped as a whole when a job runs out of time)."""
    global _here
    _here = enabled


def pdf_to_tiff(
    pdf: Path,
    out: Path,
    *,
    compression: str = "group4",
    timeout: float | None = None,
    pages: int | None = None,
) -> Rendered:
    """Write the PDF ``pdf`` as a multi-page bilevel fax TIFF at ``out``; describe it.

    ``compression`` is ``"group4"`` (CCITT T.6, MMR) or ``"group3"`` (CCITT T.4 1-D, MH).
    ``timeout`` limits the rasterising child (default: 60 s + 10 s per page); it is killed
    when the time is up. In a render process (:func:`rasterise_here`) there is no child, and
    the render process's own time limit applies. Raises
    :class:`~faxgw.domain.errors.DocumentError` with code 410 when pdfium cannot render a
    page, and code 590 (internal) when the child fails, times out or the file read back
    does not pass the checks. Nothing is left at ``out`` on failure.

    ``pages``: the PDF's page count as pypdf read it when the PDF was made (the attachment
    faxgw just rendered); counted here when not given. pdfium's pages, one TIFF page each,
    must come to that count.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
    pdf, out = Path(pdf), Path(out)
    if pages is None:
        pages = len(PdfReader(pdf).pages)
    limit = timeout if timeout is not None else BASE_TIMEOUT + SECONDS_PER_PAGE * pages
    handle, temp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.",
                                            suffix=TEMP_SUFFIX)
    os.close(handle)
    temp = Path(temp_name)
    try:
        outcome = _rasterise_here(pdf, temp, compression) if _here else _run_child(
            pdf, temp, compression, limit)
        if outcome.error is not None:
            code = INTERNAL if outcome.internal else DOCUMENT_UNREADABLE
            raise DocumentError(f"{out.name}: {outcome.error}", code=code, filename=out.name)
        check_tiff(temp, pages=pages, compression=compression,
                   first_page_black=outcome.first_page_black, coded_bytes=outcome.coded_bytes,
                   name=out.name)
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
    first_page_black: int | None = None,
    coded_bytes: tuple[int, ...] | None = None,
    name: str | None = None,
) -> None:
    """Raise :class:`DocumentError` (code 590) unless ``path`` is the fax TIFF expected.

    Checks the page count, and every page's directory: width 1728, bilevel, ``compression``,
    204 x 196 dpi, WhiteIsZero, its one strip inside the file and (when given) of the size
    ``coded_bytes`` says was written for it. The first page is decoded by Pillow: it must
    read back as a bilevel page 1728 wide with ``first_page_black`` black pixels (when
    given), so a page written inverted fails. The others are not decoded, which would cost
    about as much as making them: they are made the same way, and their coded sizes show
    that each directory describes the page written for it, in order.
    """
    label = name or path.name

    def fail(problem: str) -> DocumentError:
        return DocumentError(f"{label}: the fax TIFF failed its check: {problem}",
                             code=INTERNAL, filename=label)

    try:
        size = path.stat().st_size
        directories = read_directories(path, limit=pages + 1)
        if len(directories) != pages:
            count = str(len(directories)) if len(directories) <= pages else f"more than {pages}"
            raise fail(f"{count} pages, expected {pages}")
        for index, directory in enumerate(directories):
            _check_page(directory, index, compression, size, coded_bytes, fail)
        if pages:
            with Image.open(path, formats=["TIFF"]) as image:
                _check_first_page(image, first_page_black, fail)
    except DocumentError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise fail(f"it cannot be read back ({exc})") from exc


def _check_page(directory: Directory, index: int, compression: str, size: int,
                coded_bytes: tuple[int, ...] | None,
                fail: Callable[[str], DocumentError]) -> None:
    """One page's directory: what a fax page has, and its strip as it was written."""

    def tag(number: int, default: float = 0) -> float:
        return directory.get(number, (default,))[0]

    problems: list[str] = []
    if tag(IMAGE_WIDTH) != FAX_WIDTH:
        problems.append(f"width {tag(IMAGE_WIDTH):.0f}, expected {FAX_WIDTH}")
    if tag(BITS_PER_SAMPLE, 1) != 1 or tag(SAMPLES_PER_PIXEL, 1) != 1:
        problems.append("not bilevel")
    written = COMPRESSION_INFO.get(int(tag(COMPRESSION, 1)), str(tag(COMPRESSION, 1)))
    if written != compression:
        problems.append(f"compression {written}, expected {compression}")
    dpi = (round(tag(X_RESOLUTION)), round(tag(Y_RESOLUTION)))
    if dpi != (X_DPI, Y_DPI) or tag(RESOLUTION_UNIT, 2) != 2:
        problems.append(f"resolution {dpi}, expected ({X_DPI}, {Y_DPI})")
    photometric = directory.get(PHOTOMETRIC, ("none",))[0]
    if photometric != 0:
        problems.append(f"PhotometricInterpretation {photometric}, expected 0 (WhiteIsZero)")
    offsets, counts = directory.get(STRIP_OFFSETS, ()), directory.get(STRIP_BYTE_COUNTS, ())
    if len(offsets) != 1 or len(counts) != 1:
        problems.append(f"{len(offsets)} strips, expected 1")
    elif offsets[0] + counts[0] > size:
        problems.append("its strip ends past the end of the file")
    elif coded_bytes is not None and counts[0] != coded_bytes[index]:
        problems.append(f"{counts[0]:.0f} coded bytes, {coded_bytes[index]} were written")
    if problems:
        raise fail(f"page {index + 1}: {'; '.join(problems)}")


def _check_first_page(image: Image.Image, black_pixels: int | None,
                      fail: Callable[[str], DocumentError]) -> None:
    """Page 1 as Pillow decodes it: bilevel, 1728 wide, and as black as it was written."""
    if image.mode != "1" or image.width != FAX_WIDTH:
        raise fail(f"page 1 reads back as {image.mode} {image.width} wide, expected 1 "
                   f"(bilevel) {FAX_WIDTH} wide")
    if black_pixels is not None:
        black = image.histogram()[0]
        if black != black_pixels:
            raise fail(f"page 1 reads back with {black} black pixels, "
                       f"{black_pixels} were written")


def _run_child(pdf: Path, temp: Path, compression: str, timeout: float) -> Outcome:
    """Rasterise in a spawned child; kill it if it takes longer than ``timeout`` seconds."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=child_main,
        args=(sender, str(pdf), str(temp), compression, processes_for(compression)),
        name="faxgw-rasterise",
        daemon=True,
    )
    try:
        process.start()
        sender.close()  # the child holds the only writing end: EOF means it is gone
        if not receiver.poll(timeout):
            return Outcome(error=f"rasterising took longer than {timeout:.0f} s and was "
                                 "stopped", internal=True)
        try:
            outcome = receiver.recv()
        except EOFError:
            process.join(5)
            return Outcome(error="the rasterising process ended without a result "
                                 f"(exit code {process.exitcode})", internal=True)
        assert isinstance(outcome, Outcome)
        return outcome
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        if process.pid is not None:
            process.join(5)
            if process.exitcode is not None:  # close() refuses a process still running
                process.close()


def _rasterise_here(pdf: Path, out: Path, compression: str) -> Outcome:
    """Rasterise in this process (one pdfium user at a time); the outcome as a child's."""
    try:
        with PDFIUM_LOCK:
            return rasterise(pdf, out, compression=compression,
                             processes=processes_for(compression))
    except RasterFailure as exc:
        return Outcome(error=str(exc))
    except MemoryError:
        raise  # the render process's to handle (it ends itself), as for any document
    except Exception as exc:  # raised as DocumentError(590) by pdf_to_tiff
        return Outcome(error=f"rasterising failed: {type(exc).__name__}: {exc}",
                       internal=True)
