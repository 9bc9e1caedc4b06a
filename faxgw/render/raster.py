"""Rasterising a PDF into a fax TIFF, in the process that calls it: pdfium → bits → libtiff.

Each page is rendered by pdfium in grey at 204 × 196 dpi straight into the fax line (one
pass with a transform matrix, centred on white; pages with form fields, which pdfium draws at
one scale for both axes only, are rendered at 204 dpi and scaled to 196 dpi vertically),
turned bilevel by a plain threshold (no dithering, which frays the edges of letters into
dots) and packed into bits with numpy, ink as 1-bits, and handed to libtiff as it is
(:mod:`faxgw.render.libtiff`): the bits WhiteIsZero means, so nothing is inverted.

Rendering and coding overlap: pdfium renders page n + 1 while a second thread thresholds and
codes page n (pdfium, numpy and libtiff all let go of the interpreter lock while they work),
so a document keeps two cores busy. pdfium is used from the calling thread only, since it
is not thread-safe; libtiff from the coding thread only. The thresholding goes to whichever
thread has time: the coder's, unless the coder is behind (Group 4 codes more slowly than
pdfium renders), when the rendering thread does it rather than wait. At most
:data:`PAGES_IN_FLIGHT` pages are held at once, so memory does not grow with the page count.

A long document may be split between processes (:mod:`faxgw.render.parts`): this process
rasterises the first run of pages, forked helpers the others, and their coded pages are
appended as they are. Where there is a process for every core, each keeps its core busy
already and codes its pages in the rendering thread: handing pages to a coding thread on
cores with no time to spare only costs (about a tenth more time, 100 pages on two cores).

This module imports only what rasterising needs (no pypdf, no fpdf2): a rasterising process
of its own (:func:`child_main`) starts in a fraction of a second.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import parts
from .libtiff import IMAGE_LENGTH, STRIP_BYTE_COUNTS, STRIP_OFFSETS, FaxTiffWriter
from .tiff_ifd import read_directories

if TYPE_CHECKING:
    from pypdfium2 import PdfDocument, PdfPage  # type: ignore[import-untyped]

#: The fax page width in pixels at 204 dpi (ITU-T T.4: 1728 picture elements, 215 mm).
FAX_WIDTH = 1728
#: Horizontal resolution of a fax (T.4: 8 pels/mm, as TIFF-F states it: 204 dpi).
X_DPI = 204
#: Vertical resolution: "fine" (7.7 lines/mm). Standard resolution would be 98.
Y_DPI = 196
#: Grey levels below this become black. Above the midpoint on purpose: the anti-aliased
#: edges of thin strokes are kept black, so small type does not break up on the fax.
THRESHOLD = 160
#: Pages rendered but not yet coded, at most (each a grey page of about 4 MB).
PAGES_IN_FLIGHT = 3

_Grey = np.ndarray[Any, np.dtype[np.uint8]]  # rows of grey levels, 0 black, 255 white
_Bits = np.ndarray[Any, np.dtype[np.uint8]]  # rows of packed bits, ink as 1-bits
_Release = Callable[[], None]


class RasterFailure(Exception):
    """pdfium cannot open or render the PDF (the document's fault, not faxgw's)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What rasterising reports: the black pixels of the first page and each page's coded
    size in bytes, or why it failed (``internal``: faxgw's fault, not the document's)."""

    first_page_black: int | None = None
    coded_bytes: tuple[int, ...] = ()
    error: str | None = None
    internal: bool = False


def rasterise(pdf: Path, out: Path, *, compression: str = "group4",
              processes: int = 1) -> Outcome:
    """Rasterise ``pdf`` into the fax TIFF ``out`` (an existing file, overwritten) in *this*
    process, with up to ``processes`` processes in all for a long document (the others
    forked, :mod:`faxgw.render.parts`); what the read-back check compares with
    (:class:`Outcome`).

    Not thread-safe (pdfium): one call at a time in a process. Raises
    :class:`RasterFailure` when pdfium cannot open or render the PDF.
    """
    with _Document(pdf) as document:
        pages = len(document.pdf)
        runs = parts.page_runs(pages, processes if parts.can_fork() else 1)
        # Every core has a process of its own: none is left for a coding thread.
        threaded = len(runs) < parts.cores()
        work = partial(_rasterise_run, pdf, compression, threaded)
        with FaxTiffWriter(out, compression=compression, pages=pages, width=FAX_WIDTH,
                           dpi=(X_DPI, Y_DPI)) as writer, \
                parts.Helpers(out, runs[1:], work) as helpers:
            first_page_black, coded = document.code(runs[0], writer, threaded=threaded)
            for part in helpers.parts():
                coded += _append(writer, part)
        return Outcome(first_page_black=first_page_black, coded_bytes=tuple(coded))


def _rasterise_run(pdf: Path, compression: str, threaded: bool, run: range,
                   out: Path) -> tuple[int, ...]:
    """A helper's work: pages ``run`` of ``pdf`` into a TIFF of their own at ``out``."""
    with _Document(pdf) as document, FaxTiffWriter(
            out, compression=compression, pages=len(run), width=FAX_WIDTH,
            dpi=(X_DPI, Y_DPI)) as writer:
        return tuple(document.code(run, writer, threaded=threaded)[1])


