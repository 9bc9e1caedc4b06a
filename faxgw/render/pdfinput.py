"""PDF documents onto the configured paper, with pypdf.

Pages already of the paper's size (within :data:`SIZE_TOLERANCE`) are kept as they are, and a
PDF whose pages all are, with nothing but pages in it, is attached as it came. Other
pages are scaled to fit, centred, onto a new page of paper size: the visible area (crop box,
turned by ``/Rotate`` as a viewer shows it) is moved to the origin, turned upright, scaled and
centred, so the new page needs no ``/Rotate`` of its own.

The file is checked for completeness first: pypdf recovers from a lot, and a PDF cut short
could otherwise come out with fewer pages instead of failing. Errors are not translated here;
:mod:`faxgw.render.pdf` does that at the document boundary.

What pypdf cannot read (a broken cross-reference table, a mangled object it trips over) is
given to pdfium, the PDF engine of Chrome, which repairs much of what viewers open: its copy
of the file, written with a fresh cross-reference table, then goes through the same steps
(:func:`pdfium_copy`). Only what neither can read fails as damaged; a file that is cut off,
lost pages or needs a password fails as before, never "repaired" into fewer pages.
"""

from __future__ import annotations

import io
import logging
import re
import threading

from pypdf import PageObject, PasswordType, PdfReader, PdfWriter, Transformation
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

from ..domain.codes import DOCUMENT_ENCRYPTED, DOCUMENT_UNREADABLE
from ..domain.errors import DocumentError

log = logging.getLogger("faxgw.render")

#: How far (pt) a page may differ from the paper and still count as paper size: tools write
#: A4 as 595 x 842, 595.28 x 841.89 or 595.276 x 841.89.
SIZE_TOLERANCE = 3.0

# An incremental update after the last %%EOF that was cut off still starts with objects or
# an xref section; anything else after %%EOF is junk that readers ignore (mail padding).
_UNFINISHED_UPDATE = re.compile(rb"\d+\s+\d+\s+obj\b|\bxref\b|\btrailer\b|\bstartxref\b")
# A linearized ("fast web view") PDF states its full length in its first object, and keeps
# an %%EOF near its start, so the %%EOF test alone misses it when it is cut off.
_LINEARIZED = re.compile(rb"<<[^>]*?/Linearized\b[^>]*?>>", re.DOTALL)
_LINEARIZED_LENGTH = re.compile(rb"/L\s+(\d+)")
# Slack for a linearized length that counts an end-of-line the file no longer has.
_LENGTH_SLACK = 16

#: pdfium is not thread-safe, not even for different documents: every use of it in one
#: process holds this lock (the gateway renders from threads where it has no render process).
PDFIUM_LOCK = threading.Lock()
# pdfium's error code for a document that needs a password (FPDF_ERR_PASSWORD).
_PDFIUM_PASSWORD = 4
# Failures that are final: pdfium is not asked to read around them. A password is a
# password to pdfium too, and a decompression bomb stays one.
_FINAL = (DocumentError, FileNotDecryptedError, DependencyError, LimitReachedError, MemoryError)


def pdf_to_paper(data: bytes, name: str, page_size: tuple[float, float]) -> bytes:
    """Return ``data`` (a PDF) as a PDF whose pages all fit ``page_size`` (points).

    Raises :class:`DocumentError` for a PDF that is cut off, has no pages, or needs a password;
    pypdf's own exceptions pass through for the caller to translate (pdfium could not read
    the file either).
    """
    return pdf_onto_paper(data, name, page_size)[0]


def pdf_onto_paper(data: bytes, name: str, page_size: tuple[float, float]) -> tuple[bytes, int]:
    """:func:`pdf_to_paper`, with the page count of the PDF it returns (known by then, so
    the caller need not read the PDF once more to count them)."""
    _check_complete(data, name)
    try:
        return _onto_paper(data, name, page_size)
    except _FINAL:
        raise
    except Exception as failure:  # what pypdf raises for a file it cannot make sense of
        copy = pdfium_copy(data, name)
        if copy is None:
            raise
        log.info("%s: pypdf cannot read the PDF (%s); pdfium's repaired copy is used",
                 name, type(failure).__name__)
        try:
            return _onto_paper(copy, name, page_size)
        except DocumentError:
            raise
        except Exception:
            # Neither can: the first cause says more about the file than the copy's.
            raise failure from None


def pdfium_copy(data: bytes, name: str) -> bytes | None:
    """The PDF ``data`` as pdfium reads it, written anew; ``None`` if pdfium cannot read it.

    pdfium rebuilds a broken cross-reference table from the objects it finds and writes a
    clean file; security is removed from the copy (pdfium opened it with the empty user
    password, as faxgw accepts). Raises :class:`DocumentError` (411) for a PDF that needs a
    password.
    """
    import pypdfium2 as pdfium  # type: ignore[import-untyped]
    import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]

    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD:
                raise DocumentError(f"{name}: the PDF is protected by a password",
                                    code=DOCUMENT_ENCRYPTED, filename=name) from exc
            log.debug("%s: pdfium cannot read the PDF either: %s", name, exc)
            return None
        try:
            if len(document) == 0:
                return None
            buffer = io.BytesIO()
            document.save(buffer, flags=pdfium_c.FPDF_REMOVE_SECURITY)
            return buffer.getvalue()
        except pdfium.PdfiumError as exc:
            log.debug("%s: pdfium cannot write the PDF anew: %s", name, exc)
            return None
        finally:
            document.close()


