"""A job's attachment: its documents rendered as the service wants them, then pre-flighted.

Runs at intake, before anything is sent, so that a fax that breaks one of the service's or
the mail server's limits fails at once with the limit named ("23 pages, limit 20"), not at
the far end hours later. The rendered attachment stays with the job's files and is what
every attempt sends. ``faxgw preview`` renders through the same :func:`render_attachment`,
so what it shows is what a job would send.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ..config import Config
from ..domain.jobs import Job, utcnow
from ..fax.message import build_message
from ..fax.profiles import ServiceRules, rules_for
from ..ports import DocumentStore
from . import preflight
from .attachment import CoverInfo, build_attachment
from .pdf import Rendered
from .rendered import attachment_path
from .source import DEFAULT_MAX_INPUT_BYTES


def attachment_for(job: Job, documents: DocumentStore, rules: ServiceRules) -> Path:
    """Where the job's attachment is (PDF, or TIFF for services that take TIFF)."""
    return attachment_path(documents.job_dir(job.id), job.id, rules.attach_as)


def cover_for(job: Job, rules: ServiceRules, date: datetime) -> CoverInfo | None:
    """The job's cover page as asked for (or as the service's default), dated ``date``."""
    wants_cover = job.cover if job.cover is not None else rules.cover
    if not wants_cover:
        return None
    return CoverInfo(to_number=job.number, to_address=job.recipient, sender=job.sender,
                     date=date, subject=job.subject, note=job.note)


def render_attachment(job: Job, documents: Sequence[Path], folder: Path, rules: ServiceRules,
                      *, date: datetime | None = None,
                      max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
                      link_originals: bool = False) -> Rendered:
    """Render ``documents`` (with the job's cover page) into ``folder``; no limits of the
    service checked. A document larger than ``max_input_bytes`` is refused unread (413).
    ``link_originals``: the documents are the job's own, in ``folder``, and a PDF attached as
    read may be linked rather than copied (see :func:`~faxgw.render.pdf.render_pdf`)."""
    cover = cover_for(job, rules, date or utcnow())
    return build_attachment(documents, folder, job.id, rules, cover=cover,
                            max_input_bytes=max_input_bytes, link_originals=link_originals)


def render_job(job: Job, documents: DocumentStore, config: Config) -> Rendered:
    """Render the job's attachment and check it against every limit.

    Thread-safe and free of store access, so the engine can run it off the event loop.
    Raises :class:`~faxgw.domain.errors.JobError` (document codes 405, 410-413, limits
    420-422).
    """
    rules = rules_for(config.service)
    rendered = render_attachment(job, documents.documents(job.id), documents.job_dir(job.id),
                                 rules, max_input_bytes=config.limits.max_input_bytes,
                                 link_originals=True)
    preflight.check(rendered, job.subject, rules,
                    smtp_max_message_bytes=config.smtp.max_message_bytes or None)
    return rendered


def render_and_build(job: Job, documents: DocumentStore, config: Config, *,
                     build: bool) -> tuple[Rendered, bytes | None]:
    """:func:`render_job`, then, when ``build``, the job's email as the bytes to send.

    Free of store access and of shared state, like :func:`render_job`: it runs in a thread
    or in a render process (:mod:`faxgw.engine.renderpool`).
    """
    rendered = render_job(job, documents, config)
    if not build:
        return rendered, None
    return rendered, build_message(job, rendered.path, config)
