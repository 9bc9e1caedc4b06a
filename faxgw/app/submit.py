"""Submitting a fax: files become one job, rendered and checked now (``faxgw submit``).

The person is there: an invalid or refused number is refused before anything is made, and a
job that cannot be sent fails at once with its code, its originals kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..domain.errors import JobError
from ..domain.jobs import Job, JobState
from ..engine.worker import runner_id
from ..fax.policy import parse_and_check
from ..intake.register import record_rendered, refuse, register
from ..ports import DocumentStore, JobStore
from ..render.job import render_job
from .wiring import open_spool, store_open

__all__ = ["prepare", "submit"]


def submit(config: Config, number: str, files: Sequence[Path], *, subject: str = "",
           note: str = "", sender: str = "", cover: bool | None = None) -> Job:
    """Copy ``files`` into the spool as one job to ``number``; register, render, pre-flight.

    Raises :class:`~faxgw.domain.errors.NumberError` (nothing is made) for a number that is
    invalid or refused by ``[numbers]``. Returns the job: ``queued``, or ``failed`` with its
    code when a document or a limit stops it.
    """
    parse_and_check(number, config.numbers, config.service.region)
    spool = open_spool(config)
    spool.ensure()
    intake = spool.submit(number, list(files), subject=subject, note=note, sender=sender,
                          cover=cover)
    with store_open(config) as store:
        # Marked as being prepared: a running service does not send it before it is rendered.
        job = register(intake, config=config, store=store, documents=spool,
                       preparing=runner_id())
        if job.state is JobState.QUEUED:
            job = prepare(store, spool, config, job)
        return job


def prepare(store: JobStore, documents: DocumentStore, config: Config, job: Job) -> Job:
    """Render, pre-flight and record one queued job; a job that cannot pass fails now."""
    try:
        rendered = render_job(job, documents, config)
    except JobError as exc:
        return refuse(store, documents, job, exc)
    except BaseException:
        store.update(job.id, preparing=None)  # rendered when it is sent, then
        raise
    return record_rendered(store, job, rendered)
