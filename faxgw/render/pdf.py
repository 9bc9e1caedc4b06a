"""A fax job's documents, in order, as one PDF on the configured paper.

Each document is judged by its content (:mod:`.detect`), made into a PDF of its own on the
paper (:mod:`.pdfinput`, :mod:`.images`, :mod:`.text`), and the parts are joined. Working
document by document keeps every failure attributable: pypdf, Pillow, img2pdf and fpdf2
exceptions are translated into :class:`~faxgw.domain.errors.DocumentError` at one boundary,
:func:`_translated`, around each document, and joining the parts afterwards only touches PDFs
faxgw wrote itself.

The output is written atomically (temp file in the same folder, fsync, rename), so a reader
never sees half a PDF. Rendering is CPU-bound and synchronous; callers run it in a thread or a
process. There is no shared state except the cached font lookup in :mod:`.text`.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import img2pdf  # type: ignore[import-untyped]
from fpdf.errors import FPDFException
from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader, PdfWriter
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PyPdfError

from ..domain.codes import DOCUMENT_ENCRYPTED, DOCUMENT_UNREADABLE, TOO_LARGE
from ..domain.errors import DocumentError
from ..fsutil import link_atomic, write_atomic
from .detect import HEAD_BYTES, classify
from .images import image_to_pdf
from .pdfinput import pdf_onto_paper
from .rendered import Rendered
from .source import DEFAULT_MAX_INPUT_BYTES, read_document
from .text import text_to_pdf

log = logging.getLogger("faxgw.render")

#: Told the name of each document before it is read, and ``None`` once all are read. A render
#: process sets it (:mod:`faxgw.render.process`) to tell the worker which document it is on,
#: so that a render that stops its process or runs out of time names its document. ``None``
#: everywhere else: it costs nothing then.
document_hook: Callable[[str | None], None] | None = None

#: Paper sizes in points (1/72 inch), portrait: ISO 216 A4 (210 x 297 mm) and US Letter.
PAPER_SIZES: dict[str, tuple[float, float]] = {
    "A4": (595.28, 841.89),
    "Letter": (612.0, 792.0),
}


def render_pdf(
    documents: Sequence[Path],
    out: Path,
    *,
    paper: str = "A4",
    font: Path | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    link_originals: bool = False,
) -> Rendered:
    """Render all ``documents``, in order, into one PDF at ``out`` and describe it.

    Documents may be PDF, JPEG, PNG, TIFF (every page), GIF, BMP or plain text, told apart
    by content. Every page fits ``paper`` (a key of :data:`PAPER_SIZES`, any case); ``font``
    is a TrueType font for text documents (default: DejaVu Sans Mono if installed). A
    document larger than ``max_input_bytes`` is refused before it is read.

    ``link_originals``: a single PDF attached as read (already on the paper) becomes ``out``
    by a hard link rather than a copy when it lies in ``out``'s folder or below it: a job's
    own originals, private to the gateway and never changed. It is stored once, and a new
    file (on some file systems the dearest part of a small render) is not made.

    Raises :class:`~faxgw.domain.errors.DocumentError` naming the first bad document, with ``code``
    ``DOCUMENT_UNREADABLE`` (empty, corrupt, truncated), ``DOCUMENT_ENCRYPTED`` (password),
    ``DOCUMENT_UNSUPPORTED`` (unknown or mislabelled type), ``INPUT_REFUSED`` (a link or not a
    regular file), ``INPUT_TOO_LARGE`` (over ``max_input_bytes``) or ``TOO_LARGE`` (an image
    too large to decode safely). ``ValueError`` for an unknown paper or no documents,
    ``OSError`` when ``out`` cannot be written. Nothing is written to ``out`` unless all went
    well.
    """
    page_size = paper_size(paper)
    if not documents:
        raise ValueError("render_pdf needs at least one document")
    parts = [render_document(Path(document), page_size, font=font,
                             max_input_bytes=max_input_bytes) for document in documents]
    if document_hook is not None:
        document_hook(None)  # the documents are read; what follows is faxgw's own work
    out = Path(out)
    if len(parts) == 1:
        # One document (the common case): its PDF is the result already. Joining would parse
        # and write it once more, which costs as much again as rendering it.
        [(data, counted, as_read)] = parts
        pages = counted if counted is not None else len(PdfReader(io.BytesIO(data)).pages)
        original = Path(documents[0])
        linked = (link_atomic(original, out, size=len(data))
                  if link_originals and as_read and out.parent in original.parents else None)
        size = linked if linked is not None else write_atomic(out, data)
    else:
        writer = PdfWriter()
        for data, _, _ in parts:
            for page in PdfReader(io.BytesIO(data)).pages:
                writer.add_page(page)
        size = write_atomic(out, writer.write)
        pages = len(writer.pages)
    log.debug("rendered %d document(s) into %s: %d pages, %d bytes", len(parts), out, pages, size)
    return Rendered(path=out, pages=pages, bytes=size)


def paper_size(paper: str) -> tuple[float, float]:
    """Width and height in points of the paper named ``paper`` ("A4", "letter", …)."""
    for name, size in PAPER_SIZES.items():
        if name.lower() == paper.lower():
            return size
    raise ValueError(f"unknown paper size {paper!r}; use one of {', '.join(PAPER_SIZES)}")


def render_document(
    path: Path,
    page_size: tuple[float, float],
    *,
    font: Path | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> tuple[bytes, int | None, bool]:
    """One document as a PDF of its own, every page fitting ``page_size``, its page count
    where that is known without reading the PDF once more (``None`` otherwise), and whether
    that PDF is the document as read, byte for byte.

    Raises :class:`~faxgw.domain.errors.DocumentError` and nothing else for a bad document.
    """
    name = path.name
    if document_hook is not None:
        document_hook(name)
    data, size = read_document(path, max_input_bytes)
    kind = classify(name, data[:HEAD_BYTES], size)
    with _translated(name, kind):
        pages: int | None = None
        if kind == "pdf":
            part, pages = pdf_onto_paper(data, name, page_size)
        elif kind == "text":
            part = text_to_pdf(data, name, page_size, font)
        else:
            part = image_to_pdf(data, kind, page_size)
    log.debug("%s: %s, %d bytes, rendered", name, kind, len(data))
    return part, pages, part is data


# What the libraries raise for input they cannot read. Broken PDFs also surface as plain
# lookup, type and assertion errors from deep inside pypdf, Pillow plugins raise SyntaxError
# and struct.error for bad headers, and img2pdf defines exceptions without a common base.
_BROKEN: tuple[type[BaseException], ...] = (
    PyPdfError,
    OSError,  # includes Pillow's UnidentifiedImageError and "image file is truncated"
    EOFError,
    SyntaxError,
    struct.error,
    zlib.error,
    ValueError,  # includes UnicodeDecodeError
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    RecursionError,
    ArithmeticError,
    NotImplementedError,
    FPDFException,
    img2pdf.AlphaChannelError,
    img2pdf.ExifOrientationError,
    img2pdf.ImageOpenError,
    img2pdf.JpegColorspaceError,
    img2pdf.NegativeDimensionError,
    img2pdf.PdfTooLargeError,
    img2pdf.UnsupportedColorspaceError,
    # Pillow reports corrupt metadata with warnings.warn; where warnings are turned into
    # errors (-W error, pytest's filterwarnings), they arrive here as exceptions.
    UserWarning,
)
# How each kind's damage is worded.
_DAMAGED = {
    "pdf": "the PDF is damaged",
    "text": "the text cannot be read",
    "file": "the file cannot be read",
}
_IMAGE_DAMAGED = "the image is truncated or corrupt"


@contextmanager
def _translated(name: str, kind: str) -> Iterator[None]:
    """Turn what the libraries raise for a bad document ``name`` into a DocumentError."""
    try:
        yield
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentError(
            f"{name}: the PDF is protected by a password", code=DOCUMENT_ENCRYPTED, filename=name
        ) from exc
    except DependencyError as exc:
        # pypdf needs `cryptography` for AES; without it the file is as closed as with a password.
        raise DocumentError(
            f"{name}: the PDF is encrypted in a way this installation cannot open ({exc})",
            code=DOCUMENT_ENCRYPTED,
            filename=name,
        ) from exc
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,  # only raised where warnings are errors
        LimitReachedError,
    ) as exc:
        # A few bytes can claim gigapixels or gigabytes; the libraries refuse to expand them.
        raise DocumentError(
            f"{name}: the document is too large to render ({_cause(exc, kind)})",
            code=TOO_LARGE,
            filename=name,
        ) from exc
    except _BROKEN as exc:
        log.debug("%s: %s", name, _cause(exc, kind), exc_info=True)
        what = _DAMAGED.get(kind, _IMAGE_DAMAGED)
        raise DocumentError(
            f"{name}: {what}: {_cause(exc, kind)}", code=DOCUMENT_UNREADABLE, filename=name
        ) from exc
    except Exception as exc:
        # img2pdf (and pypdf in places) raise bare Exception for bad input; anything of
        # another type is a fault of ours and travels on as it is.
        if type(exc) is not Exception:
            raise
        what = _DAMAGED.get(kind, _IMAGE_DAMAGED)
        raise DocumentError(
            f"{name}: {what}: {_cause(exc, kind)}", code=DOCUMENT_UNREADABLE, filename=name
        ) from exc


# Errors whose type says more than their text ("KeyError: '/Root'").
_BARE_BUILTINS = (
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    RecursionError,
    ArithmeticError,
    NotImplementedError,
    struct.error,
)
_CAUSE_LENGTH = 160


def _cause(exc: BaseException, kind: str) -> str:
    """A short, one-line cause for a message; no memory addresses, no tracebacks."""
    if isinstance(exc, UnidentifiedImageError):
        return f"not a readable {kind.upper()} image"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    if isinstance(exc, _BARE_BUILTINS) or not text:
        text = f"its structure is broken ({type(exc).__name__}{': ' + text if text else ''})"
    if len(text) > _CAUSE_LENGTH:
        text = text[: _CAUSE_LENGTH - 1] + "…"
    return text