def _append(writer: FaxTiffWriter, part: parts.Part) -> list[int]:
    """The pages a helper coded, appended to ``writer`` as they are; their coded sizes."""
    directories = read_directories(part.path, limit=len(part.coded_bytes) + 1)
    if len(directories) != len(part.coded_bytes):
        raise RuntimeError(f"a helper wrote {len(directories)} pages, "
                           f"{len(part.coded_bytes)} were coded")
    coded: list[int] = []
    with part.path.open("rb") as file:
        for directory, size in zip(directories, part.coded_bytes, strict=True):
            [offset], [count] = directory[STRIP_OFFSETS], directory[STRIP_BYTE_COUNTS]
            if count != size:
                raise RuntimeError(f"a helper's page holds {count:.0f} bytes, {size} were coded")
            file.seek(int(offset))
            coded.append(writer.add_coded_page(file.read(size),
                                               int(directory[IMAGE_LENGTH][0])))
    return coded


class _Document:
    """A PDF opened by pdfium for rasterising, and the pages' way to the fax TIFF."""

    def __init__(self, pdf: Path) -> None:
        import pypdfium2 as pdfium

        self._pdfium = pdfium
        try:
            self.pdf = pdfium.PdfDocument(str(pdf))
        except pdfium.PdfiumError as exc:
            raise RasterFailure(f"pdfium cannot open the PDF: {exc}") from exc
        self._bitmaps = _Bitmaps()
        try:
            # Form fields show their values only when pdfium's form environment is set up
            # before the pages are loaded.
            self.pdf.init_forms()
            self._direct = pdfium.raw.FPDF_GetFormType(self.pdf) == pdfium.raw.FORMTYPE_NONE
        except BaseException:
            self.pdf.close()
            raise

    def __enter__(self) -> _Document:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: object) -> None:
        self._bitmaps.close()  # the coder has stopped: nothing uses them any more
        self.pdf.close()

    def code(self, run: range, writer: FaxTiffWriter, *,
             threaded: bool = True) -> tuple[int | None, list[int]]:
        """Render, threshold and code pages ``run`` into ``writer``: the black pixels of
        page 1 (when in ``run``) and each page's coded size. ``threaded``: coded by a
        thread of its own while the next page renders; otherwise by this one."""
        first_page_black: int | None = None
        with _Coder(writer, threaded=threaded) as coder:
            for index in run:
                try:
                    grey, release = _render_page(self.pdf, index, self._direct, self._bitmaps)
                except self._pdfium.PdfiumError as exc:
                    raise RasterFailure(f"pdfium cannot render page {index + 1}: {exc}") from exc
                if index == 0:
                    # Counted in the grey page itself, not in what is coded from it: the
                    # read-back check compares the two.
                    first_page_black = int(np.count_nonzero(grey < THRESHOLD))
                coder.put(grey, release)
        return first_page_black, coder.coded


def child_main(sender: Connection, pdf: str, out: str, compression: str,
               processes: int = 1) -> None:
    """Entry point of a rasterising process of its own: rasterise, report the outcome."""
    try:
        outcome = rasterise(Path(pdf), Path(out), compression=compression, processes=processes)
    except RasterFailure as exc:
        outcome = Outcome(error=str(exc))
    except Exception as exc:  # reported to the parent, which raises DocumentError(590)
        outcome = Outcome(error=f"rasterising failed: {type(exc).__name__}: {exc}",
                          internal=True)
    try:
        sender.send(outcome)
    finally:
        sender.close()


def bilevel(grey: _Grey) -> _Bits:
    """A grey page (rows of 1728 levels) as packed bits, ink as 1-bits, most significant
    bit first: one threshold, no dithering."""
    return np.packbits(grey < THRESHOLD, axis=1)


def _thresholded(grey: _Grey, release: _Release | None) -> _Bits:
    """:func:`bilevel`, then the grey page's memory given back."""
    bits = bilevel(grey)
    if release is not None:
        release()
    return bits


class _Coder:
    """The coding thread: codes the pages handed to it, in order, thresholding those that
    come in grey. Not ``threaded``: no thread, each page is coded as it is handed over."""

    def __init__(self, writer: FaxTiffWriter, *, threaded: bool = True) -> None:
        self._writer = writer
        self.coded: list[int] = []
        # One page being rendered, one waiting here, one being coded.
        self._pages: queue.Queue[_Page | None] = queue.Queue(maxsize=PAGES_IN_FLIGHT - 2)
        self._error: BaseException | None = None
        self._thread = (threading.Thread(target=self._run, name="faxgw-tiff-coder",
                                         daemon=True) if threaded else None)

    def __enter__(self) -> _Coder:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: object) -> None:
        if self._thread is None:
            return
        self._pages.put(None)  # the coder codes what is queued, then stops
        self._thread.join()
        if kind is None and self._error is not None:
            raise self._error

    def put(self, grey: _Grey, release: _Release | None) -> None:
        """Queue a grey page (``release`` is called once it is thresholded); waits while
        :data:`PAGES_IN_FLIGHT` pages are held. Raises what stopped the coder."""
        if self._thread is None:
            bits = _thresholded(grey, release)
            self.coded.append(self._writer.add_page(bits.data, bits.shape[0]))
        elif self._error is not None:
            raise self._error
        elif self._pages.full():
            # The coder is behind: threshold here, rather than wait for it doing nothing.
            self._pages.put(_Page(bits=_thresholded(grey, release)))
        else:
            self._pages.put(_Page(grey=grey, release=release))

    def _run(self) -> None:
        while (page := self._pages.get()) is not None:
            try:
                bits = page.bits
                if bits is None and self._error is None:
                    assert page.grey is not None  # a page comes in grey or in bits
                    bits = bilevel(page.grey)
                if page.release is not None:
                    page.release()  # the grey page is done with: its bitmap may be reused
                if bits is not None and self._error is None:
                    self.coded.append(self._writer.add_page(bits.data, bits.shape[0]))
            except BaseException as exc:  # noqa: BLE001 - raised in the rendering thread
                self._error = exc


@dataclass(frozen=True, slots=True)
class _Page:
    """A page on its way to the coder: in grey (and what frees it), or thresholded."""

    grey: _Grey | None = None
    release: _Release | None = None
    bits: _Bits | None = None


