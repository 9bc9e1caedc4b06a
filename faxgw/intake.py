"""Registering a job folder in the store: number checked, recipient and sender settled.

This is where a complete job folder (from ``faxgw submit``, a drop folder or a manifest)
becomes a row in the job store, queued, or failed at once with its code when it was refused
at intake or its number is invalid. Failed jobs' originals move to the spool's failed area.
"""

from __future__ import annotations

import logging

from . import codes
from .config import Config
from .errors import NumberError
from .jobs import Job, JobState
from .mail import message_id_for
from .policy import mask, parse_and_check
from .profiles import rules_for
from .spool import Intake, Spool
from .store.base import JobStore

log = logging.getLogger("faxgw.intake")


def default_sender(config: Config) -> str:
    """The mailbox jobs are sent as unless they name their own sender."""
    if config.auth.method == "oauth2" and config.auth.account:
        return config.auth.account
    return config.smtp.sender


def register(intake: Intake, *, config: Config, store: JobStore, spool: Spool) -> Job:
    """Record ``intake`` as a job; refused or invalid jobs fail at once and are quarantined."""
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
    if error is not None:
        job.state, job.code, job.error = JobState.FAILED, error_code or codes.INTERNAL, error
        store.add(job, detail=f"from {intake.source}; refused: {error}")
        folder = spool.quarantine(job.id)
        log.warning("! %s failed at intake (%s): %s; originals kept in %s",
                    job.id, job.code, error, folder)
        return job
    store.add(job, detail=f"from {intake.source}, to {job.number} via {job.recipient}")
    log.info("→ %s queued: to %s, %d document(s)", job.id,
             mask(job.number, config.numbers.mask_digits), len(job.documents))
    return job
