"""Start-up recovery of the spool: jobs left half-assembled in ``tmp/`` by a process that is
gone are finished or undone; a folder whose process still lives is left alone.

A folder is touched only when this process holds its lock (:mod:`~faxgw.intake.assembly`),
which the kernel gives up only when the process that assembled it has ended. What was taken
from ``outgoing/`` is never lost: a manifest's job is finished by taking the rest of its
documents, and judged as a take judges it (links refused with 405). A manifest whose
documents cannot all be found fails with 406 naming the missing ones; part of a job is
never sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain import codes
from .assembly import LOCK_SUFFIX, Assembly, sweep_locks
from .checks import shown
from .entries import DIR_FLAGS, judge_taken, open_dir
from .job_file import Intake
from .layout import DOCS, JOB_FILE, MANIFEST_SUFFIX

if TYPE_CHECKING:
    from .spool import Spool

__all__ = ["recover"]

log = logging.getLogger("faxgw.spool")


def recover(spool: Spool, unknown: Callable[[Iterable[str]], set[str]]) -> list[Intake]:
    """Finish or undo every job in ``tmp/`` whose process is gone; the job folders in
    ``jobs/`` that the store does not know (``unknown(ids)`` says which), to be registered.

    Only those folders' ``job.json`` are read: a start costs in proportion to what may need
    recovering, not to every job ever kept."""
    tmp = spool.layout.tmp
    try:
        names = sorted(os.listdir(tmp))
    except FileNotFoundError:
        names = []
    for name in names:
        if name.endswith(LOCK_SUFFIX) or not (tmp / name).is_dir() or (tmp / name).is_symlink():
            continue
        assembly = Assembly.take_over(tmp, name)
        if assembly is None:
            log.debug("tmp/%s is being assembled by a process that lives: left alone", name)
            continue
        try:
            _recover_one(spool, assembly)
        except Exception as exc:  # noqa: BLE001 - one folder never stops the start
            log.error("! tmp/%s could not be recovered (%s); it is kept for the next start",
                      name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            assembly.abandon()  # a no-op once finished or undone
    sweep_locks(tmp)
    found = []
    for name in sorted(_unregistered(spool, unknown)):
        folder = spool.layout.jobs / name
        try:
            found.append(Intake.from_file(folder / JOB_FILE))
        except (OSError, ValueError, TypeError):
            log.error("! %s: job folder without a readable %s", folder.name, JOB_FILE)
    return found


def _unregistered(spool: Spool, unknown: Callable[[Iterable[str]], set[str]]) -> set[str]:
    """The job folders the store does not know, found by their marks; the marks of folders
    it knows are removed. A spool without the marks folder (made by an older faxgw) has
    every folder looked at, once: the folder is made after that."""
    jobs, marks = spool.layout.jobs, spool.layout.unregistered
    try:
        marked = os.listdir(marks)
    except FileNotFoundError:
        marked = None
    if marked is None:
        try:
            names = os.listdir(jobs)
        except FileNotFoundError:
            names = []
        missing = unknown(names)
        with contextlib.suppress(FileExistsError):
            spool.access.make_dir(marks)
        for name in missing:  # marked now, so that a stop before registering keeps them
            spool.mark_unregistered(name)
        return missing
    present = [name for name in marked if os.path.isdir(jobs / name)]
    missing = unknown(present)
    spool.registered(name for name in marked if name not in missing)
    return missing


def _recover_one(spool: Spool, assembly: Assembly) -> None:
    work = assembly.path
    try:
        intake = Intake.from_file(work / JOB_FILE)
    except (OSError, ValueError, TypeError):
        # Stopped before job.json was whole: nothing was taken from outgoing yet.
        assembly.discard()
        return
    if not intake.source.startswith("outgoing/"):
        # A submission copies (faxgw submit, the console, the SMTP intake): the originals are
        # still with the submitter, who saw no id (a device got no 250 and sends again).
        assembly.discard()
        return
    manifest_taken = any(work.glob(f"*{MANIFEST_SUFFIX}"))
    docs = work / DOCS
    missing: list[str] = []
    with open_dir(docs) as docs_fd:
        device = os.fstat(docs_fd).st_dev
        for path_text, name in zip(intake.source_paths, intake.documents, strict=False):
            if not os.path.lexists(docs / name) and manifest_taken:
                _finish_claim(spool, Path(path_text), name, docs_fd)
            if not os.path.lexists(docs / name):
                missing.append(name)
        present = [name for name in intake.documents if name not in missing]
        for name in present:
            reason = judge_taken(docs_fd, name, device=device, access=spool.access)
            if reason:
                intake.refuse(codes.INPUT_REFUSED, f"{shown(name)}: {reason}; it was not sent")
        os.fsync(docs_fd)
    intake.documents = present
    if not manifest_taken and not present:
        assembly.discard()  # nothing was taken
        return
    if manifest_taken and missing:
        intake.refuse(codes.BAD_MANIFEST, "after a stop, the manifest's "
                      f"{', '.join(repr(shown(name)) for name in missing)} could not be "
                      "found; nothing of the job was sent")
    log.warning("↻ %s: finishing a job left half-taken by a process that is gone", intake.id)
    spool.commit(assembly, intake)


def _finish_claim(spool: Spool, source: Path, name: str, docs_fd: int) -> None:
    """Take a document of a committed manifest that a stopped process had not moved yet."""
    outgoing = spool.layout.outgoing
    if source.parent != outgoing:
        return  # a manifest names files in outgoing/ only
    try:
        out_fd = os.open(outgoing, DIR_FLAGS)
    except OSError:
        return
    try:
        os.rename(source.name, name, src_dir_fd=out_fd, dst_dir_fd=docs_fd)
    except OSError:
        pass  # gone: the job fails naming it
    finally:
        os.close(out_fd)
