"""The text of an HTML body, for a message that has no plain text body (some devices and mail
programs send HTML only).

Python's own HTML parser reads it: only the text a person would see is kept, with a line
break where a block ends. Scripts, styles and the head are dropped, and nothing the markup
points to is fetched (no links followed, no images loaded): the HTML is data, never run.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

#: Elements whose content is never text on the page.
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "svg",
                     "object", "iframe"})
#: Elements that stand on lines of their own, and how far apart: 1 a line break (a list
#: item, a table row), 2 a blank line (a paragraph). Neighbours take the larger.
_BREAKS = {
    **dict.fromkeys(("div", "li", "tr", "dt", "dd", "section", "article", "header",
                     "footer", "address", "caption"), 1),
    **dict.fromkeys(("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table",
                     "ul", "ol", "dl", "hr"), 2),
}
#: A run of white space in markup is one space on the page (line breaks too, but in <pre>).
_SPACE = re.compile(r"[ \t\r\n\f]+")


class _TextOnly(HTMLParser):
    """Collects the shown text; character references are turned into characters."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        #: Text, and ints where a block begins or ends (its :data:`_BREAKS` value).
        self.pieces: list[str | int] = []
        self._hidden = 0  # inside this many hidden elements
        self._pre = 0  # inside this many <pre> (its line breaks are kept)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._hidden = 0  # a head left open ends where the body begins (as in a browser)
        elif tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self.pieces.append("\n")
        elif tag in ("td", "th"):
            self.pieces.append(" ")
        elif tag in _BREAKS:
            self.pieces.append(_BREAKS[tag])
            self._pre += tag == "pre"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":  # <br/>: nothing hidden opens
            self.pieces.append("\n")
        elif tag in _BREAKS and tag not in _HIDDEN:
            self.pieces.append(_BREAKS[tag])

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BREAKS:
            self.pieces.append(_BREAKS[tag])
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.pieces.append(data if self._pre else _SPACE.sub(" ", data))

    def text(self) -> str:
        """The pieces joined: each run of block edges is as many line breaks as the widest."""
        out: list[str] = []
        pending = 0
        for piece in self.pieces:
            if isinstance(piece, int):
                pending = max(pending, piece)
            elif pending and not piece.strip():
                continue  # white space between blocks shows nothing
            else:
                if pending:
                    out.append("\n" * pending)
                    pending = 0
                out.append(piece)
        return "".join(out)


def html_to_text(markup: str) -> str:
    """The text ``markup`` shows, a line per line break, a blank line between paragraphs,
    spaces collapsed; "" for markup that shows nothing. Never raises for broken markup."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in parser.text().splitlines()]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip()
