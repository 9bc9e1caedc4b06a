"""The spool of one host among several: job files that travel with the job in PostgreSQL.

With ``[store] url`` set, every host keeps its own spool: its drop folders are its intake,
and its ``jobs/`` and ``tmp/`` the crash-safe staging area, as on a single host. What makes
a job sendable from any host is that its files are in the database too
(:mod:`faxgw.store.postgres.documents`):

- a job taken here (a drop, a manifest, ``faxgw submit``, a device's mail) has its folder
  (``job.json``, ``docs/``) stored *before* it is handed on to be registered, so no host can
  claim a job whose documents are not in the database yet; a job whose files cannot be
  stored now is held back and stored and handed on at the next scan (or at the next start:
  its folder is in ``jobs/``, unknown to the store);
- its rendered attachment is stored as soon as it is rendered (:meth:`keep_rendered`);
- a job taken on another host is brought into ``state/documents/<id>/`` when its folder is
  asked for, written as the spool writes (private modes, fsync, rename);
- a failed job keeps its originals in the database up to :data:`FAILED_ORIGINALS_MAX_BYTES`
  (more stay in the taking host's ``failed/`` only);
- the retention purge deletes them with the job; each host drops its copies of jobs whose
  files are gone from the database (at most every :data:`SWEEP_SECONDS`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..config import Config
from ..domain import codes
from ..domain.errors import StoreError, TransientError
from ..intake.job_file import Intake
from ..intake.layout import DOCS, JOB_FILE
from ..intake.spool import Spool
from ..store.postgres.doc_cache import bring
from ..store.postgres.documents import DocumentTable

__all__ = ["CACHE", "FAILED_ORIGINALS_MAX_BYTES", "ClusterSpool", "SWEEP_SECONDS"]

log = logging.getLogger("faxgw.spool")

#: Under the spool's ``state/``: copies of the files of jobs taken on other hosts.
CACHE = "documents"
#: A failed job's originals stay in the database up to this many bytes in all; a larger
#: job's stay only in the ``failed/`` folder of the host that took it.
FAILED_ORIGINALS_MAX_BYTES = 20 * 1024 * 1024
#: How often a host drops its copies of jobs purged from the database, at most.
SWEEP_SECONDS = 600.0
#: Files stored for a job the store never registered are deleted after this long.
ORPHAN_SECONDS = 7 * 24 * 3600.0


class ClusterSpool(Spool):
    """A host's spool whose job files are also kept in PostgreSQL (the document store)."""

    def __init__(self, root: Path, *, table: DocumentTable, max_input_bytes: int,
                 refresh: bool = True, settle_seconds: float = 2.0,
                 clock: Callable[[], float] = time.time, mask_digits: int = 0,
                 group: str = "") -> None:
        """``refresh``: compare a local copy with the database whenever the job's folder is
        asked for (False: a copy once made is used as it is, so that a render process,
        handed jobs whose files the worker brought, never connects to the database); the
        rest as for :class:`~faxgw.intake.spool.Spool`."""
        super().__init__(root, settle_seconds=settle_seconds, clock=clock,
                         mask_digits=mask_digits, group=group)
        self.table = table
        self.max_input_bytes = max_input_bytes
        self.refresh = refresh
        #: Jobs taken here whose files could not be stored yet: handed on once they are.
        self._held: dict[str, Intake] = {}
        self._swept_at = time.monotonic()

    @classmethod
    def for_config(cls, config: Config, *, clock: Callable[[], float] | None = None,
                   refresh: bool = True) -> ClusterSpool:
        """The spool ``[spool]`` describes, its job files in the ``[store]`` database."""
        table = DocumentTable(config.store.url, password=config.store.password(),
                              ca_file=config.store.ca_file)
        return cls(config.spool.dir, table=table, max_input_bytes=config.limits.max_input_bytes,
                   refresh=refresh, settle_seconds=config.spool.settle_seconds,
                   mask_digits=config.numbers.mask_digits, clock=clock or time.time,
                   group=config.spool.group)

    @property
    def cache(self) -> Path:
        """Where the files of jobs taken on other hosts are brought."""
        return self.layout.state / CACHE

    # -- taking: the files go into the database before the job is registered -------------

    def _store_batch(self, batch: list[Intake]) -> list[Intake]:
        """Store the job folders of a batch just taken here in one transaction; should that
        fail, each on its own (those that cannot be stored now are held back)."""
        try:
            self.table.put_all([(intake.id, self._files_of(self.layout.job_dir(intake.id),
                                                            failed=intake.error is not None))
                                for intake in batch], replace="")
        except (StoreError, OSError) as exc:
            log.debug("storing %d job(s) together failed (%s): one by one", len(batch), exc)
            return [intake for intake in batch if self._store_taken(intake)]
        return batch

    def _store_taken(self, intake: Intake) -> bool:
        """Store a job folder just taken here; False (the job held back) when it cannot be
        stored now."""
        folder = self.layout.job_dir(intake.id)
        try:
            self.table.put(intake.id, self._files_of(folder, failed=intake.error is not None),
                           replace="")
        except (StoreError, OSError) as exc:
            self._held[intake.id] = intake
            log.warning("! %s: its files cannot be stored in the database (%s): it is "
                        "registered once they are", intake.id, exc)
            return False
        self._held.pop(intake.id, None)
        return True

    def _files_of(self, folder: Path, *, failed: bool) -> list[tuple[str, Path]]:
        """The job file and the documents worth storing: ordinary files only (what intake
        refused, a link, a device, is judged where it lies, never read), none larger than
        a render takes, and for a job refused at intake only up to the size kept for
        failed jobs."""
        files = [(JOB_FILE, folder / JOB_FILE)]
        budget = FAILED_ORIGINALS_MAX_BYTES if failed else None
        docs = folder / DOCS
        for path in sorted(docs.iterdir()) if docs.is_dir() else []:
            st = path.lstat()
            if not path.is_file() or path.is_symlink() or st.st_size > self.max_input_bytes:
                continue
            if budget is not None:
                if st.st_size > budget:
                    continue
                budget -= st.st_size
            files.append((f"{DOCS}/{path.name}", path))
        return files

    def scan_batches(self) -> Iterator[list[Intake]]:
        """:meth:`Spool.scan_batches`, each job's files stored before it is yielded (first
        those held back before)."""
        self.sweep()
        held = [intake for intake in list(self._held.values()) if self._store_taken(intake)]
        if held:
            yield held
        for batch in super().scan_batches():
            stored = self._store_batch(batch)
            if stored:
                yield stored

    def recover(self, unknown: Callable[[Iterable[str]], set[str]] | None = None
                ) -> list[Intake]:
        """:meth:`Spool.recover`, the files of the folders to register stored first; the
        folders of jobs another host purged meanwhile are deleted, not registered again."""
        found = super().recover(unknown)
        try:
            purged = self.table.purged(intake.id for intake in found)
        except StoreError as exc:
            # Which of them were purged cannot be told: none is registered now.
            self._held.update((intake.id, intake) for intake in found)
            log.warning("! the database cannot be asked about %d job folder(s) (%s): they "
                        "are registered once it can", len(found), exc)
            return []
        for job_id in purged:
            log.info("%s was purged by another host: its folder here is deleted", job_id)
            super().remove(job_id)
        return [intake for intake in found
                if intake.id not in purged and self._store_taken(intake)]

    def submit(self, number: str, files: Sequence[Path], *, subject: str = "",
               note: str = "", sender: str = "", cover: bool | None = None,
               notify: str = "", source: str = "submit") -> Intake:
        """:meth:`Spool.submit`, its files stored; StoreError (and nothing kept) when they
        cannot be."""
        intake = super().submit(number, files, subject=subject, note=note, sender=sender,
                                cover=cover, notify=notify, source=source)
        if not self._store_taken(intake):
            self._held.pop(intake.id, None)
            super().remove(intake.id)  # the caller's error is the whole answer
            raise StoreError("the job's documents cannot be stored in the database now")
        return intake

    # -- the DocumentStore port ------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        """The job's folder: its own in this spool when taken here, else its copy in
        ``state/documents/`` brought from the database (made or brought up to date now).

        Raises :class:`~faxgw.domain.errors.TransientError` (380) when the database cannot
        be read and there is no copy yet: the job is tried again later."""
        local = super().job_dir(job_id)
        if local.exists():
            return local
        copy = self.cache / job_id
        if copy.exists() and not self.refresh:
            return copy
        try:
            if not self.layout.state.exists():
                self.ensure()  # a console on a host whose spool was never used
            if not self.cache.exists():
                with contextlib.suppress(FileExistsError):  # made by another process now
                    self.access.make_dir(self.cache)
            bring(self.table, job_id, copy, file_mode=self.access.file_mode,
                  dir_mode=self.access.dir_mode)
        except (StoreError, OSError) as exc:
            if not copy.exists():
                raise TransientError(f"the job's files cannot be brought from the database "
                                     f"now: {exc}", code=codes.TRY_LATER) from None
            log.warning("%s: its files cannot be compared with the database (%s): the copy "
                        "made before is used", job_id, exc)
        self.sweep()
        return copy

    def keep_rendered(self, job_id: str, attachment: Path) -> None:
        """Store the job's rendered attachment, so that any host can send and show it without
        rendering it again. Never raises: without it, a host renders again."""
        try:
            self.table.put(job_id, [(attachment.name, attachment)], replace="fax-")
        except (StoreError, OSError) as exc:
            log.warning("%s: its attachment cannot be stored in the database (%s): another "
                        "host sending it renders it again", job_id, exc)

    def keep_failed(self, job_id: str) -> Path:
        """Move a failed job's folder to ``failed/`` here (when taken here); in the database
        its originals stay up to :data:`FAILED_ORIGINALS_MAX_BYTES`."""
        kept = super().keep_failed(job_id)
        try:
            if self.table.stored_bytes(job_id, f"{DOCS}/") > FAILED_ORIGINALS_MAX_BYTES:
                self.table.delete([job_id], f"{DOCS}/")
                log.info("%s: its originals are larger than the database keeps for a failed "
                         "job; the host that took it keeps them", job_id)
        except StoreError as exc:
            log.warning("%s: the database's copy of its originals is unchanged (%s)", job_id,
                        exc)
        return kept if kept.exists() else self.cache / job_id

    def restore_failed(self, job_id: str) -> bool:
        """Bring back a failed job's originals to be rendered again: from ``failed/`` here
        (stored again, whole, and its old attachment dropped), or, for a job taken in at
        another host, from the database when they are there; False when there are none."""
        if self.layout.job_dir(job_id).exists():
            return False
        if super().restore_failed(job_id):
            # Every original again, whatever was dropped when it failed: any host may send it.
            folder = self.layout.job_dir(job_id)
            self.table.put(job_id, self._files_of(folder, failed=False), replace="")
        else:
            # Taken in at another host: it was quarantined there when its attachment could
            # not be made (an attachment is stored only once it passed pre-flight).
            stored = {item.path for item in self.table.listing(job_id)}
            if (JOB_FILE not in stored or any(p.startswith("fax-") for p in stored)
                    or not any(p.startswith(f"{DOCS}/") for p in stored)):
                return False
        for attachment in (self.cache / job_id).glob(f"fax-{job_id}.*"):
            attachment.unlink()
        return True

    def remove(self, job_id: str) -> None:
        """Delete a finished (or withdrawn) job's files: its folder here, its copy, its
        stored files; the other hosts drop theirs at their next sweep."""
        super().remove(job_id)
        shutil.rmtree(self.cache / job_id, ignore_errors=True)
        try:
            self.table.purge([job_id])
        except StoreError as exc:
            # The job's record is gone: its stored files go with the orphans (ORPHAN_SECONDS).
            log.warning("%s: its files in the database are deleted later (%s)", job_id, exc)

    def sweep(self, *, force: bool = False) -> None:
        """Delete what this host keeps of jobs purged by any host (its own folders, the
        copies), and files stored for jobs never registered; at most every
        :data:`SWEEP_SECONDS` unless ``force``."""
        if not force and time.monotonic() - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = time.monotonic()
        try:
            here = {path.name for folder in (self.layout.jobs, self.layout.failed, self.cache)
                    if folder.is_dir() for path in folder.iterdir()
                    if not path.name.startswith(".")}
            for job_id in self.table.purged(here):
                super().remove(job_id)
                shutil.rmtree(self.cache / job_id, ignore_errors=True)
            self.table.delete_orphans(ORPHAN_SECONDS)
        except (StoreError, OSError) as exc:
            log.info("what is kept of purged jobs is deleted later (%s)", exc)

    def close(self) -> None:
        """Close the database connection of the job files."""
        self.table.close()
