"""Registering a job in the store, and the store records every intake path shares.

This is where a complete job folder (from ``faxgw submit``, a drop folder or a manifest; the
SMTP intake next) becomes a row in the job store: queued, or failed at once with its code
when it was refused at intake or its number is invalid. A failed job's originals are kept
(:meth:`~faxgw.ports.DocumentStore.keep_failed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..domain import codes
from ..domain.errors import InputError, JobError, NumberError
from ..domain.jobs import Job, JobState
from ..fax.message import message_id_for
from ..fax.policy import mask, mask_numbers, parse_and_check
from ..fax.profiles import rules_for
from ..fsutil import write_atomic
from ..ports import DocumentStore, JobStore
from ..render import Rendered
from .checks import control_refusal, notify_refusal, sender_refusal, shown
from .job_file import Intake
from .layout import JOB_FILE

log = logging.getLogger("faxgw.intake")


def default_sender(config: Config) -> str:
    """The mailbox jobs are sent as unless they name their own sender."""
    if config.auth.method == "oauth2" and config.auth.account:
        return config.auth.account
    return config.smtp.sender


def sender_allowed(config: Config, sender: str, *, signed_in: bool = False) -> str | None:
    """Why a job may not name ``sender`` (``[intake] allowed_senders``), or None.

    ``signed_in``: the person proved ``sender`` by signing in as it (the console's "Send as
    me"), so it needs no entry in ``allowed_senders``."""
    if signed_in and sender.strip():
        return None
    return sender_refusal(sender, allowed=config.intake.allowed_senders,
                          default=default_sender(config))


def check_submission(config: Config, *, subject: str, note: str, sender: str,
                     files: Sequence[Path], signed_in: bool = False, notify: str = "") -> None:
    """Refuse a submission before anything is made: InputError with code 407 for control
    characters in its texts or file names, 408 for a sender that is not allowed (unless
    ``signed_in``: the person signed in as ``sender``)."""
    reason = control_refusal([("subject", subject), ("note", note), ("sender", sender)],
                             [path.name for path in files])
    if reason:
        raise InputError(reason, code=codes.CONTROL_CHARACTERS)
    reason = sender_allowed(config, sender, signed_in=signed_in)
    if reason:
        raise InputError(reason, code=codes.SENDER_NOT_ALLOWED)
    reason = notify_refusal(notify)
    if reason:
        raise InputError(reason, code=codes.NOTIFY_ADDRESS)


def _intake_refusal(intake: Intake, config: Config) -> tuple[int, str] | None:
    """Control characters (407) or a sender not allowed (408), whichever way the job came."""
    reason = control_refusal([("number", intake.number), ("subject", intake.subject),
                              ("note", intake.note), ("sender", intake.sender)],
                             intake.documents)
    if reason:
        return codes.CONTROL_CHARACTERS, reason
    reason = sender_allowed(config, intake.sender, signed_in=intake.sender_signed_in)
    if reason:
        return codes.SENDER_NOT_ALLOWED, reason
    reason = notify_refusal(intake.notify)
    if reason:
        return codes.NOTIFY_ADDRESS, reason
    return None


def record_signed_in(documents: DocumentStore, intake: Intake) -> None:
    """Note in the job folder's ``job.json`` that the sender signed in as ``intake.sender``
    (before the job is registered, so that a recovery registers it the same way)."""
    intake.sender_signed_in = True
    write_atomic(documents.job_dir(intake.id) / JOB_FILE, intake.to_file())


def register(intake: Intake, *, config: Config, store: JobStore, documents: DocumentStore,
             preparing: str | None = None) -> Job:
    """Record ``intake`` as a job; refused or invalid jobs fail at once, originals kept.

    ``preparing`` names the runner that renders the queued job next: no runner claims it
    until :func:`record_rendered` or :func:`refuse` clears the mark.
    """
    job, detail = _job_of(intake, config, preparing)
    store.add(job, detail=detail)
    _settle(job, intake, documents, config)
    return job


def register_all(intakes: Sequence[Intake], *, config: Config, store: JobStore,
                 documents: DocumentStore, preparing: str | None = None) -> list[Job]:
    """:func:`register` for several job folders, stored in one transaction: all of them, or
    none (the store's StoreError, or whatever judging one of them raised). Once they are
    stored, a failed job whose originals cannot be moved aside is logged, not raised: the
    others are stored too, and its originals stay in its folder."""
    planned = [(_job_of(intake, config, preparing), intake) for intake in intakes]
    store.add_all([(job, detail) for (job, detail), _ in planned])
    for (job, _), intake in planned:
        try:
            _settle(job, intake, documents, config)
        except Exception as exc:  # noqa: BLE001 - the job is stored; the rest go on
            log.error("! %s: its originals could not be moved to the failed jobs (%s); they "
                      "stay in its folder", job.id, exc)
    return [job for (job, _), _ in planned]


def _job_of(intake: Intake, config: Config, preparing: str | None) -> tuple[Job, str]:
    """The job ``intake`` is to be stored as, and its ``accepted`` event's detail."""
    error_code, error = intake.error_code, intake.error
    if error is None and (refusal := _intake_refusal(intake, config)) is not None:
        error_code, error = refusal
    refused_texts = error_code in (codes.CONTROL_CHARACTERS, codes.SENDER_NOT_ALLOWED)
    # A refused sender is not recorded as the job's: the configured mailbox is.
    sender = (intake.sender if not refused_texts else "") or default_sender(config)
    rules = rules_for(config.service)
    # Escaped: the record (and every log line and table made of it) holds no control
    # characters, whatever came in; job.json keeps the names as they are on disk.
    job = Job(id=intake.id, number=shown(intake.number), sender=sender,
              note=shown(intake.note), documents=[shown(name) for name in intake.documents],
              source=shown(intake.source), cover=intake.cover,
              notify="" if notify_refusal(intake.notify) else intake.notify)
    if error is None:
        try:
            number = parse_and_check(intake.number, config.numbers, config.service.region)
        except NumberError as exc:
            error_code, error = exc.code, exc.message
        else:
            job.number = number.e164
            job.recipient = rules.address_for(number)
    job.subject = shown(intake.subject) or rules.subject_for(job.number)
    job.message_id = message_id_for(job.id, sender)
    if error is not None:
        job.state, job.code, job.error = JobState.FAILED, error_code or codes.INTERNAL, error
        return job, f"from {job.source}; refused: {error}"
    job.preparing = preparing
    return job, f"from {job.source}, to {job.number} via {job.recipient}"


def _settle(job: Job, intake: Intake, documents: DocumentStore, config: Config) -> None:
    """After the store has ``job``: a failed job's originals go aside; say what became of it."""
    digits = config.numbers.mask_digits
    if job.state is JobState.FAILED:
        folder = documents.keep_failed(job.id)
        log.warning("! %s failed at intake (%s): %s; originals kept in %s", job.id, job.code,
                    mask_numbers(job.error or "", (intake.number, job.number), digits), folder)
        return
    if log.isEnabledFor(logging.INFO):  # masking costs more than the rest of the line
        log.info("→ %s queued: to %s, %d document(s)", job.id, mask(job.number, digits),
                 len(job.documents))


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
