"""The spool: intake folders, settling, claiming by rename, and the failed area.

A job is assembled in ``tmp/<id>/`` (``job.json`` first, then its documents) and committed
by one rename to ``jobs/<id>/``. Taking a dropped file is a rename too, so two workers can
never take the same file, and a half-moved job is finished or undone at start-up by
:meth:`Spool.recover`. The job store is told about a job only after its folder is complete;
a folder whose job is missing from the store is registered again from its ``job.json``.

Drop folders are writable by scanners and users, so nothing here follows a link: symbolic
links, hard links (a second name for a file the dropper may not be allowed to read), device
files and folders that resolve outside the spool are taken as they are (the link itself, not
its target) and refused with code 405.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..config import Config
from ..domain import codes
from ..domain.errors import InputError, SpoolError
from ..domain.jobs import new_job_id
from ..fax.policy import mask
from ..fsutil import fsync_dir, write_atomic
from .job_file import Intake
from .layout import DOCS, IGNORED_SUFFIXES, JOB_FILE, MANIFEST_SUFFIX, SpoolLayout
from .manifest import manifest_fields

log = logging.getLogger("faxgw.spool")


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def _refusal(st: os.stat_result) -> str | None:
    """Why an entry may not be taken as a document, or None for an ordinary file."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (links are never followed)"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        return "is a device file, pipe or socket, not an ordinary file"
    if st.st_nlink > 1:
        return "is a hard link (it has another name elsewhere)"
    return None


