"""Reading a TIFF's page directories (IFDs) without decoding any page.

The read-back check of a fax TIFF looks at every page's tags; Pillow would build an image
object per page to show them (about half a millisecond a page), where the directories are a
few hundred bytes each. This reader follows the directory chain (TIFF 6.0, section 2) with
:mod:`struct` and returns the numeric tags of each page. It is not a general TIFF reader:
BigTIFF, and values it does not need (ASCII, floats, undefined bytes), are left out.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

#: Field types read (TIFF 6.0): BYTE, SHORT, LONG, RATIONAL, as (struct code, size).
_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8)}
#: A page directory: tag → its values (a RATIONAL as a float).
Directory = dict[int, tuple[float, ...]]


class TiffStructureError(ValueError):
    """The file is not a TIFF, or its directory chain is broken."""


def read_directories(path: Path, *, limit: int) -> list[Directory]:
    """The page directories of the TIFF at ``path``, in order, at most ``limit``. Reads
    the directories alone, not the pages: memory does not grow with the file."""
    with path.open("rb") as file:
        head = file.read(8)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
            raise TiffStructureError("not a (classic) TIFF file")
        (offset,) = struct.unpack(order + "I", head[4:8])
        directories: list[Directory] = []
        seen: set[int] = set()
        while offset and len(directories) < limit:
            if offset in seen:
                raise TiffStructureError("the directory chain loops")
            seen.add(offset)
            directory, offset = _directory(file, order, offset)
            directories.append(directory)
        return directories


def _read(file: BinaryIO, offset: int, size: int) -> bytes:
    file.seek(offset)
    data = file.read(size)
    if len(data) != size:
        raise TiffStructureError("a directory runs past the end of the file")
    return data


def _directory(file: BinaryIO, order: str, offset: int) -> tuple[Directory, int]:
    """The directory at ``offset`` and the offset of the next one (0: the last)."""
    (entries,) = struct.unpack(order + "H", _read(file, offset, 2))
    table = _read(file, offset + 2, 12 * entries + 4)
    directory: Directory = {}
    for index in range(entries):
        tag, kind, count = struct.unpack_from(order + "HHI", table, 12 * index)
        if kind not in _TYPES:
            continue
        code, size = _TYPES[kind]
        values_bytes = table[12 * index + 8:12 * index + 12]
        if size * count > 4:  # the values do not fit in the entry: it holds their offset
            (where,) = struct.unpack(order + "I", values_bytes)
            values_bytes = _read(file, where, size * count)
        values: tuple[float, ...] = struct.unpack_from(order + code * count, values_bytes)
        if kind == 5:  # RATIONAL: numerator, denominator pairs
            values = tuple(values[i] / values[i + 1] if values[i + 1] else 0.0
                           for i in range(0, len(values), 2))
        directory[tag] = values
    (following,) = struct.unpack_from(order + "I", table, 12 * entries)
    return directory, following
