"""Registering a job in the store, and the store records every intake path shares.

This is where a complete job folder (from ``faxgw submit``, a drop folder or a manifest; the
SMTP intake next) becomes a row in the job store: queued, or failed at once with its code
when it was refused at intake or its number is invalid. A failed job's originals are kept
(:meth:`~faxgw.ports.DocumentStore.keep_failed`).
"""

from __future__ import annotations

import logging

from ..config import Config
from ..domain import codes
from ..domain.errors import JobError, NumberError
from ..domain.jobs import Job, JobState
from ..fax.message import message_id_for
from ..fax.policy import mask, mask_numbers, parse_and_check
from ..fax.profiles import rules_for
from ..ports import DocumentStore, JobStore
from ..render import Rendered
from .job_file import Intake

log = logging.getLogger("faxgw.intake")


def default_sender(config: Config) -> str:
    """The mailbox jobs are sent as unless they name their own sender."""
    if config.auth.method == "oauth2" and config.auth.account:
        return config.auth.account
    return config.smtp.sender


def register(intake: Intake, *, config: Config, store: JobStore, documents: DocumentStore,
             preparing: str | None = None) -> Job:
    """Record ``intake`` as a job; refused or invalid jobs fail at once, originals kept.

    ``preparing`` names the runner that renders the queued job next: no runner claims it
    until :func:`record_rendered` or :func:`refuse` clears the mark.
    """
    sender = intake.sender or default_sender(config)
    rules = rules_for(config.service)
    job = Job(id=intake.id, number=intake.number, sender=sender, note=intake.note,
              documents=list(intake.documents), source=intake.source, cover=intake.cover)
    error_code, error = intake.error_code, intake.error
    if error is None:
        try:
            number = parse_and_check(intake.number, config.numbers, config.service.region)
        except NumberError as exc:
            error_code, error = exc.code, exc.message
        else:
            job.number = number.e164
            job.recipient = rules.address_for(number)
    job.subject = intake.subject or rules.subject_for(job.number)
    job.message_id = message_id_for(job.id, sender)
    digits = config.numbers.mask_digits
    if error is not None:
        job.state, job.code, job.error = JobState.FAILED, error_code or codes.INTERNAL, error
        store.add(job, detail=f"from {intake.source}; refused: {error}")
        folder = documents.keep_failed(job.id)
        log.warning("! %s failed at intake (%s): %s; originals kept in %s", job.id, job.code,
                    mask_numbers(error, (intake.number, job.number), digits), folder)
        return job
    job.preparing = preparing
    store.add(job, detail=f"from {intake.source}, to {job.number} via {job.recipient}")
    log.info("→ %s queued: to %s, %d document(s)", job.id, mask(job.number, digits),
             len(job.documents))
    return job


def record_rendered(store: JobStore, job: Job, rendered: Rendered) -> Job:
    """Note the attachment's pages and size on the job; it is prepared (claimable)."""
    return store.update(job.id, pages=rendered.pages, bytes=rendered.bytes, preparing=None,
                        event="rendered", detail=f"{rendered.pages} page(s), {rendered.bytes} "
                                                 f"bytes, {rendered.path.name}")


def refuse(store: JobStore, documents: DocumentStore, job: Job, exc: JobError, *,
           owner: str | None = None) -> Job:
    """The job's documents cannot be sent as they are: fail it, keep the originals.

    ``owner``: the runner whose claim the job is in, when it is being sent."""
    failed = store.transition(job.id, JobState.FAILED, event="failed", code=exc.code,
                              error=exc.message, detail=exc.message, owner=owner,
                              fields={"preparing": None})
    folder = documents.keep_failed(job.id)
    store.add_event(job.id, "quarantined", f"originals kept in {folder}")
    return failed
