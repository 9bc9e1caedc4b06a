"""Durable file writes, the way Maildir and Postfix's queue make them.

A file is written under a temporary dot-name in its final folder (so scanners skip it and the
rename stays on one file system), flushed and fsynced, renamed over the target, and the
folder is fsynced so that the rename itself survives a crash. A reader sees the old file or
the new one, never a part of either.

Files are private by default: the owner's alone (0600), or readable by the folder's group too
(0640) when the folder belongs to a group on purpose (setgid and group-readable: the spool's
folders with ``[spool] group``). Nothing written here is ever readable by others.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX; elsewhere as durable as the OS makes it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def private_mode(folder: Path) -> int:
    """The mode of a new file in ``folder``: 0600, or 0640 when ``folder`` belongs to a group
    on purpose (setgid and group-readable)."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return 0o600
    return 0o640 if mode & stat.S_ISGID and mode & stat.S_IRGRP else 0o600


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` (and its missing parents) with mode 0700; take others' access away
    from it when it exists and is ours (a setgid folder keeps its group's)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(folder)
    if st.st_uid != os.geteuid():
        return  # not ours to change (and its files are private anyway)
    keep = 0o7750 if st.st_mode & stat.S_ISGID else 0o7700
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~keep:
        os.chmod(folder, mode & keep)


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], object], *,
                 mode: int | None = None) -> int:
    """Replace ``path`` with ``data`` (bytes, or a function writing to a binary file).

    The file has ``mode`` from its creation, so a secret (mode 0600) is never readable by
    others, not even for a moment; without ``mode`` it is private as
    :func:`private_mode` says. Returns the size written.
    """
    temp = _temp_name(path)
    chosen = private_mode(path.parent) if mode is None else mode
    # O_EXCL: never write through a file (or a link) someone else prepared under that name.
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, chosen)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if mode is None:
                # The umask may take the group's read away; the folder says it may read.
                os.fchmod(handle.fileno(), chosen)
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size


def link_atomic(source: Path, path: Path, *, size: int) -> int | None:
    """Make ``path`` a second name of the file ``source`` (a hard link: nothing copied),
    replacing what was there, as durably as :func:`write_atomic` writes; returns ``size``.

    None, with nothing changed, where it cannot be done: the file system has no hard links
    (or not across these folders), or ``source`` is no longer an ordinary file of ``size``
    bytes. The caller then writes the bytes instead.
    """
    try:
        st = os.lstat(source)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return None  # a symbolic link (never followed), or changed since it was read
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(os.lstat(path), st):
            return size  # already that file (made durable when it was linked)
    temp = _temp_name(path)
    try:
        os.link(source, temp, follow_symlinks=False)
    except OSError:
        return None
    try:
        try:
            descriptor = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # replaced by a symbolic link meanwhile, or gone
            temp.unlink(missing_ok=True)
            return None
        try:
            if not os.path.samestat(os.fstat(descriptor), st):
                temp.unlink()  # replaced meanwhile: not the file that was read
                return None
            # The source may have been written moments ago by whoever made it (a file
            # dropped for the intake): its data is made durable here, as a copy's would be.
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size


#: What a temporary name beside a target ends in (:func:`write_atomic`, :func:`link_atomic`,
#: the fax TIFF being written), and a part of a file written by a helper process. Such names
#: begin with a dot, as everything in a folder in the making does.
TEMP_SUFFIX, PART_SUFFIX = ".tmp", ".part"
TEMP_SUFFIXES = (TEMP_SUFFIX, PART_SUFFIX)


def _temp_name(path: Path) -> Path:
    """A new dot-name beside ``path``, to be renamed over it."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def remove_temporaries(folder: Path) -> list[str]:
    """Remove what writers killed on the way left in ``folder`` (not below it): the files
    with temporary dot-names (:data:`TEMP_SUFFIXES`). Only ordinary files; a link is
    removed, never followed. The names removed; a folder that cannot be read, none."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIXES)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed
