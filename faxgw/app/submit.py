"""Submitting a fax: files become one job, rendered and checked now (``faxgw submit``).

The person is there: an invalid or refused number, a sender ``[intake] allowed_senders``
does not allow, or texts with control characters are refused before anything is made, and a
job that cannot be sent fails at once with its code, its originals kept. The job is rendered
in a render process started for it (:class:`~faxgw.engine.renderpool.RenderPool`), like every
job, so that a document that hangs or crashes its render fails the job (415, 414) instead of
hanging or crashing ``faxgw submit``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..domain.errors import JobError, StoreError
from ..domain.jobs import Job, JobState
from ..engine.preparer import KeepsRendered
from ..engine.renderpool import RenderPool
from ..engine.runners import RunnerLock, runner_id
from ..fax.policy import parse_and_check
from ..intake.register import (
    check_submission,
    record_rendered,
    record_signed_in,
    refuse,
    register,
)
from ..intake.spool import Spool
from ..ports import DocumentStore, JobStore
from .wiring import open_documents, open_spool, open_store

log = logging.getLogger("faxgw.intake")

__all__ = ["prepare", "submit"]


def submit(config: Config, number: str, files: Sequence[Path], *, subject: str = "",
           note: str = "", sender: str = "", cover: bool | None = None,
           sender_signed_in: bool = False, notify: str = "",
           renderer: RenderPool | None = None, source: str = "submit") -> Job:
    """Copy ``files`` into the spool as one job to ``number``; register, render, pre-flight.

    Raises :class:`~faxgw.domain.errors.NumberError` (nothing is made) for a number that is
    invalid or refused by ``[numbers]``, :class:`~faxgw.domain.errors.InputError` (nothing is
    made) for texts or file names with control characters (407) or a sender that is not
    allowed (408; with ``sender_signed_in`` the person signed in as ``sender``, which
    ``allowed_senders`` then need not list: the job carries that proof) or a ``notify`` that
    is not one address (409); :class:`~faxgw.domain.errors.StoreError` when the job store
    cannot record it (its folder is taken back, so nothing is sent later). Returns the job:
    ``queued``, or ``failed`` with its code when a document or a limit stops it. ``renderer``:
    a running render pool (the service's, for the SMTP intake); else a render process is
    started for the job.
    """
    parse_and_check(number, config.numbers, config.service.region)
    check_submission(config, subject=subject, note=note, sender=sender, files=files,
                     signed_in=sender_signed_in, notify=notify)
    spool = open_spool(config)
    spool.ensure()
    intake = spool.submit(number, list(files), subject=subject, note=note, sender=sender,
                          cover=cover, notify=notify, source=source)
    if sender_signed_in and sender:
        record_signed_in(spool, intake)
    # This command is a runner while it prepares the job: the job is marked as being prepared
    # by it, so a running service does not send it before it is rendered, and the lock says
    # it is alive (a service takes the mark back only once this process has ended).
    lock = RunnerLock(spool.layout.state / "runners", runner_id())
    try:
        try:
            store = open_store(config)
        except StoreError:
            _withdraw(spool, intake.id, None)
            raise
        try:
            try:
                job = register(intake, config=config, store=store, documents=spool,
                               preparing=lock.owner)
            except StoreError:
                _withdraw(spool, intake.id, store)
                raise
            spool.registered([intake.id])
            if job.state is JobState.QUEUED:
                job = prepare(store, spool, config, job, renderer=renderer)
            return job
        finally:
            store.close()
    finally:
        lock.release()


def _withdraw(spool: Spool, job_id: str, store: JobStore | None) -> None:
    """Take back the job folder of a submission the store could not record, so that the
    caller's error is the whole answer: a device that retries sends the fax once, not once
    now and once more when a start-up registers the folder. Kept when the store cannot say
    whether it holds the job (a write whose answer was lost): at least once, never lost."""
    try:
        recorded = store is not None and store.exists(job_id)
    except StoreError:
        log.warning("%s: the job store cannot say whether it holds the job; its folder is "
                    "kept and registered at the next start", job_id)
        return
    if not recorded:
        spool.remove(job_id)


def prepare(store: JobStore, documents: DocumentStore, config: Config, job: Job, *,
            renderer: RenderPool | None = None) -> Job:
    """Render, pre-flight and record one queued job; a job that cannot pass fails now.

    It is rendered in ``renderer``, or else in a render process started for it and stopped
    after it. The render process opens the job files of ``config``'s spool, which
    ``documents`` must be.
    """
    pool = renderer if renderer is not None else RenderPool(
        config, 1, open_documents, job_folder=documents.job_dir)
    try:
        rendered, _ = pool.render_now(job)
    except JobError as exc:
        return refuse(store, documents, job, exc)
    except BaseException:
        store.update(job.id, preparing=None)  # rendered when it is sent, then
        raise
    finally:
        if renderer is None:
            pool.close()
    if isinstance(documents, KeepsRendered):  # any host may send it: no render again there
        documents.keep_rendered(job.id, rendered.path)
    return record_rendered(store, job, rendered)