class _Bitmaps:
    """pdfium bitmaps for the pages in flight, reused: allocating 4 MB a page costs more
    than clearing a used bitmap, which the coding thread does once it is done with it."""

    def __init__(self) -> None:
        self._returned: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def give_back(self, bitmap: Any) -> None:
        """``bitmap``'s page is thresholded: clear it for the next page (called by the coder;
        numpy writes the memory, pdfium is not called from this thread)."""
        np.frombuffer(bitmap.buffer, dtype=np.uint8).fill(255)
        self._returned.put(bitmap)

    def take(self, height: int) -> Any:
        """A white bitmap 1728 pixels wide and ``height`` high."""
        import pypdfium2 as pdfium

        while True:
            try:
                bitmap = self._returned.get_nowait()
            except queue.Empty:
                bitmap = pdfium.PdfBitmap.new_native(FAX_WIDTH, height,
                                                     pdfium.raw.FPDFBitmap_Gray)
                pdfium.raw.FPDFBitmap_FillRect(bitmap, 0, 0, FAX_WIDTH, height, 0xFFFFFFFF)
                return bitmap
            if bitmap.height == height:
                return bitmap
            bitmap.close()  # another page size: make a new one

    def close(self) -> None:
        """Free the bitmaps given back (once the coder has stopped)."""
        while True:
            try:
                self._returned.get_nowait().close()
            except queue.Empty:
                return


def _render_page(document: PdfDocument, index: int, direct: bool,
                 bitmaps: _Bitmaps) -> tuple[_Grey, _Release | None]:
    """Page ``index`` in grey, 1728 wide at 204 × 196 dpi, and what gives its memory back."""
    page = document[index]
    try:
        if direct:
            return _render_at_fax_resolution(page, bitmaps)
        return _render_and_scale(page), None
    finally:
        page.close()


def _render_at_fax_resolution(page: PdfPage, bitmaps: _Bitmaps) -> tuple[_Grey, _Release]:
    """The page in grey at 204 x 196 dpi, centred on white in the fax width, in one pass
    (pdfium with a transform matrix: nothing is resampled afterwards)."""
    import pypdfium2 as pdfium

    raw = pdfium.raw
    width_pt, height_pt = page.get_size()
    # Pages wider than the fax line are scaled down to fit it rather than cut.
    x_scale = min(X_DPI / 72, FAX_WIDTH / width_pt)
    y_scale = x_scale * Y_DPI / X_DPI
    width = min(FAX_WIDTH, max(1, round(width_pt * x_scale)))
    height = max(1, round(height_pt * y_scale))
    left = (FAX_WIDTH - width) // 2
    bitmap = bitmaps.take(height)
    matrix = raw.FS_MATRIX(x_scale, 0, 0, y_scale, left, 0)
    clipping = raw.FS_RECTF(0, 0, FAX_WIDTH, height)
    raw.FPDF_RenderPageBitmapWithMatrix(bitmap, page, ctypes.byref(matrix),
                                        ctypes.byref(clipping),
                                        raw.FPDF_ANNOT | raw.FPDF_GRAYSCALE)
    grey = np.frombuffer(bitmap.buffer, dtype=np.uint8).reshape(height, bitmap.stride)
    return grey[:, :FAX_WIDTH], lambda: bitmaps.give_back(bitmap)


def _render_and_scale(page: PdfPage) -> _Grey:
    """A page with form fields: rendered at 204 dpi (one scale for both axes, the only one
    pdfium draws form fields at), scaled to 196 dpi vertically, fitted into the fax line."""
    from PIL import Image, ImageOps

    width_pt, _height_pt = page.get_size()
    # Pages wider than the fax line are scaled down to fit it rather than cut.
    scale = min(X_DPI / 72, FAX_WIDTH / width_pt)
    grey = page.render(scale=scale, grayscale=True).to_pil().convert("L")
    height = max(1, round(grey.height * Y_DPI / X_DPI))
    grey = grey.resize((grey.width, height), Image.Resampling.LANCZOS)
    if grey.width < FAX_WIDTH:
        left = (FAX_WIDTH - grey.width) // 2
        grey = ImageOps.expand(grey, border=(left, 0, FAX_WIDTH - grey.width - left, 0),
                               fill=255)
    elif grey.width > FAX_WIDTH:  # rounding of the scale: at most a pixel or two
        grey = grey.crop((0, 0, FAX_WIDTH, grey.height))
    return np.asarray(grey, dtype=np.uint8)
