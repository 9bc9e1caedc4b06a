"""Scanning ``outgoing/``: every settled drop becomes a job, and every drop gets an answer.

The three kinds of drop: a file in a number folder (one job to that number), a manifest
(``NAME.fax``: the job, with the files it names) and anything else at the top (it waits for
the manifest that names it). Whatever one entry raises, it becomes a failed job with a code
and the cause, its original kept in ``failed/``; an entry that cannot even be moved is
logged once (not at every scan) and left where it is; the scan goes on with the next entry.
Only a spool that cannot be written (:class:`~faxgw.domain.errors.SpoolError`) stops it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tomllib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..domain import codes
from ..domain.errors import SpoolError
from ..domain.jobs import new_job_id
from .checks import control_refusal, shown
from .entries import DIR_FLAGS, LINK, MAX_NAME_BYTES, Refusal, Source, doc_name, read_regular
from .job_file import Intake
from .layout import IGNORED_SUFFIXES, MANIFEST_SUFFIX
from .manifest import manifest_fields

if TYPE_CHECKING:
    from .commit import Taken
    from .spool import Spool

__all__ = ["BATCH", "MAX_MANIFEST_BYTES", "Scanner"]

log = logging.getLogger("faxgw.spool")

#: Jobs taken before their folders enter ``jobs/`` together (one fsync of the folders
#: they share, :mod:`~faxgw.intake.commit`), at most.
BATCH = 64
#: A manifest is a few lines; a larger one is refused unread beyond this.
MAX_MANIFEST_BYTES = 64 * 1024


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


class Scanner:
    """Takes the drops of one spool's ``outgoing/``."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        #: Entries that cannot be moved, and why: each is logged once, until it changes.
        self._unmovable: dict[str, str] = {}
        self._seen: set[str] = set()
        #: Taken into tmp/ and not yet committed into jobs/.
        self._batch: list[Taken] = []

    def _settled(self, st: os.stat_result) -> bool:
        # ctime too: a file moved in keeps its old mtime, but the move itself is a change.
        changed = max(st.st_mtime, st.st_ctime)
        return self.spool.clock() - changed >= self.spool.settle_seconds

    def scan(self) -> Iterator[list[Intake]]:
        """Take every settled drop; yield the jobs in batches of up to :data:`BATCH`, each
        batch once its jobs are complete in ``jobs/`` (made durable together)."""
        outgoing = self.spool.layout.outgoing
        try:
            out_fd = os.open(outgoing, DIR_FLAGS)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SpoolError(f"cannot read {outgoing}: {exc.strerror} (a link is never "
                             "followed)") from None
        self._seen = set()
        try:
            try:
                for name in sorted(os.listdir(out_fd)):
                    if not _ignored(name):
                        yield from self._guarded(out_fd, name, name, "", self._top, out_fd,
                                                 name)
            except SpoolError:
                yield from self._commit()  # the jobs taken before it still go on
                raise
            yield from self._commit()
        finally:
            os.close(out_fd)
            # A scan cut short in the middle of a batch (an interrupt during a take; a consumer
            # that stops does so at a yield, where no batch is pending): what it took goes
            # into jobs/ all the same (registered at the next start), never left half-taken.
            if self._batch:
                self.spool.commit_batch(self._batch)
                self._batch = []
        # Only after a whole scan: what was not seen is gone (or fixed), and if it comes back
        # it is logged again.
        self._unmovable = {rel: why for rel, why in self._unmovable.items()
                           if rel in self._seen}

    def _guarded(self, dir_fd: int, name: str, rel: str, number: str,
                 work: Callable[..., Iterator[list[Intake]]],
                 *args: object) -> Iterator[list[Intake]]:
        """``work(*args)``; whatever it raises, the entry is answered as a failed job."""
        self._seen.add(rel)
        try:
            yield from work(*args)
        except SpoolError:
            raise
        except Exception as exc:  # noqa: BLE001 - one entry never stops the scan
            log.debug("outgoing/%s could not be taken", shown(rel), exc_info=exc)
            if isinstance(exc, OSError):
                code, cause = codes.INPUT_REFUSED, f"cannot be read: {exc.strerror}"
            else:
                code, cause = codes.INTERNAL, f"{type(exc).__name__}: {exc}"
            yield from self._take_entry(dir_fd, name, rel, number, code, cause)

    def _take(self, rel: str, intake: Intake, sources: list[Source],
              manifest: Source | None = None,
              identity: tuple[int, int] | None = None) -> Iterator[list[Intake]]:
        try:
            self.spool.take(intake, sources, manifest=manifest, identity=identity,
                            batch=self._batch)
        except SpoolError:
            raise
        except OSError as exc:
            self._cannot_move(rel, exc)
            return
        if len(self._batch) >= BATCH:
            yield from self._commit()

    def _commit(self) -> Iterator[list[Intake]]:
        """Commit the batch; yield its jobs, then raise what kept any of them out."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        done = self.spool.commit_batch(batch)
        if done.intakes:
            yield done.intakes
        if done.error is not None:
            raise done.error

    def _cannot_move(self, rel: str, exc: OSError) -> None:
        why = exc.strerror or type(exc).__name__
        if self._unmovable.get(rel) != why:
            self._unmovable[rel] = why
            log.error("! outgoing/%s cannot be taken (%s): it stays where it is; said once, "
                      "until it changes", shown(rel), why)

    def _take_entry(self, dir_fd: int, name: str, rel: str, number: str, code: int,
                    cause: str) -> Iterator[list[Intake]]:
        """Take the entry itself (a file, a link, a folder) as a failed job."""
        shown_rel = shown(doc_name(rel))
        intake = Intake(id=new_job_id(), number=doc_name(number),
                        source=f"outgoing/{doc_name(rel)}", error_code=code,
                        error=f"{shown_rel}: {cause}; it was not sent")
        source = Source(dir_fd, name, doc_name(name),
                        str(self.spool.layout.outgoing / doc_name(rel)))
        yield from self._take(rel, intake, [source])

    def _top(self, out_fd: int, name: str) -> Iterator[list[Intake]]:
        try:
            st = os.stat(name, dir_fd=out_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # taken by another worker meanwhile
        if stat.S_ISDIR(st.st_mode):
            yield from self._number_folder(out_fd, name)
        elif not self._settled(st):
            return
        elif name.endswith(MANIFEST_SUFFIX):
            yield from self._manifest(out_fd, name)
        elif stat.S_ISLNK(st.st_mode):
            # A link at the top may be a number folder pointing elsewhere: refuse it.
            yield from self._take_entry(out_fd, name, name, "", codes.INPUT_REFUSED, LINK)
        # Any other file at the top waits for the manifest that names it.

    def _number_folder(self, out_fd: int, number: str) -> Iterator[list[Intake]]:
        try:
            folder_fd = os.open(number, DIR_FLAGS, dir_fd=out_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return  # gone or swapped since the look: the next scan sees what it is now
            raise  # it cannot be read: answered by _guarded
        try:
            names = sorted(os.listdir(folder_fd))
            for name in names:
                if not _ignored(name):
                    rel = f"{number}/{name}"
                    yield from self._guarded(folder_fd, name, rel, number, self._drop,
                                             folder_fd, number, name, rel)
        finally:
            os.close(folder_fd)

    def _drop(self, folder_fd: int, number: str, name: str, rel: str) -> Iterator[list[Intake]]:
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not self._settled(st):
            return
        source = f"outgoing/{doc_name(number)}/{doc_name(name)}"
        intake = Intake(id=new_job_id(), number=doc_name(number), source=source)
        path = str(self.spool.layout.root / source)
        yield from self._take(rel, intake, [Source(folder_fd, name, doc_name(name), path)])

    def _manifest(self, out_fd: int, name: str) -> Iterator[list[Intake]]:
        target = doc_name(name)
        intake = Intake(id=new_job_id(), number="", source=f"outgoing/{target}")
        manifest = Source(out_fd, name, target, str(self.spool.layout.outgoing / target))

        def refused(code: int, why: str,
                    identity: tuple[int, int] | None = None) -> Iterator[list[Intake]]:
            intake.refuse(code, f"{shown(target)}: {why}")
            return self._take(name, intake, [], manifest, identity)

        try:
            data, identity = read_regular(out_fd, name, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            return
        except Refusal as exc:
            yield from refused(codes.INPUT_REFUSED, str(exc))
            return
        except OSError as exc:
            yield from refused(codes.BAD_MANIFEST, f"cannot be read: {exc.strerror}")
            return
        if len(data) > MAX_MANIFEST_BYTES:
            yield from refused(codes.BAD_MANIFEST, f"is larger than {MAX_MANIFEST_BYTES} "
                               "bytes; a manifest is a few lines", identity)
            return
        try:
            files, intake.number = manifest_fields(tomllib.loads(data.decode("utf-8")), intake)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:
            kind = (
                "not valid TOML: "
                if isinstance(exc, tomllib.TOMLDecodeError)
                else ("not UTF-8 text: " if isinstance(exc, UnicodeDecodeError) else "")
            )
            yield from refused(codes.BAD_MANIFEST, f"{kind}{exc}", identity)
            return
        reason = control_refusal([("number", intake.number), ("subject", intake.subject),
                                  ("note", intake.note), ("sender", intake.sender)], files)
        if reason:
            yield from refused(codes.CONTROL_CHARACTERS, reason, identity)
            return
        sources: list[Source] = []
        for document in files:
            if len(os.fsencode(document)) > MAX_NAME_BYTES:
                yield from refused(codes.BAD_MANIFEST, f"names a file whose name is longer "
                                   f"than {MAX_NAME_BYTES} bytes", identity)
                return
            try:
                doc_st = os.stat(document, dir_fd=out_fd, follow_symlinks=False)
            except FileNotFoundError:
                yield from refused(codes.BAD_MANIFEST,
                                   f"names {document!r}, which is not in outgoing/", identity)
                return
            except OSError as exc:
                yield from refused(codes.BAD_MANIFEST, f"names {document!r}, which cannot be "
                                   f"read: {exc.strerror}", identity)
                return
            if stat.S_ISDIR(doc_st.st_mode):
                yield from refused(codes.BAD_MANIFEST, f"names {document!r}, which is a folder "
                                   "(it is left where it is)", identity)
                return
            if stat.S_ISREG(doc_st.st_mode) and not self._settled(doc_st):
                return  # a document is still being written: take the job later
            sources.append(Source(out_fd, document, document,
                                  str(self.spool.layout.outgoing / document)))
        yield from self._take(name, intake, sources, manifest, identity)