class Spool:
    """One spool root: intake, job folders and the failed area."""

    def __init__(
        self, root: Path, *, settle_seconds: float = 2.0, clock: Callable[[], float] = time.time,
        mask_digits: int = 0,
    ) -> None:
        """``mask_digits``: numbers in log lines show this many trailing digits as ``x``
        (``[numbers] mask_digits``)."""
        self.layout = SpoolLayout(root)
        self.settle_seconds = settle_seconds
        self._clock = clock
        self.mask_digits = mask_digits

    @classmethod
    def for_config(cls, config: Config, *, clock: Callable[[], float] | None = None) -> Spool:
        """The spool ``[spool]`` describes (a render process opens its job files with this:
        it imports the spool alone, not the whole gateway)."""
        return cls(config.spool.dir, settle_seconds=config.spool.settle_seconds,
                   mask_digits=config.numbers.mask_digits, clock=clock or time.time)

    def ensure(self) -> None:
        """Create the spool's folders when missing."""
        try:
            for folder in self.layout.all_dirs():
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool at {self.layout.root}: {exc}") from None

    # -- assembling a job ----------------------------------------------------------------

    def _begin(self, intake: Intake) -> Path:
        work = self.layout.tmp / intake.id
        (work / DOCS).mkdir(parents=True)
        write_atomic(work / JOB_FILE, intake.to_file())
        return work

    def _commit(self, work: Path, intake: Intake) -> Intake:
        # job.json is written again only when the take changed it (a document vanished, a
        # refusal): otherwise the plan written by _begin is already the record, and durable.
        record = intake.to_file()
        if (work / JOB_FILE).read_bytes() != record:
            write_atomic(work / JOB_FILE, record)
        os.rename(work, self.layout.job_dir(intake.id))
        fsync_dir(self.layout.jobs)
        fsync_dir(self.layout.tmp)
        return intake

    def submit(
        self,
        number: str,
        files: Sequence[Path],
        *,
        subject: str = "",
        note: str = "",
        sender: str = "",
        cover: bool | None = None,
    ) -> Intake:
        """Copy ``files`` into a new job folder (``faxgw submit``); the originals stay."""
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
        intake = Intake(
            id=new_job_id(),
            number=number,
            subject=subject,
            note=note,
            sender=sender,
            source="submit",
            cover=cover,
        )
        work = self._begin(intake)
        try:
            for index, path in enumerate(files):
                name = _unique_name(work / DOCS, path.name, index)
                with path.open("rb") as src, (work / DOCS / name).open("xb") as dst:
                    shutil.copyfileobj(src, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
                intake.documents.append(name)
            fsync_dir(work / DOCS)
            return self._commit(work, intake)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise SpoolError(f"cannot put the job into the spool: {exc}") from None

    # -- scanning the intake folders -----------------------------------------------------

    def _settled(self, st: os.stat_result) -> bool:
        # ctime too: a file moved in keeps its old mtime, but the move itself is a change.
        changed = max(st.st_mtime, st.st_ctime)
        return self._clock() - changed >= self.settle_seconds

    def scan(self) -> list[Intake]:
        """Take every settled job from ``outgoing/``; return the jobs now in ``jobs/``."""
        return list(self.scan_iter())

    def scan_iter(self) -> Iterator[Intake]:
        """:meth:`scan`, one job at a time: each is complete in ``jobs/`` when it is yielded."""
        try:
            entries = sorted(os.scandir(self.layout.outgoing), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if _ignored(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # taken by another worker meanwhile
            if stat.S_ISDIR(st.st_mode):
                yield from self._scan_number_dir(Path(entry.path), entry.name)
            elif stat.S_ISLNK(st.st_mode) and not entry.name.endswith(MANIFEST_SUFFIX):
                # A link at the top may be a number folder pointing elsewhere: refuse it.
                if self._settled(st):
                    yield from self._take_refused(
                        Path(entry.path),
                        entry.name,
                        "is a symbolic link (links are never followed)",
                    )
            elif entry.name.endswith(MANIFEST_SUFFIX) and self._settled(st):
                result = self._take_manifest(Path(entry.path), st)
                if result is not None:
                    yield result
            # Any other file at the top waits for the manifest that names it.

    def _scan_number_dir(self, folder: Path, number: str) -> Iterator[Intake]:
        try:
            real = folder.resolve(strict=True)
        except OSError:
            return
        if not real.is_relative_to(self.layout.outgoing.resolve()):
            yield from self._take_refused(folder, number, "resolves outside the spool")
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if _ignored(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or not self._settled(st):
                continue
            reason = _refusal(st)
            intake = Intake(
                id=new_job_id(), number=number, source=f"outgoing/{number}/{entry.name}"
            )
            if reason:
                intake.error_code = codes.INPUT_REFUSED
                intake.error = f"{entry.name}: {reason}; it was not sent"
            result = self._take(intake, [(Path(entry.path), entry.name)])
            if result is not None:
                yield result

    def _take_refused(self, path: Path, name: str, reason: str) -> Iterator[Intake]:
        intake = Intake(
            id=new_job_id(),
            number="",
            source=f"outgoing/{name}",
            error_code=codes.INPUT_REFUSED,
            error=f"{name}: {reason}; it was not sent",
        )
        result = self._take(intake, [(path, name)])
        if result is not None:
            yield result

    def _take(
        self, intake: Intake, sources: list[tuple[Path, str]], manifest: Path | None = None
    ) -> Intake | None:
        """Claim ``sources`` (and the manifest first) into a new job folder by rename.

        Returns None when another worker took the job first.
        """
        # The plan goes into job.json before anything moves, so that recovery can finish it.
        intake.documents = [name for _, name in sources]
        intake.source_paths = [str(path) for path, _ in sources]
        work = self._begin(intake)
        try:
            if manifest is not None:
                # The manifest commits the job: whoever renames it owns the job.
                os.rename(manifest, work / manifest.name)
            for index, (path, name) in enumerate(sources):
                try:
                    os.rename(path, work / DOCS / name)
                except FileNotFoundError:
                    if manifest is None and index == 0:
                        shutil.rmtree(work, ignore_errors=True)
                        return None  # another worker was first
                    intake.documents.remove(name)
                    intake.error_code = intake.error_code or codes.BAD_MANIFEST
                    intake.error = intake.error or f"{name}: vanished while it was being taken"
        except FileNotFoundError:
            shutil.rmtree(work, ignore_errors=True)
            return None
        except OSError as exc:
            raise SpoolError(f"cannot take {intake.source}: {exc}") from None
        fsync_dir(work / DOCS)
        log.info("→ %s taken from %s", intake.id, self._masked(intake.source))
        return self._commit(work, intake)

    def _take_manifest(self, manifest: Path, st: os.stat_result) -> Intake | None:
        name = manifest.name
        intake = Intake(id=new_job_id(), number="", source=f"outgoing/{name}")
        reason = _refusal(st)
        if reason:
            intake.error_code, intake.error = codes.INPUT_REFUSED, f"{name}: {reason}"
            return self._take(intake, [], manifest=manifest)
        try:
            data = tomllib.loads(manifest.read_text(encoding="utf-8"))
            files, intake.number = manifest_fields(data, intake)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, InputError, ValueError) as exc:
            intake.error_code = codes.BAD_MANIFEST
            kind = (
                "not valid TOML: "
                if isinstance(exc, tomllib.TOMLDecodeError)
                else ("not UTF-8 text: " if isinstance(exc, UnicodeDecodeError) else "")
            )
            intake.error = f"{name}: {kind}{exc}"
            return self._take(intake, [], manifest=manifest)
        except FileNotFoundError:
            return None
        sources: list[tuple[Path, str]] = []
        for document in files:
            path = self.layout.outgoing / document
            try:
                doc_st = path.lstat()
            except FileNotFoundError:
                intake.error_code = codes.BAD_MANIFEST
                intake.error = f"{name}: names {document!r}, which is not in outgoing/"
                return self._take(intake, [], manifest=manifest)
            if not self._settled(doc_st) and _refusal(doc_st) is None:
                return None  # a document is still being written: take the job later
            doc_reason = _refusal(doc_st)
            if doc_reason and intake.error is None:
                intake.error_code = codes.INPUT_REFUSED
                intake.error = f"{document}: {doc_reason}; it was not sent"
            sources.append((path, document))
        return self._take(intake, sources, manifest=manifest)

    def _masked(self, source: str) -> str:
        # outgoing/<number>/<file>: the number folder is a fax number.
        parts = source.split("/")
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

    def recover(self) -> list[Intake]:
        """Finish or undo jobs a stopped process left half-assembled in ``tmp/``.

        Returns every complete job folder in ``jobs/``, so that the caller can register the
        ones its store does not know.
        """
        for work in sorted(self.layout.tmp.glob("*")):
            try:
                intake = Intake.from_file(work / JOB_FILE)
            except (OSError, ValueError, TypeError):
                # Stopped before job.json was whole: nothing was taken from outgoing yet.
                shutil.rmtree(work, ignore_errors=True)
                continue
            if intake.source == "submit":
                # A submit copies: the originals are still with the submitter, who saw no id.
                shutil.rmtree(work, ignore_errors=True)
                continue
            manifest_taken = any(work.glob(f"*{MANIFEST_SUFFIX}"))
            docs = work / DOCS
            for path_text, name in zip(intake.source_paths, intake.documents, strict=False):
                if not (docs / name).exists() and manifest_taken:
                    try:  # finish what the manifest committed
                        os.rename(path_text, docs / name)
                    except FileNotFoundError:
                        pass
            intake.documents = [name for name in intake.documents if (docs / name).exists()]
            if not manifest_taken and not intake.documents:
                shutil.rmtree(work, ignore_errors=True)  # nothing was taken
                continue
            log.warning("↻ %s: finishing a job left half-taken by a stopped process", intake.id)
            self._commit(work, intake)
        found = []
        for folder in sorted(self.layout.jobs.glob("*")):
            try:
                found.append(Intake.from_file(folder / JOB_FILE))
            except (OSError, ValueError, TypeError):
                log.error("! %s: job folder without a readable %s", folder.name, JOB_FILE)
        return found


def _unique_name(folder: Path, name: str, index: int) -> str:
    # Two documents may share a name (scan.pdf from two submits); keep both, in order.
    if not (folder / name).exists():
        return name
    return f"{index:02d}-{name}"
