"""What a document really is: judged by its content (magic bytes), checked against its name.

A fax job's documents come from people and programs that name files carelessly, so the name
never decides how a file is read. The content does; the name only serves to catch a mislabelled
file ("report.pdf" that is a PNG), which we refuse rather than guess, because a mislabelled
file often means the wrong file was attached.

Supported kinds: ``pdf``, ``jpeg``, ``png``, ``tiff``, ``gif``, ``bmp`` and ``text``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from ..domain.codes import DOCUMENT_UNREADABLE, DOCUMENT_UNSUPPORTED
from ..domain.errors import DocumentError
from .source import read_document

#: How much of a file is looked at to decide its type.
HEAD_BYTES = 64 * 1024

#: The kinds :func:`detect_type` returns.
KINDS = ("pdf", "jpeg", "png", "tiff", "gif", "bmp", "text")

#: File name extensions that name a supported kind. Other extensions are judged by content.
EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".gif": "gif",
    ".bmp": "bmp",
    ".dib": "bmp",
    ".txt": "text",
    ".text": "text",
}

#: How each kind is named in messages ("named .pdf but contains PNG image data").
DESCRIPTIONS: dict[str, str] = {
    "pdf": "a PDF document",
    "jpeg": "JPEG image data",
    "png": "PNG image data",
    "tiff": "TIFF image data",
    "gif": "GIF image data",
    "bmp": "BMP image data",
    "text": "plain text",
}

# Signatures of common files we do not render, so that a refusal can say what was seen.
# (prefix, description); checked in order, at offset 0.
_UNSUPPORTED_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a Microsoft Office 97-2003 document (.doc, .xls)"),
    (b"\x7fELF", "a Linux program (ELF)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"%!", "a PostScript document"),
    (b"\xc5\xd0\xd3\xc6", "an EPS document"),
    (b"{\\rtf", "an RTF document"),
    (b"\x1b%-12345X", "printer data (PJL/PCL)"),
    (b"\x1bE", "printer data (PCL)"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xffO\xffQ", "a JPEG 2000 image"),
    (b"8BPS", "a Photoshop image"),
    (b"AT&TFORM", "a DjVu document"),
    (b"\x00\x00\x01\x00", "a Windows icon"),
)

# Markup is text, but rendering its source is not what the sender meant; refused unless the
# file is explicitly named .txt (then the sender asked for the source).
_MARKUP_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "an HTML document"),
    (b"<html", "an HTML document"),
    (b"<svg", "an SVG image"),
    (b"<?xml", "an XML document"),
)

# BMP info header sizes (BITMAPCOREHEADER … BITMAPV5HEADER): "BM" alone is too weak a sign.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

#: How unrecognisable binary content is described.
UNKNOWN_BINARY = "binary data of an unknown kind"

# C0 controls that plain text legitimately holds: tab, line feed, vertical tab, form feed,
# carriage return, and Ctrl-Z (the end-of-file mark old DOS editors append).
_TEXT_CONTROLS = frozenset(b"\t\n\x0b\x0c\r\x1a")
# Bytes that Windows-1252 leaves undefined: in "text" that is not UTF-8 they mean binary.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the first bytes of a file look like.

    ``kind`` is one of :data:`KINDS` or ``None``; ``description`` names what was seen for
    messages; ``textual`` marks refused content that is still text (HTML, XML), which a
    ``.txt`` name may claim.
    """

    kind: str | None
    description: str
    textual: bool = False


def sniff(head: bytes) -> Sniffed:
    """Classify the first bytes of a file (at least a few KiB for text, if the file has them)."""
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("jpeg", DESCRIPTIONS["jpeg"])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("png", DESCRIPTIONS["png"])
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return Sniffed("tiff", DESCRIPTIONS["tiff"])
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Sniffed("gif", DESCRIPTIONS["gif"])
    if head.startswith(b"BM") and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
            return Sniffed("bmp", DESCRIPTIONS["bmp"])
    if head.startswith(b"%PDF-"):
        return Sniffed("pdf", DESCRIPTIONS["pdf"])
    # Signatures at offset 0 come before the lenient PDF test below, so that a ZIP archive
    # holding an uncompressed PDF is not taken for that PDF.
    other = _sniff_unsupported(head)
    if other is not None:
        return Sniffed(None, other)
    # Readers accept junk before the header (ISO 32000-1, Annex H: within the first 1024
    # bytes), and mail gateways and print drivers do produce such files.
    if b"%PDF-" in head[:1024]:
        return Sniffed("pdf", DESCRIPTIONS["pdf"])
    if _looks_like_text(head):
        markup = _sniff_markup(head)
        if markup is not None:
            return Sniffed(None, markup, textual=True)
        return Sniffed("text", DESCRIPTIONS["text"])
    return Sniffed(None, UNKNOWN_BINARY)


