"""Preparing a job's attachment: render it as the service wants it, then pre-flight it.

Runs at intake, before anything is sent, so that a fax that breaks one of the service's or
the mail server's limits fails at once with the limit named ("23 pages, limit 20"), not at
the far end hours later. The rendered attachment stays in the job's folder and is what every
attempt sends.
"""

from __future__ import annotations

from pathlib import Path

from . import preflight
from .config import Config
from .errors import JobError
from .jobs import Job, JobState, utcnow
from .mail import message_bytes
from .profiles import ServiceRules, rules_for
from .render import Rendered
from .render.attachment import CoverInfo, attachment_paths, build_attachment
from .spool import Spool
from .store.base import JobStore


def attachment_for(job: Job, spool: Spool, rules: ServiceRules) -> Path:
    """Where the job's attachment is (PDF, or TIFF for services that take TIFF)."""
    pdf, tiff = attachment_paths(spool.job_dir(job.id), job.id)
    return tiff if rules.attach_as == "tiff" else pdf


def render_job(job: Job, spool: Spool, config: Config) -> Rendered:
    """Render the job's attachment and check it against every limit.

    Thread-safe and free of store access, so the worker can run it off the event loop.
    Raises :class:`~faxgw.errors.JobError` (document codes 410-412, limits 420-422).
    """
    rules = rules_for(config.service)
    wants_cover = job.cover if job.cover is not None else rules.cover
    cover = CoverInfo(to_number=job.number, to_address=job.recipient, sender=job.sender,
                      date=utcnow(), subject=job.subject, note=job.note) if wants_cover else None
    rendered = build_attachment(spool.documents(job.id), spool.job_dir(job.id), job.id, rules,
                                cover=cover)
    preflight.check(rendered, job.subject, rules,
                    smtp_max_message_bytes=config.smtp.max_message_bytes or None)
    return rendered


def render_and_build(job: Job, spool: Spool, config: Config, *,
                     build: bool) -> tuple[Rendered, bytes | None]:
    """:func:`render_job`, then, when ``build``, the job's email as the bytes to send.

    Free of store access and of shared state, like :func:`render_job`: it runs in a thread
    or in a render process (:mod:`faxgw.renderpool`).
    """
    rendered = render_job(job, spool, config)
    if not build:
        return rendered, None
    return rendered, build_message(job, rendered.path, config)


def build_message(job: Job, attachment: Path, config: Config) -> bytes:
    """The job's email with ``attachment``, as the service wants it (body or none)."""
    return message_bytes(job, attachment, body=rules_for(config.service).body)


def record_rendered(store: JobStore, job: Job, rendered: Rendered) -> Job:
    """Note the attachment's pages and size on the job."""
    return store.update(job.id, pages=rendered.pages, bytes=rendered.bytes, event="rendered",
                        detail=f"{rendered.pages} page(s), {rendered.bytes} bytes, "
                               f"{rendered.path.name}")


def fail_input(store: JobStore, spool: Spool, job: Job, exc: JobError) -> Job:
    """The job's documents cannot be sent as they are: fail it, keep the originals."""
    failed = store.transition(job.id, JobState.FAILED, event="failed", code=exc.code,
                              error=exc.message, detail=exc.message)
    folder = spool.quarantine(job.id)
    store.add_event(job.id, "quarantined", f"originals kept in {folder}")
    return failed


def prepare(store: JobStore, spool: Spool, config: Config, job: Job) -> Job:
    """Render, pre-flight and record one queued job (``faxgw submit`` does this at once)."""
    try:
        rendered = render_job(job, spool, config)
    except JobError as exc:
        return fail_input(store, spool, job, exc)
    return record_rendered(store, job, rendered)
