"""Reading a document: its size checked before a byte of it is read, no link followed.

A document is untrusted input, and a gateway run as a service must not be made to read a
file of many gigabytes into memory, nor to follow a link planted where a document should be.
:func:`read_document` opens the file with ``O_NOFOLLOW`` (a symbolic link is refused, never
followed) and ``O_NONBLOCK`` (a pipe put in a document's place does not hang the open), looks
at what it opened with ``fstat`` (only a regular file is read) and refuses a file larger
than ``[limits] max_input_bytes`` unread, with code 413. The size comes from the open file
itself, so a file swapped after a ``stat`` cannot slip past; reading stops one byte after the
limit, so a file that grows while it is read cannot either.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from ..config import LimitsConfig
from ..domain.codes import DOCUMENT_UNREADABLE, INPUT_REFUSED, INPUT_TOO_LARGE
from ..domain.errors import DocumentError
from ..fax.profiles import format_bytes

#: ``[limits] max_input_bytes`` when the caller names none (the configuration's default).
DEFAULT_MAX_INPUT_BYTES: int = LimitsConfig().max_input_bytes

# O_NOFOLLOW and O_CLOEXEC exist on every POSIX system faxgw runs on; 0 elsewhere keeps the
# module importable (where a link would then be followed, the intake has refused it anyway).
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0))


def read_document(path: Path, max_bytes: int = DEFAULT_MAX_INPUT_BYTES, *,
                  head: int | None = None) -> tuple[bytes, int]:
    """The bytes of the document at ``path`` (its first ``head`` bytes, if given) and its size.

    Raises :class:`DocumentError`: code 405 for a symbolic link or anything but a regular
    file, 413 for a file larger than ``max_bytes`` (nothing of it is read), 410 when it
    cannot be opened or read.
    """
    name = path.name
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
            raise DocumentError(f"{name}: the file is a symbolic link, which is not followed",
                                code=INPUT_REFUSED, filename=name) from exc
        raise _unreadable(name, exc) from exc
    with open(fd, "rb", buffering=0, closefd=True) as file:
        try:
            info = os.fstat(fd)
        except OSError as exc:
            raise _unreadable(name, exc) from exc
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(f"{name}: not a regular file (a device, pipe or folder)",
                                code=INPUT_REFUSED, filename=name)
        if info.st_size > max_bytes:
            raise too_large(name, info.st_size, max_bytes)
        try:
            if head is not None:
                return file.read(head) or b"", info.st_size
            data = _read_bounded(file, info.st_size, max_bytes)
        except OSError as exc:
            raise _unreadable(name, exc) from exc
    if len(data) > max_bytes:
        raise DocumentError(
            f"{name}: the file grew past the limit of {format_bytes(max_bytes)} "
            "([limits] max_input_bytes) while it was read; it was not used",
            code=INPUT_TOO_LARGE, filename=name)
    return data, len(data)


def _read_bounded(file: io.FileIO, size: int, max_bytes: int) -> bytes:
    """At most ``max_bytes`` + 1 bytes; one read of the stated size in the usual case."""
    limit = max_bytes + 1
    # One byte more than fstat said shows whether the file grew since; reading exactly the
    # stated size keeps the common case to one read and one allocation of the file's size.
    data: bytes = file.read(min(size + 1, limit)) or b""
    while size < len(data) < limit:  # it grew: read on, but never past the limit
        more: bytes = file.read(limit - len(data)) or b""
        if not more:
            break
        data += more
    return data


def too_large(name: str, size: int, max_bytes: int) -> DocumentError:
    """The error for a document of ``size`` bytes over ``max_bytes`` (code 413)."""
    size_text, limit_text = format_bytes(size), format_bytes(max_bytes)
    if size_text == limit_text:  # "50 MiB, limit 50 MiB" would puzzle: give the bytes
        size_text, limit_text = f"{size:,} bytes", f"{max_bytes:,} bytes"
    return DocumentError(
        f"{name}: the file is {size_text}, larger than the limit of {limit_text} "
        "([limits] max_input_bytes); it was not read",
        code=INPUT_TOO_LARGE, filename=name)


def _unreadable(name: str, exc: OSError) -> DocumentError:
    return DocumentError(f"{name}: the file cannot be read: {exc.strerror or exc}",
                         code=DOCUMENT_UNREADABLE, filename=name)