def _sniff_unsupported(head: bytes) -> str | None:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _describe_zip(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"heif", b"mif1", b"msf1", b"hevc"):
            return "a HEIC/HEIF image"
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        return "an MP4/QuickTime media file"
    for prefix, description in _UNSUPPORTED_PREFIXES:
        if head.startswith(prefix):
            return description
    # "MZ" alone could start a line of text; a DOS/Windows program header is full of NULs.
    if head.startswith(b"MZ") and b"\x00" in head[:64]:
        return "a Windows program"
    return None


def _describe_zip(head: bytes) -> str:
    # Office Open XML, OpenDocument and XPS files are ZIP archives; their first entries give
    # them away, and naming the program helps the sender more than "ZIP archive".
    if b"word/" in head:
        return "a Word document (.docx)"
    if b"xl/" in head:
        return "an Excel workbook (.xlsx)"
    if b"ppt/" in head:
        return "a PowerPoint presentation (.pptx)"
    if b"application/vnd.oasis.opendocument" in head:
        return "an OpenDocument file (.odt, .ods)"
    if b"FixedDocSeq" in head or b"Documents/1/" in head:
        return "an XPS document"
    return "a ZIP archive"


def _sniff_markup(head: bytes) -> str | None:
    start = head.removeprefix(codecs.BOM_UTF8).lstrip()[:64].lower()
    for prefix, description in _MARKUP_PREFIXES:
        if start.startswith(prefix):
            if prefix == b"<?xml" and b"<svg" in head[:4096].lower():
                return "an SVG image"
            return description
    return None


def _looks_like_text(head: bytes) -> bool:
    """True for UTF-8, Windows-1252 or BOM-marked UTF-16 text with few stray control bytes."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\x00" in head:
        return False
    try:
        # An incremental decoder tolerates a character cut off at the end of ``head``.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    stray = sum(1 for byte in head if (byte < 0x20 and byte not in _TEXT_CONTROLS) or byte == 0x7F)
    if not utf8:
        stray += sum(1 for byte in head if byte in _CP1252_UNDEFINED)
    # A stray control byte or two happens in real text files (an ESC from a printer setup
    # line); binary data has them everywhere.
    return stray * 100 <= len(head)


def classify(name: str, head: bytes, size: int) -> str:
    """Return the kind of a document named ``name`` from its first bytes ``head``.

    ``size`` is the whole file's size. Raises :class:`DocumentError` when the file is empty,
    unsupported, or named as one supported kind but containing another.
    """
    if size == 0:
        raise DocumentError(
            f"{name}: the file is empty (0 bytes)", code=DOCUMENT_UNREADABLE, filename=name
        )
    suffix = Path(name).suffix.lower()
    named = EXTENSIONS.get(suffix)
    seen = sniff(head)
    if seen.kind is not None and (named is None or named == seen.kind):
        return seen.kind
    if named == "text" and seen.textual:
        return "text"
    if named is None:
        raise DocumentError(
            f"{name}: unsupported file type ({seen.description})",
            code=DOCUMENT_UNSUPPORTED,
            filename=name,
        )
    if seen.description == UNKNOWN_BINARY:
        # Unrecognisable bytes under a binary type's name: most likely that file, damaged.
        if named == "pdf":
            raise DocumentError(
                f"{name}: the PDF is damaged: no PDF header (%PDF-) found",
                code=DOCUMENT_UNREADABLE,
                filename=name,
            )
        if named != "text":
            raise DocumentError(
                f"{name}: the image is truncated or corrupt: no {named.upper()} signature found",
                code=DOCUMENT_UNREADABLE,
                filename=name,
            )
    raise DocumentError(
        f"{name}: named {suffix} but contains {seen.description}",
        code=DOCUMENT_UNSUPPORTED,
        filename=name,
    )


def detect_type(path: Path) -> str:
    """Return what the file at ``path`` contains, judged by content (magic bytes).

    One of ``'pdf'``, ``'jpeg'``, ``'png'``, ``'tiff'``, ``'gif'``, ``'bmp'``, ``'text'``.
    The file name's extension is only checked against the content: a known extension naming
    another kind raises :class:`DocumentError` (``DOCUMENT_UNSUPPORTED``); unknown or missing
    extensions are judged by content alone. An empty or unreadable file raises
    ``DOCUMENT_UNREADABLE``, unsupported content ``DOCUMENT_UNSUPPORTED``; a link or a
    file that is not a regular one ``INPUT_REFUSED``, a file over the default
    ``[limits] max_input_bytes`` ``INPUT_TOO_LARGE``.
    """
    path = Path(path)
    head, size = read_document(path, head=HEAD_BYTES)
    return classify(path.name, head, size)
