"""Plain text to PDF pages with fpdf2: monospaced, wrapped, a new page at each form feed.

Text is set in a TrueType font so that letters beyond Latin-1 (Ł, €, Cyrillic, Greek) appear
as themselves: the ``font`` given, else DejaVu Sans Mono (or DejaVu Sans) from the usual system
folders. Without any TrueType font the text falls back to the PDF core font Courier, which only
knows Windows-1252; other characters then print as ``?`` and a warning is logged once.
"""

from __future__ import annotations

import codecs
import functools
import logging
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont

from ..domain.codes import DOCUMENT_UNREADABLE
from ..domain.errors import DocumentError
from .fontcopy import font_for

log = logging.getLogger("faxgw.render")

FONT_SIZE = 10.0  # pt; about 12 characters per inch in a monospaced font, like typewriter "elite"
LINE_HEIGHT = 12.0  # pt; 6 lines per inch, the traditional line printer spacing
MARGIN = 42.52  # pt (15 mm); fax machines lose a few mm at each edge of the page
TAB_SIZE = 8
REPLACEMENT = "?"

#: Fonts looked for when no font is given, best first: monospaced keeps columns aligned.
FONT_NAMES = ("DejaVuSansMono.ttf", "DejaVuSans.ttf")
#: Folders holding those fonts on common systems (Debian/Ubuntu, Fedora, Arch, BSD, macOS).
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/dejavu-sans-mono-fonts"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts/dejavu"),
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),
)
#: Font trees searched recursively when none of FONT_DIRS has the fonts.
FONT_TREES = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
#: The same, under the user's home folder (macOS, then freedesktop).
USER_FONT_DIRS = ("Library/Fonts", ".local/share/fonts", ".fonts")

# First bytes of TrueType, OpenType (CFF) and TrueType collection files.
_FONT_SIGNATURES = frozenset({b"\x00\x01\x00\x00", b"true", b"OTTO", b"ttcf"})
_FALLBACK_ENCODING = "cp1252"  # what the core fonts' WinAnsiEncoding can show
_FONT_FAMILY = "faxgw-text"


def text_to_pdf(
    data: bytes, name: str, page_size: tuple[float, float], font: Path | None = None
) -> bytes:
    """Return a PDF of the plain text ``data`` on pages of ``page_size`` (points).

    ``font`` is a TrueType font file; ``None`` looks for DejaVu (see :func:`resolve_font`).
    Raises :class:`DocumentError` when the text holds nothing to print.
    """
    text = decode_text(data)
    if not text.strip():
        raise DocumentError(
            f"{name}: the text file contains no text", code=DOCUMENT_UNREADABLE, filename=name
        )
    font_path = resolve_font(Path(font) if font is not None else None)
    if font_path is not None:
        font_path = font_for(text, font_path)  # a small copy of it when it will do
    width, height = page_size
    pdf = FPDF(unit="pt", format=(width, height))
    try:
        _typeset(pdf, text, page_size, font_path)
        return bytes(pdf.output())
    finally:
        _close_fonts(pdf)


def _typeset(pdf: FPDF, text: str, page_size: tuple[float, float], font_path: Path | None) -> None:
    width, height = page_size
    pdf.set_auto_page_break(False)  # pages are broken below, by line count
    pdf.set_creator("faxgw")
    if font_path is not None:
        pdf.add_font(_FONT_FAMILY, "", str(font_path))
        pdf.set_font(_FONT_FAMILY, size=FONT_SIZE)
        loaded = pdf.current_font
        assert isinstance(loaded, TTFFont)
        known: set[int] | None = set(loaded.cmap)
    else:
        # The core fonts are written with /WinAnsiEncoding, i.e. Windows-1252 (€, „, Š…).
        pdf.core_fonts_encoding = _FALLBACK_ENCODING
        pdf.set_font("Courier", size=FONT_SIZE)
        known = None
    columns = max(1, int((width - 2 * MARGIN) / pdf.get_string_width("M")))
    rows = max(1, int((height - 2 * MARGIN) / LINE_HEIGHT))
    # Baseline of the first line: the top margin plus the font's height above the baseline.
    first_baseline = MARGIN + FONT_SIZE * 0.8
    for page_lines in _pages(text, columns, rows):
        pdf.add_page()
        for row, line in enumerate(page_lines):
            printable = _printable(line, known)
            if printable.strip():
                pdf.text(MARGIN, first_baseline + row * LINE_HEIGHT, printable)


def _close_fonts(pdf: FPDF) -> None:
    # fpdf2 keeps TrueType files open (fontTools loads them lazily) until output() ends;
    # close them on every path, so no file handle outlives the document.
    for loaded in pdf.fonts.values():
        close = getattr(loaded, "close", None)
        if close is not None:
            close()


def decode_text(data: bytes) -> str:
    """Decode plain text: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252.

    Windows-1252 is tried only when UTF-8 fails and the data holds no NUL byte; its five
    undefined bytes become U+FFFD (printed as ``?``).
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Windows Notepad's "Unicode": the BOM tells the byte order.
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if b"\x00" in data:
            raise
        return data.decode(_FALLBACK_ENCODING, errors="replace")


def _pages(text: str, columns: int, rows: int) -> Iterator[list[str]]:
    """Lines of ``text`` per page: wrapped to ``columns``, ``rows`` per page, FF breaks pages."""
    sections = text.split("\f")
    # Printer-bound text often ends with a form feed; it ejects the last page, no more.
    while len(sections) > 1 and not sections[-1].strip():
        sections.pop()
    for section in sections:
        lines = [
            wrapped
            for line in section.splitlines()
            for wrapped in _wrap(line.expandtabs(TAB_SIZE).rstrip(), columns)
        ]
        if not lines:
            yield []  # a form feed right after another: a blank page, as a printer gives
        for start in range(0, len(lines), rows):
            yield lines[start : start + rows]


def _wrap(line: str, columns: int) -> list[str]:
    """Break ``line`` into pieces of at most ``columns`` characters, at a space if one is near."""
    pieces: list[str] = []
    while len(line) > columns:
        cut = line.rfind(" ", 0, columns + 1)
        if cut > columns // 2:
            pieces.append(line[:cut].rstrip())
            line = line[cut + 1 :]
        else:
            # No space in the second half of the line (a URL, a long number): break hard.
            pieces.append(line[:columns])
            line = line[columns:]
    pieces.append(line)
    return pieces


def _printable(line: str, known: set[int] | None) -> str:
    """``line`` with control characters dropped and characters the font lacks as ``?``."""
    characters: list[str] = []
    for character in line:
        if unicodedata.category(character) == "Cc":
            continue  # stray control bytes (ESC sequences, Ctrl-Z) have no glyph
        if known is None:
            try:
                character.encode(_FALLBACK_ENCODING)
            except UnicodeEncodeError:
                character = REPLACEMENT
        elif ord(character) not in known:
            character = REPLACEMENT
        characters.append(character)
    return "".join(characters)


@functools.cache
def resolve_font(font: Path | None) -> Path | None:
    """Return the TrueType font to set text in, or ``None`` for the Courier fallback.

    A given ``font`` is used if fpdf2 can load it; otherwise Courier is used (not some other
    font: the choice was explicit) and a warning is logged. Without ``font``, DejaVu Sans Mono
    or DejaVu Sans is looked for in :data:`FONT_DIRS`, then under :data:`FONT_TREES` and the
    user's font folders. The answer
    is cached, so each warning is logged once per process.
    """
    if font is not None:
        problem = _font_problem(font)
        if problem is None:
            return font
        log.warning(
            "text font %s cannot be used (%s): text is set in Courier instead, and "
            "characters outside Windows-1252 print as '?'",
            font,
            problem,
        )
        return None
    for candidate in _candidate_fonts():
        if _font_problem(candidate) is None:
            log.debug("text font: %s", candidate)
            return candidate
    log.warning(
        "no DejaVu TrueType font found (looked for %s in %s): text is set in Courier, and "
        "characters outside Windows-1252 print as '?'; install DejaVu fonts or set a font",
        " or ".join(FONT_NAMES),
        ", ".join(str(folder) for folder in FONT_DIRS),
    )
    return None


def _candidate_fonts() -> Iterator[Path]:
    try:
        home: tuple[Path, ...] = tuple(Path.home() / folder for folder in USER_FONT_DIRS)
    except RuntimeError:  # no home folder (a service account without one)
        home = ()
    for name in FONT_NAMES:
        for folder in FONT_DIRS:
            yield folder / name
    for name in FONT_NAMES:
        for tree in (*FONT_TREES, *home):
            try:
                yield from sorted(tree.rglob(name))
            except OSError:
                continue


def _font_problem(path: Path) -> str | None:
    """Why fpdf2 cannot use the font at ``path``, or ``None`` if it can."""
    try:
        if not path.is_file():
            return "no such file"
        with path.open("rb") as file:
            signature = file.read(4)
        if signature not in _FONT_SIGNATURES:
            # Checked before fontTools sees the file: it leaves a file it rejects open.
            return "not a TrueType or OpenType font"
        probe = FPDF()
        try:
            probe.add_font(_FONT_FAMILY, "", str(path))
        finally:
            _close_fonts(probe)
    except Exception as exc:  # fontTools raises many types for a file that is not a font
        return f"{type(exc).__name__}: {exc}"
    return None