def _onto_paper(data: bytes, name: str, page_size: tuple[float, float]) -> tuple[bytes, int]:
    """:func:`pdf_onto_paper` with pypdf alone.

    A sound file (every object read by the strict reader) is read once, by that reader; the
    lenient reader, which reads around damage, is used only where the strict one gives up,
    and what it reads is never attached as read (:func:`_passes_through`).
    """
    strict = _sound_reader(data)
    if strict is not None:
        try:
            return _fitted(data, name, page_size, strict, sound=True)
        except _FINAL:
            raise
        except Exception as exc:  # noqa: BLE001 - any doubt: read leniently, as below
            log.debug("%s: read leniently: %s: %s", name, type(exc).__name__, exc)
    return _fitted(data, name, page_size, PdfReader(io.BytesIO(data), strict=False),
                   sound=False)


def _fitted(data: bytes, name: str, page_size: tuple[float, float], reader: PdfReader, *,
            sound: bool) -> tuple[bytes, int]:
    """The PDF ``reader`` reads (from ``data``) onto the paper, and its page count."""
    # pypdf already tried the empty user password when opening; documents "protected" only by
    # an owner password (no printing, no copying) open with it, and a fax may be sent.
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise DocumentError(
            f"{name}: the PDF is protected by a password", code=DOCUMENT_ENCRYPTED, filename=name
        )
    pages = reader.pages
    count = len(pages)
    if count == 0:
        raise DocumentError(
            f"{name}: the PDF is damaged: it has no pages", code=DOCUMENT_UNREADABLE, filename=name
        )
    declared = _declared_page_count(reader)
    if declared is not None and declared > count:
        # pypdf rebuilt a broken file and found fewer pages than it should have: parts are lost.
        raise DocumentError(
            f"{name}: the PDF is damaged: it should have {declared} pages, "
            f"but only {count} can be read",
            code=DOCUMENT_UNREADABLE,
            filename=name,
        )
    transformations = []
    for number, page in enumerate(pages, start=1):
        contents = page.get_contents()
        if contents is not None:
            # Decode the content now, so that a broken stream fails this document here.
            contents.get_data()
        transformations.append(fit_transformation(page, page_size, name=name, number=number))
    if sound and _passes_through(data, reader, transformations):
        # Already what would be sent, and read whole above: attached as it came, since
        # writing it anew costs as much as reading it and changes nothing on the page.
        log.debug("%s: already on the paper, attached as read", name)
        return data, count
    writer = PdfWriter()
    width, height = page_size
    for page, transformation in zip(pages, transformations, strict=True):
        if transformation is None:
            writer.add_page(page)
        else:
            target = writer.add_blank_page(width, height)
            target.merge_transformed_page(page, transformation)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue(), count


#: What in a document catalog keeps a PDF from being attached as read: forms, scripts and
#: embedded files are not part of a fax, and are left behind when the pages are copied.
#: (An ``/OpenAction`` that is only a page to open at, as many tools write, is harmless.)
_NOT_PASSED_THROUGH = ("/AcroForm", "/Names", "/AA", "/JavaScript", "/Collection", "/Perms")


def _passes_through(data: bytes, reader: PdfReader,
                    transformations: list[Transformation | None]) -> bool:
    """Whether the PDF, read whole by the strict reader (:func:`_sound_reader`), may be
    attached byte for byte: every page already on the paper, no encryption (an owner
    password is removed by writing it anew), nothing but pages, and nothing before its
    header (which lenient readers skip and a fax service may not)."""
    if not data.startswith(b"%PDF-") or reader.is_encrypted:
        return False
    if any(t is not None for t in transformations):
        return False
    catalog = reader.trailer["/Root"].get_object()
    if not isinstance(catalog, DictionaryObject):
        return False
    opens = catalog.get("/OpenAction")
    if opens is not None and not isinstance(opens.get_object(), ArrayObject):
        return False  # an action (a script, a launch), not a destination
    return not any(key in catalog for key in _NOT_PASSED_THROUGH)


