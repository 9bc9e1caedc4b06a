"""The cover page: who the fax is for and from, when, how many pages, subject and note.

The page is set with fpdf2 in the TrueType font :func:`faxgw.render.text.resolve_font`
finds (DejaVu), so names such as Łódź, Jürgen Groß or Émile print as themselves.

Its layout comes from a template: the built-in :data:`DEFAULT_TEMPLATE`, or a UTF-8 text
file named by ``[service] cover_template``. The format, line by line:

* ``# ...`` is a comment and is left out;
* ``= Title`` is a heading, set large;
* ``---`` (three or more dashes) draws a rule across the page;
* every other line is set as it is, wrapped at the margin; an empty line is an empty line.

Placeholders, filled in every line: ``{to}`` (the number), ``{address}`` (the service
address), ``{from}``, ``{date}``, ``{pages}`` (all pages, this one included), ``{subject}``,
``{note}`` (may hold several lines). ``{{`` and ``}}`` print braces. An unknown placeholder
or a stray brace is a configuration error naming the line.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont

from ..domain.errors import ConfigError
from .fontcopy import font_for
from .pdf import paper_size
from .text import MARGIN, _close_fonts, _printable, resolve_font

#: The placeholders a template may use.
PLACEHOLDERS = ("to", "address", "from", "date", "pages", "subject", "note")

DEFAULT_TEMPLATE = """\
# faxgw's built-in cover page. Copy it, change it, and name the copy in
# [service] cover_template. Placeholders: {{to}} {{address}} {{from}} {{date}}
# {{pages}} {{subject}} {{note}}.
= FAX
---
To:       {to}
From:     {from}
Date:     {date}
Pages:    {pages} (this page included)
Subject:  {subject}
---

{note}
"""

HEADING_SIZE = 30.0  # pt; readable across a room, and after a bad fax line
BODY_SIZE = 12.0  # pt; larger than the text pages' 10 pt, a cover is read first
LINE_SPACING = 1.35  # line height as a multiple of the font size
RULE_WIDTH = 1.0  # pt; two pixels at fax resolution, so the rule survives thresholding
_FONT_FAMILY = "faxgw-cover"
_FALLBACK_ENCODING = "cp1252"


@dataclass(frozen=True, slots=True)
class CoverInfo:
    """What the cover page says about one fax."""

    to_number: str
    to_address: str
    sender: str
    date: datetime
    subject: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class CoverTemplate:
    """A parsed cover page template: its lines without comments, and where it came from."""

    lines: tuple[str, ...]
    source: str


def load_template(path: Path | None) -> CoverTemplate:
    """The template at ``path`` (``None``: the built-in one), checked.

    Raises :class:`ConfigError` naming ``[service] cover_template`` when the file cannot be
    read or uses an unknown placeholder or a stray brace.
    """
    if path is None:
        text, source = DEFAULT_TEMPLATE, "built-in"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(
                f"[service] cover_template: cannot read {path}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"[service] cover_template: {path} is not UTF-8 text"
            ) from None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            continue
        _check_placeholders(line, number, source)
        lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return CoverTemplate(lines=tuple(lines), source=source)


def _check_placeholders(line: str, number: int, source: str) -> None:
    where = f"[service] cover_template: {source}, line {number}"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(line) if field is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} (write {{{{ and }}}} for a brace)") from None
    for field in fields:
        if field not in PLACEHOLDERS:
            raise ConfigError(
                f"{where}: unknown placeholder {{{field}}} "
                f"(known: {', '.join('{' + name + '}' for name in PLACEHOLDERS)})"
            )


def render_cover(
    info: CoverInfo,
    *,
    document_pages: int,
    paper: str = "A4",
    template: Path | CoverTemplate | None = None,
    font: Path | None = None,
) -> bytes:
    """The cover page(s) for ``info`` as a PDF on ``paper``.

    ``document_pages`` counts the pages after the cover; ``{pages}`` shows them plus the
    cover's own (a long note can take the cover over more than one page). ``template`` is a
    template file, a loaded template, or ``None`` for the built-in one; ``font`` a TrueType
    font (default: DejaVu, see :func:`~faxgw.render.text.resolve_font`).
    """
    loaded = template if isinstance(template, CoverTemplate) else load_template(template)
    page_size = paper_size(paper)
    font_path = resolve_font(Path(font) if font is not None else None)
    cover_pages = 1
    # {pages} includes the cover itself; set it again if the cover ran onto more pages.
    for _ in range(3):
        values = _values(info, document_pages + cover_pages)
        font_used = font_path
        if font_path is not None:  # a small copy of the font when it holds all the text
            font_used = font_for("".join([*loaded.lines, *values.values()]), font_path)
        data, produced = _typeset(loaded, values, page_size, font_used)
        if produced == cover_pages:
            break
        cover_pages = produced
    return data


def _values(info: CoverInfo, pages: int) -> dict[str, str]:
    date = info.date.strftime("%Y-%m-%d %H:%M")
    zone = info.date.tzname() if info.date.tzinfo is not None else None
    return {
        "to": info.to_number,
        "address": info.to_address,
        "from": info.sender,
        "date": f"{date} {zone}" if zone else date,
        "pages": str(pages),
        "subject": info.subject,
        "note": info.note,
    }


def _typeset(
    template: CoverTemplate,
    values: dict[str, str],
    page_size: tuple[float, float],
    font_path: Path | None,
) -> tuple[bytes, int]:
    """The cover as PDF bytes, and how many pages it took."""
    width, height = page_size
    pdf = FPDF(unit="pt", format=(width, height))
    try:
        pdf.set_creator("faxgw")
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(True, margin=MARGIN)
        known = _set_font(pdf, font_path)
        pdf.add_page()
        for template_line in template.lines:
            if template_line.startswith("= "):
                heading = template_line[2:].format(**values)
                _write(pdf, heading, HEADING_SIZE, known)
            elif len(template_line) >= 3 and set(template_line) == {"-"}:
                y = pdf.get_y() + BODY_SIZE * 0.5
                pdf.set_line_width(RULE_WIDTH)
                pdf.line(MARGIN, y, width - MARGIN, y)
                pdf.set_y(y + BODY_SIZE * 0.5)
            else:
                for line in template_line.format(**values).splitlines() or [""]:
                    _write(pdf, line, BODY_SIZE, known)
        pages = pdf.page
        return bytes(pdf.output()), pages
    finally:
        _close_fonts(pdf)


def _set_font(pdf: FPDF, font_path: Path | None) -> set[int] | None:
    """Load the font; return the code points it has (``None``: core font, Windows-1252)."""
    if font_path is not None:
        pdf.add_font(_FONT_FAMILY, "", str(font_path))
        pdf.set_font(_FONT_FAMILY, size=BODY_SIZE)
        loaded = pdf.current_font
        assert isinstance(loaded, TTFFont)
        return set(loaded.cmap)
    # No TrueType font anywhere: Courier with WinAnsiEncoding; the rest prints as "?".
    pdf.core_fonts_encoding = _FALLBACK_ENCODING
    pdf.set_font("Courier", size=BODY_SIZE)
    return None


def _write(pdf: FPDF, line: str, size: float, known: set[int] | None) -> None:
    pdf.set_font_size(size)
    printable = _printable(line, known)
    if not printable.strip():
        pdf.ln(size * LINE_SPACING)
        return
    pdf.multi_cell(0, size * LINE_SPACING, printable, align="L",
                   new_x="LMARGIN", new_y="NEXT")
