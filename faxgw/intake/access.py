"""Who may read what the gateway keeps in the spool: its owner alone, or a group too.

Everything the gateway makes in its own folders (``jobs``, ``failed``, ``tmp``, ``state``) is
private: folders 0700 and files 0600, or, with ``[spool] group``, folders 0750 with setgid
(new files and folders take the group) and files 0640, given to that group. Nobody else has
any access. ``outgoing/`` is the one folder others write into; its mode is the
administrator's, and only a missing one is made (0770).
"""

from __future__ import annotations

import grp
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..domain.errors import SpoolError

__all__ = ["OUTGOING_MODE", "Access"]

log = logging.getLogger("faxgw.spool")

#: A new ``outgoing/``: the gateway and its group (the scanners' accounts) write into it.
OUTGOING_MODE = 0o770


@dataclass(frozen=True, slots=True)
class Access:
    """The modes and the group of what the gateway keeps (``gid`` None: its owner alone)."""

    gid: int | None = None
    group: str = ""

    @classmethod
    def of_group(cls, group: str) -> Access:
        """The access ``[spool] group`` names ("" for none); SpoolError for an unknown group."""
        if not group:
            return cls()
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise SpoolError(f"[spool] group: there is no group {group!r}") from None
        return cls(gid, group)

    @property
    def dir_mode(self) -> int:
        """0700, or 2750 (setgid) with a group."""
        return 0o2750 if self.gid is not None else 0o700

    @property
    def file_mode(self) -> int:
        """0600, or 0640 with a group."""
        return 0o640 if self.gid is not None else 0o600

    def make_dir(self, path: Path) -> None:
        """Create the folder ``path`` with :attr:`dir_mode`, whatever the umask."""
        os.mkdir(path, self.dir_mode)
        self._apply(path, os.lstat(path))

    def fit_dir(self, path: Path) -> None:
        """Give an existing folder of the gateway's :attr:`dir_mode` and the group, when it
        has other ones (a wider mode is tightened, a narrower one opened for the group)."""
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise SpoolError(f"{path} is not a folder")
        if stat.S_IMODE(st.st_mode) == self.dir_mode and self.gid in (None, st.st_gid):
            return
        if st.st_uid != os.geteuid() and os.geteuid() != 0:
            log.warning("%s has mode %o and is not the gateway's to change: make it %o",
                        path, stat.S_IMODE(st.st_mode), self.dir_mode)
            return
        log.info("%s: mode %o made %o", path, stat.S_IMODE(st.st_mode), self.dir_mode)
        self._apply(path, st)

    def fit_file(self, path: Path) -> None:
        """Give an existing file of the gateway's in one of its folders :attr:`file_mode` and
        the group (a link is left as it is)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return
        # By name, never by opening it: closing any descriptor of a database file drops
        # every SQLite lock this process holds on it. The folder is the gateway's alone, so
        # the name cannot be swapped between the look and the change.
        if self.gid is not None and st.st_gid != self.gid:
            os.chown(path, -1, self.gid, follow_symlinks=False)
        if stat.S_IMODE(st.st_mode) != self.file_mode:
            os.chmod(path, self.file_mode)

    def own_file(self, fd: int, st: os.stat_result) -> None:
        """Make the open file ``fd`` (with status ``st``) private, when it is the gateway's
        own. A file another account dropped keeps its owner and mode: the gateway cannot
        change them, and the private folder it now lies in keeps others out."""
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return
        try:
            if self.gid is not None and st.st_gid != self.gid:
                os.fchown(fd, -1, self.gid)
            if stat.S_IMODE(st.st_mode) != self.file_mode:
                os.fchmod(fd, self.file_mode)
        except OSError as exc:
            log.warning("cannot make a file private (mode %o): %s", self.file_mode,
                        exc.strerror)

    def _apply(self, path: Path, st: os.stat_result) -> None:
        if self.gid is not None and st.st_gid != self.gid:
            try:
                os.chown(path, -1, self.gid, follow_symlinks=False)
            except PermissionError:
                raise SpoolError(f"[spool] group: cannot give {path} to the group "
                                 f"{self.group!r}: the gateway's account is not a member of "
                                 "it") from None
        # chmod after chown: a change of group may clear the setgid bit.
        os.chmod(path, self.dir_mode)