def _sound_reader(data: bytes) -> PdfReader | None:
    """The strict reader of ``data`` with every object the cross-reference table lists read
    (and kept), or ``None`` if any needs repair: the lenient reader reads around damage (a
    lost ``endstream``, a table that lists objects that are not there), which a fax
    service's reader may not, so such a file is written anew (or given to pdfium) rather
    than passed on. An encrypted file is left to the lenient path (its password first)."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=True)
        if reader.is_encrypted:
            return None
        for generation, numbers in reader.xref.items():
            for number in numbers:
                if reader.get_object(IndirectObject(number, generation, reader)) is None:
                    return None
        for number in reader.xref_objStm:
            if reader.get_object(IndirectObject(number, 0, reader)) is None:
                return None
    except Exception as exc:  # noqa: BLE001 - any doubt: the file is read leniently instead
        log.debug("not read strictly: %s: %s", type(exc).__name__, exc)
        return None
    return reader


def _declared_page_count(reader: PdfReader) -> int | None:
    """The page count the page tree's root states, if it states one."""
    pages_root = reader.root_object.get("/Pages")
    pages_root = pages_root.get_object() if pages_root is not None else None
    if not isinstance(pages_root, DictionaryObject):
        return None
    declared = pages_root.get("/Count")
    return declared if isinstance(declared, int) else None


def _check_complete(data: bytes, name: str) -> None:
    """Raise :class:`DocumentError` if ``data`` is visibly a PDF cut short."""
    end = data.rfind(b"%%EOF")
    if end < 0:
        raise DocumentError(
            f"{name}: the PDF is damaged: it is incomplete (no %%EOF end mark), "
            "probably cut off in transfer",
            code=DOCUMENT_UNREADABLE,
            filename=name,
        )
    if _UNFINISHED_UPDATE.search(data, end + len(b"%%EOF")):
        raise DocumentError(
            f"{name}: the PDF is damaged: its last part is cut off",
            code=DOCUMENT_UNREADABLE,
            filename=name,
        )
    linearized = _LINEARIZED.search(data, 0, 4096)
    if linearized is not None:
        stated = _LINEARIZED_LENGTH.search(linearized.group())
        if stated is not None and int(stated.group(1)) > len(data) + _LENGTH_SLACK:
            raise DocumentError(
                f"{name}: the PDF is damaged: it is incomplete "
                f"({len(data)} of {int(stated.group(1))} bytes), probably cut off in transfer",
                code=DOCUMENT_UNREADABLE,
                filename=name,
            )


def visible_box(page: PageObject) -> tuple[float, float, float, float]:
    """The part of ``page`` a viewer shows, unrotated: the crop box within the media box."""
    media = page.mediabox
    crop = page.cropbox
    left = max(float(media.left), float(crop.left))
    bottom = max(float(media.bottom), float(crop.bottom))
    right = min(float(media.right), float(crop.right))
    top = min(float(media.top), float(crop.top))
    if right <= left or top <= bottom:
        # A crop box outside the media box is meaningless; viewers fall back to the media box.
        return float(media.left), float(media.bottom), float(media.right), float(media.top)
    return left, bottom, right, top


def page_rotation(page: PageObject) -> int:
    """``/Rotate`` as 0, 90, 180 or 270 (clockwise, as the PDF specification defines it)."""
    try:
        rotation = int(page.rotation)  # pypdf has /Rotate inherited from the page tree
    except (TypeError, ValueError, AttributeError):
        return 0
    # Only multiples of 90 are valid; round a stray value rather than refuse the page.
    return (round(rotation / 90) * 90) % 360


def shown_size(page: PageObject) -> tuple[float, float]:
    """Width and height of ``page`` as a viewer shows it (visible box, ``/Rotate`` applied)."""
    left, bottom, right, top = visible_box(page)
    width, height = right - left, top - bottom
    return (height, width) if page_rotation(page) in (90, 270) else (width, height)


def fit_transformation(
    page: PageObject, page_size: tuple[float, float], *, name: str = "", number: int = 0
) -> Transformation | None:
    """The transformation that puts ``page`` upright, fitted and centred on ``page_size``.

    ``None`` when the page is of that size already (then it is kept as it is).
    """
    paper_width, paper_height = page_size
    left, bottom, right, top = visible_box(page)
    width, height = right - left, top - bottom
    if width <= 0 or height <= 0:
        raise DocumentError(
            f"{name}: the PDF is damaged: page {number} has no size",
            code=DOCUMENT_UNREADABLE,
            filename=name,
        )
    rotation = page_rotation(page)
    shown_width, shown_height = shown_size(page)
    if (
        abs(shown_width - paper_width) <= SIZE_TOLERANCE
        and abs(shown_height - paper_height) <= SIZE_TOLERANCE
    ):
        return None
    # Content coordinates -> origin at the visible box's lower left corner -> turned as
    # /Rotate turns it on screen (clockwise), so the merged content stands upright.
    transformation = Transformation().translate(-left, -bottom)
    if rotation == 90:
        transformation = transformation.transform(Transformation((0, -1, 1, 0, 0, width)))
    elif rotation == 180:
        transformation = transformation.transform(Transformation((-1, 0, 0, -1, width, height)))
    elif rotation == 270:
        transformation = transformation.transform(Transformation((0, 1, -1, 0, height, 0)))
    scale = min(paper_width / shown_width, paper_height / shown_height)
    log.debug(
        "%s: page %d is %.0f x %.0f pt, scaled by %.3f to fit the paper",
        name,
        number,
        shown_width,
        shown_height,
        scale,
    )
    return transformation.scale(scale, scale).translate(
        (paper_width - shown_width * scale) / 2, (paper_height - shown_height * scale) / 2
    )
