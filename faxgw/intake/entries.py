"""Entries of the drop folders, handled through descriptors: no link is ever followed.

Users and scanners write into ``outgoing/``, so any entry there may change between two looks
at it. Folders are opened with ``O_NOFOLLOW`` and everything in them is reached relative to
the folder's descriptor; a file is taken by one ``rename`` into the job's private folder and
only then judged (:func:`judge_taken`): there, nobody but the gateway can swap it any more.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from .access import Access

__all__ = ["DIR_FLAGS", "LINK", "MAX_NAME_BYTES", "Refusal", "Source", "doc_name", "judge_taken",
           "open_dir", "read_regular"]

#: A folder, never through a link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: A file to look at: never through a link, never waiting on a pipe, never a terminal.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
#: The longest file name (in bytes) Linux and most file systems allow.
MAX_NAME_BYTES = 255

LINK = "is a symbolic link (links are never followed)"


@dataclass(frozen=True, slots=True)
class Source:
    """An entry to take: ``name`` in the folder ``dir_fd``, to be ``target`` in the job;
    ``path`` is where it was, for ``job.json`` (recovery finishes a manifest's claim by it)."""

    dir_fd: int
    name: str
    target: str
    path: str


class Refusal(Exception):
    """An entry that may not be taken as a document, and why."""


@contextlib.contextmanager
def open_dir(name: str | os.PathLike[str], dir_fd: int | None = None) -> Iterator[int]:
    """A folder's descriptor (``name`` relative to ``dir_fd``), closed afterwards; ELOOP
    or ENOTDIR when ``name`` is a link or no folder."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def describe(st: os.stat_result) -> str | None:
    """Why an entry with status ``st`` is no document, or None for an ordinary file with one
    name."""
    if stat.S_ISLNK(st.st_mode):
        return LINK
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        return "is a device file, pipe or socket, not an ordinary file"
    if st.st_nlink > 1:
        return "is a hard link (it has another name elsewhere)"
    return None


def judge_taken(dir_fd: int, name: str, *, device: int, access: Access,
                same_as: tuple[int, int] | None = None) -> str | None:
    """Why the entry ``name`` just taken into the private folder ``dir_fd`` may not be used
    as a document, or None; an ordinary file of the gateway's is made private.

    ``same_as`` (device, inode): the entry must be that file (a manifest read before it was
    taken). Devices and pipes are judged by ``lstat`` and never opened.
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "vanished while it was being taken"
    reason = describe(st) if not stat.S_ISREG(st.st_mode) else None
    if reason:
        return reason
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        return LINK if exc.errno == errno.ELOOP else f"cannot be opened: {exc.strerror}"
    try:
        held = os.fstat(fd)
        if (held.st_dev, held.st_ino) != (st.st_dev, st.st_ino):
            return "changed while it was being taken"
        reason = describe(held)
        if reason is None and held.st_dev != device:
            reason = "is on another file system than the spool"
        if reason is None and same_as is not None and (held.st_dev, held.st_ino) != same_as:
            reason = "was replaced while it was being taken"
        if reason is None:
            access.own_file(fd, held)
        return reason
    finally:
        os.close(fd)


def read_regular(dir_fd: int, name: str, limit: int) -> tuple[bytes, tuple[int, int]]:
    """The content of the ordinary file ``name`` in ``dir_fd`` (at most ``limit`` + 1 bytes)
    and its (device, inode); :class:`Refusal` when it is no ordinary file with one name."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refusal(LINK) from None
        raise
    try:
        st = os.fstat(fd)
        reason = describe(st)
        if reason:
            raise Refusal(reason)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def doc_name(name: str) -> str:
    """The name a dropped file keeps in its job folder and the job log: itself, unless it is
    not UTF-8 (its bytes that are not become U+FFFD) or then too long for a file name."""
    raw = os.fsencode(name)
    safe = raw.decode("utf-8", "replace")
    if len(safe.encode("utf-8")) <= MAX_NAME_BYTES:
        return safe
    suffix = os.path.splitext(safe)[1]
    return "document" + (suffix if len(suffix.encode("utf-8")) <= 32 else "")
