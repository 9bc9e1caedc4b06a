"""The spool: intake folders, claiming by rename, the job folders and the failed area.

A job is assembled in ``tmp/<id>/`` (``job.json`` first, then its documents) while its
process holds the folder's lock (:mod:`~faxgw.intake.assembly`), and committed by one rename
to ``jobs/<id>/``. Taking a dropped file is a rename too, so two workers can never take the
same file, and a half-moved job of a process that is gone is finished or undone by
:meth:`Spool.recover`. The job store is told about a job only after its folder is complete;
a folder whose job is missing from the store is registered again from its ``job.json``.

Drop folders are writable by scanners and users, so nothing here follows a link: entries are
taken through folder descriptors and judged only once they lie in the job's private folder
(:mod:`~faxgw.intake.entries`): symbolic links, hard links, devices, pipes and folders are
kept as they are (the entry itself, never its target) and refused with code 405. Everything
the gateway keeps is private (:mod:`~faxgw.intake.access`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..config import Config
from ..domain import codes
from ..domain.errors import InputError, SpoolError
from ..domain.jobs import new_job_id
from ..fax.policy import mask
from ..fsutil import fsync_dir, write_atomic
from .access import OUTGOING_MODE, Access
from .assembly import Assembly
from .checks import control_refusal, shown
from .commit import Committed, Taken, mark
from .commit import commit as commit_taken
from .entries import Source, doc_name, judge_taken, open_dir
from .job_file import Intake
from .layout import DOCS, JOB_FILE, SpoolLayout
from .recovery import recover
from .scanner import Scanner

log = logging.getLogger("faxgw.spool")

#: A spool root the gateway makes: anybody may pass through to ``outgoing/`` (if its mode
#: lets them in), nobody but the gateway list it.
ROOT_MODE = 0o711


class Spool:
    """One spool root: intake, job folders and the failed area."""

    def __init__(
        self, root: Path, *, settle_seconds: float = 2.0, clock: Callable[[], float] = time.time,
        mask_digits: int = 0, group: str = "",
    ) -> None:
        """``mask_digits``: numbers in log lines show this many trailing digits as ``x``
        (``[numbers] mask_digits``); ``group``: ``[spool] group``."""
        self.layout = SpoolLayout(root)
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.mask_digits = mask_digits
        self.group = group
        self._access: Access | None = None
        self._scanner = Scanner(self)

    @classmethod
    def for_config(cls, config: Config, *, clock: Callable[[], float] | None = None) -> Spool:
        """The spool ``[spool]`` describes (a render process opens its job files with this:
        it imports the spool alone, not the whole gateway)."""
        return cls(config.spool.dir, settle_seconds=config.spool.settle_seconds,
                   mask_digits=config.numbers.mask_digits, clock=clock or time.time,
                   group=config.spool.group)

    @property
    def access(self) -> Access:
        """Modes and group of what the gateway keeps (SpoolError for an unknown group)."""
        if self._access is None:
            self._access = Access.of_group(self.group)
        return self._access

    def ensure(self) -> None:
        """Create the spool's folders when missing, and make the gateway's own private: a
        folder of the gateway's with another mode (wider, or without the access
        ``[spool] group`` gives) is given its mode now. ``outgoing/`` keeps its own."""
        layout, access = self.layout, self.access
        try:
            if not layout.root.exists():
                layout.root.mkdir(parents=True, exist_ok=True)
                os.chmod(layout.root, ROOT_MODE)
            try:
                os.mkdir(layout.outgoing, OUTGOING_MODE)
                os.chmod(layout.outgoing, OUTGOING_MODE)  # whatever the umask
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(layout.outgoing).st_mode):
                    raise SpoolError(f"{layout.outgoing} is not a folder (a link is never "
                                     "followed): make it one") from None
            for folder in layout.private_dirs():
                try:
                    access.make_dir(folder)
                except FileExistsError:  # made before, or by another process just now
                    access.fit_dir(folder)
            for path in layout.database_files():
                access.fit_file(path)
        except OSError as exc:  # a SpoolError above too: it is an OSError
            raise SpoolError(f"cannot create the spool at {layout.root}: {exc}") from None

    # -- assembling a job ----------------------------------------------------------------

    def _begin(self, intake: Intake) -> Assembly:
        """A new job folder in ``tmp/``, locked by this process, with the plan in it."""
        try:
            assembly = Assembly.begin(self.layout.tmp, intake.id, self.access)
        except OSError as exc:
            raise SpoolError(f"cannot assemble a job in {self.layout.tmp}: {exc}") from None
        try:
            write_atomic(assembly.path / JOB_FILE, intake.to_file())
        except OSError as exc:
            assembly.discard()
            raise SpoolError(f"cannot assemble a job in {self.layout.tmp}: {exc}") from None
        return assembly

    def commit(self, assembly: Assembly, intake: Intake) -> Intake:
        """Move the assembled job folder into ``jobs/`` (one rename), then drop its lock."""
        done = commit_taken(self.layout, self.access.file_mode, [Taken(assembly, intake)])
        if done.error is not None:
            raise done.error
        return intake

    def commit_batch(self, taken: Sequence[Taken]) -> Committed:
        """Move job folders taken with a ``batch`` (:meth:`take`) into ``jobs/`` together:
        the folders they share are fsynced once for all of them."""
        return commit_taken(self.layout, self.access.file_mode, taken)

    def submit(
        self,
        number: str,
        files: Sequence[Path],
        *,
        subject: str = "",
        note: str = "",
        sender: str = "",
        cover: bool | None = None,
        notify: str = "",
        source: str = "submit",
    ) -> Intake:
        """Copy ``files`` into a new job folder (``faxgw submit``); the originals stay.

        Raises InputError, and makes nothing, for a file that is no ordinary file (405) or
        texts or file names with control characters (407)."""
        for path in files:
            try:
                st = path.stat()
            except OSError as exc:
                raise InputError(
                    f"{path}: {exc.strerror}", code=codes.INPUT_REFUSED, filename=path.name
                ) from None
            if not stat.S_ISREG(st.st_mode):
                raise InputError(
                    f"{path}: not an ordinary file", code=codes.INPUT_REFUSED, filename=path.name
                )
        reason = control_refusal([("subject", subject), ("note", note), ("sender", sender)],
                                 [path.name for path in files])
        if reason:
            raise InputError(reason, code=codes.CONTROL_CHARACTERS)
        intake = Intake(id=new_job_id(), number=number, subject=subject, note=note,
                        sender=sender, source=source, cover=cover, notify=notify)
        assembly = self._begin(intake)
        docs = assembly.path / DOCS
        try:
            for index, path in enumerate(files):
                name = _unique_name(docs, doc_name(path.name), index)
                with path.open("rb") as src:
                    fd = os.open(docs / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, self.access.file_mode)
                    with os.fdopen(fd, "wb") as dst:
                        os.fchmod(fd, self.access.file_mode)  # whatever the umask
                        shutil.copyfileobj(src, dst)
                        dst.flush()
                        os.fsync(dst.fileno())
                intake.documents.append(name)
        except OSError as exc:
            assembly.discard()
            raise SpoolError(f"cannot put the job into the spool: {exc}") from None
        return self.commit(assembly, intake)  # which makes the documents' folder durable

    # -- taking dropped files --------------------------------------------------------------

    def scan(self) -> list[Intake]:
        """Take every settled job from ``outgoing/``; return the jobs now in ``jobs/``."""
        return list(self.scan_iter())

    def scan_iter(self) -> Iterator[Intake]:
        """:meth:`scan`, one job at a time: each is complete in ``jobs/`` when it is yielded.
        Every drop gets an answer: a job, or a failed job with its code and cause."""
        for batch in self.scan_batches():
            yield from batch

    def scan_batches(self) -> Iterator[list[Intake]]:
        """:meth:`scan_iter` in the batches whose folders entered ``jobs/`` together: a
        consumer that stops takes the batch it has whole (the rest of the spool stays)."""
        yield from self._scanner.scan()

    def take(self, intake: Intake, sources: list[Source], *, manifest: Source | None = None,
             identity: tuple[int, int] | None = None,
             batch: list[Taken] | None = None) -> Intake | None:
        """Claim ``sources`` (after the manifest, which commits the job) into a new job folder
        by rename, and judge each where it now lies; the job records every refusal.

        Returns None when another worker took the job first. Raises OSError (nothing is
        taken) when the first entry cannot be moved; SpoolError when the spool's own folders
        cannot be written. ``identity``: (device, inode) the manifest must have. With a
        ``batch``, the taken folder is added to it, to be committed with the others
        (:meth:`commit_batch`), instead of committed at once.
        """
        # The plan goes into job.json before anything moves, so that recovery can finish it.
        intake.documents = [source.target for source in sources]
        intake.source_paths = [source.path for source in sources]
        assembly = self._begin(intake)
        taken = False
        try:
            with open_dir(assembly.path) as work_fd, open_dir(assembly.path / DOCS) as docs_fd:
                device = os.fstat(work_fd).st_dev
                if manifest is not None:
                    os.rename(manifest.name, manifest.target, src_dir_fd=manifest.dir_fd,
                              dst_dir_fd=work_fd)
                    taken = True
                    reason = judge_taken(work_fd, manifest.target, device=device,
                                         access=self.access, same_as=identity)
                    if reason:
                        intake.refuse(codes.INPUT_REFUSED, f"{shown(manifest.target)}: {reason}")
                for source in sources:
                    try:
                        os.rename(source.name, source.target, src_dir_fd=source.dir_fd,
                                  dst_dir_fd=docs_fd)
                    except OSError as exc:
                        if not taken:
                            raise  # nothing is taken: the take is off
                        intake.documents.remove(source.target)
                        vanished = exc.errno == errno.ENOENT
                        intake.refuse(codes.BAD_MANIFEST if vanished else codes.INPUT_REFUSED,
                               f"{shown(source.target)}: " + ("vanished while it was being "
                               "taken" if vanished else f"cannot be taken: {exc.strerror}"))
                        continue
                    taken = True
                    reason = judge_taken(docs_fd, source.target, device=device,
                                         access=self.access)
                    if reason:
                        intake.refuse(codes.INPUT_REFUSED,
                               f"{shown(source.target)}: {reason}; it was not sent")
        except SpoolError:
            if taken:
                assembly.abandon()  # what is taken is finished by the next recovery
            else:
                assembly.discard()
            raise
        except Exception as exc:
            if not taken:
                assembly.discard()
                if isinstance(exc, FileNotFoundError):
                    return None  # another worker was first
                raise
            # Something is taken: it is never lost. The job fails with the cause, files kept.
            log.debug("taking %s failed", intake.id, exc_info=exc)
            intake.refuse(codes.INTERNAL, f"taking it failed: {type(exc).__name__}: {exc}")
        if intake.error is None:
            reason = control_refusal([("number", intake.number), ("subject", intake.subject),
                                      ("note", intake.note), ("sender", intake.sender)],
                                     intake.documents)
            if reason:
                intake.refuse(codes.CONTROL_CHARACTERS, reason)
        log.info("→ %s taken from %s", intake.id, self._masked(intake.source))
        if batch is not None:
            batch.append(Taken(assembly, intake))
            return intake
        return self.commit(assembly, intake)

    def _masked(self, source: str) -> str:
        # outgoing/<number>/<file>: the number folder is a fax number.
        parts = shown(source).split("/")
        if len(parts) == 3:
            parts[1] = mask(parts[1], self.mask_digits)
        return "/".join(parts)

    # -- after registration: the DocumentStore port -------------------------------------

    def job_dir(self, job_id: str) -> Path:
        """The folder of a job: in ``jobs/``, or in ``failed/`` once quarantined."""
        live = self.layout.job_dir(job_id)
        return live if live.exists() else self.layout.failed / job_id

    def documents(self, intake_or_id: Intake | str) -> list[Path]:
        """The paths of a job's documents, in order."""
        job_id = intake_or_id if isinstance(intake_or_id, str) else intake_or_id.id
        folder = self.job_dir(job_id)
        names = Intake.from_file(folder / JOB_FILE).documents
        return [folder / DOCS / name for name in names]

    def keep_failed(self, job_id: str) -> Path:
        """Move a failed job's folder, originals included, to ``failed/<id>``."""
        target = self.layout.failed / job_id
        live = self.layout.job_dir(job_id)
        if live.exists():
            os.rename(live, target)
            fsync_dir(self.layout.failed)
        return target

    def restore_failed(self, job_id: str) -> bool:
        """Move a failed job's folder back from ``failed/<id>`` to be rendered again, without
        its old attachment; False when there is none to restore."""
        kept, live = self.layout.failed / job_id, self.layout.job_dir(job_id)
        if not kept.exists() or live.exists():
            return False
        os.rename(kept, live)
        fsync_dir(self.layout.jobs)
        for attachment in live.glob(f"fax-{job_id}.*"):
            attachment.unlink()
        return True

    def remove(self, job_id: str) -> None:
        """Delete a finished job's folder (retention purge)."""
        for folder in (self.layout.job_dir(job_id), self.layout.failed / job_id):
            shutil.rmtree(folder, ignore_errors=True)
        self.registered([job_id])

    def mark_unregistered(self, job_id: str) -> None:
        """Leave a mark for the job folder about to enter ``jobs/``, durably before it does:
        a stop before the job store has the job leaves the mark, and the next start finds
        the folder by it (:func:`~faxgw.intake.recovery.recover`)."""
        if mark(self.layout.unregistered, job_id, self.access.file_mode):
            fsync_dir(self.layout.unregistered)

    def registered(self, job_ids: Iterable[str]) -> None:
        """The job store has these jobs: their marks go (no fsync: a mark that comes back
        after a crash costs one lookup at the next start)."""
        folder = self.layout.unregistered
        for job_id in job_ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / job_id)

    def recover(self, unknown: Callable[[Iterable[str]], set[str]] | None = None
                ) -> list[Intake]:
        """Finish or undo the jobs that processes which are gone left half-assembled in
        ``tmp/`` (a folder whose process lives is left alone).

        Returns the job folders in ``jobs/`` whose ids ``unknown`` names (the ones the
        store does not know; every folder when None), so that the caller can register them
        and then call :meth:`registered`. Only the folders marked unregistered are asked
        about (every folder once, in a spool that has no marks folder yet).
        """
        return recover(self, unknown or set)


def _unique_name(folder: Path, name: str, index: int) -> str:
    # Two documents may share a name (scan.pdf from two submits); keep both, in order.
    if not (folder / name).exists():
        return name
    return f"{index:02d}-{name}"
