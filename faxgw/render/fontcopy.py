"""The characters most text is made of, as a small copy of the text font made once a process.

fpdf2 reads the whole TrueType font for every document it sets (DejaVu Sans Mono: 340 KB,
some 3,300 glyphs) and subsets it again when it writes the PDF: most of the time a page of
text takes. Text made only of :data:`COMMON` characters (Latin letters with their accents,
digits, punctuation, the euro sign) is set in a copy of the font that holds just those
(about 47 KB), made with fontTools' subsetter the first time it is needed: the same glyphs
and the same widths, so the page is the same. Text with any other character is set in the
whole font, as before.

The copy is a file, because fpdf2 takes fonts by file name: ``faxgw-fonts-<pid>/`` in the
temporary folder, private to the process (0700), removed when the process ends. Those of
processes that ended without removing theirs (killed: a render process over its CPU limit)
are removed by the next process that makes one.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("faxgw.render")

#: The characters the copy holds: printable ASCII, Latin-1, Latin Extended-A (Ł, Š, ő…),
#: general punctuation (dashes, quotation marks, the ellipsis) and the euro sign.
COMMON: frozenset[str] = frozenset(
    chr(code) for code in [*range(0x20, 0x7F), *range(0xA0, 0x180), *range(0x2010, 0x2040),
                           0x20AC, 0xFFFD])
#: What the text may hold besides: line ends, tabs and form feeds, never set as glyphs.
_LAYOUT = frozenset("\n\r\t\f\v")
_PREFIX = "faxgw-fonts-"


def font_for(text: str, font: Path) -> Path:
    """The font file to set ``text`` in: the small copy of ``font`` when every character of
    the text is in it (and the copy can be made), else ``font`` itself."""
    if not set(text) <= COMMON | _LAYOUT:
        return font
    return _common_copy(font) or font


@functools.cache
def _common_copy(font: Path) -> Path | None:
    """The copy of ``font`` with the :data:`COMMON` characters (made once a process), or
    None when it cannot be made (the whole font is used then)."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    try:
        folder = _own_folder()
        target = folder / f"common-{font.stem}.ttf"
        options = subset.Options()
        options.name_IDs = ["*"]  # the font keeps its names
        options.notdef_outline = True
        options.layout_features = ["*"]
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=[ord(char) for char in COMMON])
        with TTFont(str(font)) as loaded:
            subsetter.subset(loaded)
            loaded.save(str(target))
        return target
    except Exception as exc:  # noqa: BLE001 - a copy is only quicker: the font itself will do
        log.debug("no copy of %s with the common characters (%s): the whole font is used",
                  font, exc)
        return None


def _own_folder() -> Path:
    """``faxgw-fonts-<pid>/`` (0700) in the temporary folder, removed at the process's end;
    first, those of processes that are gone."""
    base = Path(tempfile.gettempdir())
    _sweep(base)
    folder = base / f"{_PREFIX}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # a process before this one with our pid
    folder.mkdir(mode=0o700)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _sweep(base: Path) -> None:
    """Remove the font folders of ended processes (ours only: a folder of another user's
    process is not ours to judge)."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            if not entry.name.startswith(_PREFIX):
                continue
            pid = entry.name.removeprefix(_PREFIX)
            if not pid.isdigit() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if entry.lstat().st_uid == os.geteuid() and entry.is_dir() \
                        and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
