"""Setting a tag in place in a TIFF's page directories (what Pillow cannot be asked for
without a cost: see :mod:`faxgw.render.tiff`)."""

from __future__ import annotations

import struct
from pathlib import Path

#: PhotometricInterpretation.
PHOTOMETRIC = 262


def set_white_is_zero(path: Path, pages: int) -> None:
    """Set PhotometricInterpretation to 0 (WhiteIsZero) in each of the ``pages`` page
    directories of the TIFF at ``path``, in place: the pixels were written with ink as
    1-bits, and the tag (a SHORT, held in its directory entry) says so."""
    with path.open("r+b") as file:
        head = file.read(8)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None:
            raise ValueError("not a TIFF file")
        offset = struct.unpack(order + "I", head[4:8])[0]
        for _ in range(pages):  # bounded: a directory chain cannot loop us
            if offset == 0:
                raise ValueError("fewer page directories than pages")
            file.seek(offset)
            (entries,) = struct.unpack(order + "H", file.read(2))
            table = file.read(12 * entries)
            for index in range(entries):
                tag, kind, count = struct.unpack(order + "HHI", table[12 * index:12 * index + 8])
                if tag == PHOTOMETRIC and kind == 3 and count == 1:
                    file.seek(offset + 2 + 12 * index + 8)
                    file.write(struct.pack(order + "H", 0))
                    break
            else:
                raise ValueError("a page directory has no PhotometricInterpretation")
            file.seek(offset + 2 + 12 * entries)
            (offset,) = struct.unpack(order + "I", file.read(4))
