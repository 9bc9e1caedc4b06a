"""Committing assembled job folders into ``jobs/``, one or many at a time.

A job's folder enters ``jobs/`` by one rename, and only once everything it holds is durable:
its documents' folder is fsynced, and the mark in ``state/unregistered/`` that lets the next
start find the folder should the job store not have the job yet. After the renames, ``jobs/``
and ``tmp/`` are fsynced, and the folders are complete where they lie.

Done for many folders at once (the scanner's batches), the folders they share (``jobs/``,
``tmp/``, ``state/unregistered/``) are fsynced once per batch rather than once per job, and
each job's documents folder is fsynced from a few threads at the same time: the
filesystem's journal commits those together, where one after the other each would wait for
a commit of its own. The order that makes a crash harmless is the same for one job and for
many: documents and marks durable, then the renames, then the renames durable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..domain.errors import SpoolError
from ..fsutil import fsync_dir, write_atomic
from .assembly import Assembly
from .job_file import Intake
from .layout import DOCS, JOB_FILE, SpoolLayout

__all__ = ["Committed", "Taken", "commit", "mark"]

#: Threads fsyncing the documents folders of one batch together.
SYNC_THREADS = 4


@dataclass(frozen=True, slots=True)
class Taken:
    """A job assembled in ``tmp/`` and waiting to enter ``jobs/``."""

    assembly: Assembly
    intake: Intake


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit did: the jobs now in ``jobs/``, and why the others are not (the first
    failure; their folders are kept for the recovery at the next start)."""

    intakes: list[Intake]
    error: SpoolError | None = None


def commit(layout: SpoolLayout, file_mode: int, taken: Sequence[Taken]) -> Committed:
    """Move the ``taken`` job folders into ``jobs/``, durably, and drop their locks.

    Never raises for a job's folder: a folder that cannot be committed is abandoned (kept,
    locked by nobody, for the recovery) and named in :attr:`Committed.error`.
    """
    ready: list[Taken] = []
    failure: SpoolError | None = None

    def failed(item: Taken, exc: OSError) -> None:
        nonlocal failure
        item.assembly.abandon()  # finished by the recovery at the next start
        if failure is None:
            failure = SpoolError(f"cannot put job {item.intake.id} into {layout.jobs}: {exc}")

    for item in taken:
        # job.json is written again only when the take changed it (a document vanished, a
        # refusal): otherwise the plan written at the start is already the record, durable.
        record = item.intake.to_file()
        job_file = item.assembly.path / JOB_FILE
        try:
            if job_file.read_bytes() != record:
                write_atomic(job_file, record)
            mark(layout.unregistered, item.intake.id, file_mode)
        except OSError as exc:
            failed(item, exc)
            continue
        ready.append(item)
    try:
        _fsync_together([item.assembly.path / DOCS for item in ready])
        fsync_dir(layout.unregistered)
    except OSError as exc:
        for item in ready:
            failed(item, exc)
        return Committed([], failure)
    committed: list[Taken] = []
    for item in ready:
        try:
            os.rename(item.assembly.path, layout.job_dir(item.intake.id))
        except OSError as exc:
            failed(item, exc)
            continue
        committed.append(item)
    if committed:
        fsync_dir(layout.jobs)
        fsync_dir(layout.tmp)
    for item in committed:
        item.assembly.release()
    return Committed([item.intake for item in committed], failure)


def mark(folder: Path, job_id: str, file_mode: int) -> bool:
    """Make the mark of a job folder about to enter ``jobs/`` (the caller makes it durable:
    an fsync of ``folder``); False when there is no mark folder yet (recovery has not run in
    this spool: it reads every folder once)."""
    try:
        os.close(os.open(folder / job_id, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW,
                         file_mode))
    except FileNotFoundError:
        return False
    return True


def _fsync_together(folders: list[Path]) -> None:
    """fsync every folder in ``folders``; several at once when there are several."""
    if len(folders) <= 1:
        for folder in folders:
            _fsync_folder(folder)
        return
    with ThreadPoolExecutor(min(SYNC_THREADS, len(folders)),
                            thread_name_prefix="faxgw-fsync") as pool:
        for _ in pool.map(_fsync_folder, folders):
            pass


def _fsync_folder(folder: Path) -> None:
    """fsync ``folder``; unlike :func:`~faxgw.fsutil.fsync_dir`, a failure is raised: a
    documents folder that cannot be made durable must not enter ``jobs/``."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
