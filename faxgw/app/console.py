"""What the web console asks that the command line does not: the queue counts alone and the
figures for ``/metrics``, whether the job store answers (``/readyz``), one page of the job
log, a job's attachment as it was sent, and the pages of a fax as pictures (a preview's, a
job's)."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import Config
from ..domain.jobs import Job, JobState, utcnow
from ..fax.profiles import rules_for
from ..render.rendered import attachment_paths
from ..render.thumbnails import PageImage, page_image, page_images
from .preview import preview
from .queries import list_jobs
from .wiring import open_documents, store_open, store_status

__all__ = ["JobFigures", "JobsPage", "PageImage", "PreviewPages", "attachment", "find_job",
           "job_figures", "job_page_image", "jobs_page", "preview_pages", "queue_counts",
           "store_ready"]


def queue_counts(config: Config) -> dict[JobState, int]:
    """How many jobs are in each state."""
    with store_open(config) as store:
        return store.counts()


def store_ready(config: Config) -> bool:
    """Whether the job store can be opened and read."""
    try:
        queue_counts(config)
    except Exception:  # noqa: BLE001 - any failure means "not ready", the probe says no more
        return False
    return True


@dataclass(frozen=True, slots=True)
class JobsPage:
    """One page of the job log, newest first."""

    jobs: list[Job]
    page: int
    has_next: bool


def jobs_page(config: Config, states: Iterable[JobState] | None, page: int,
              size: int, *, sender: str | None = None) -> JobsPage:
    """Page ``page`` (from 1) of ``size`` jobs, optionally only jobs in ``states``, and only
    jobs sent as ``sender`` when given (a "Send as me" user's own)."""
    page = max(1, page)
    wanted = list(states) if states is not None else None
    if sender is None:
        rows = list_jobs(config, wanted or None, page * size + 1)
    else:
        mine = sender.strip().lower()
        rows = [job for job in list_jobs(config, wanted or None)
                if job.sender.strip().lower() == mine]
    start = (page - 1) * size
    return JobsPage(rows[start:start + size], page, len(rows) > start + size)


@dataclass(frozen=True, slots=True)
class JobFigures:
    """The job store in numbers, for ``/metrics``."""

    by_state: dict[JobState, int]
    #: Jobs kept (not yet purged) that ended sent or failed, by state and code.
    finished_by_code: Counter[tuple[str, int]]
    #: Seconds the oldest queued or deferred job has waited (0 when none waits).
    oldest_waiting_seconds: float
    #: Dead row versions in the jobs table (PostgreSQL; None for SQLite).
    jobs_dead_tuples: int | None = None


def job_figures(config: Config, now: datetime | None = None) -> JobFigures:
    """Counts by state, finished jobs by code, and the age of the oldest waiting job."""
    moment = now or utcnow()
    with store_open(config) as store:
        by_state = store.counts()
        finished = store.list_jobs([JobState.SENT, JobState.FAILED])
        waiting = store.list_jobs([JobState.QUEUED, JobState.DEFERRED])
        dead = store_status(config, store).get("jobs_dead_tuples")
    by_code: Counter[tuple[str, int]] = Counter(
        (job.state.value, job.code) for job in finished if job.code is not None)
    oldest = min((job.created for job in waiting), default=None)
    age = max(0.0, (moment - oldest).total_seconds()) if oldest else 0.0
    return JobFigures(by_state, by_code, age, dead)


def find_job(config: Config, job_id: str) -> Job:
    """A job by id or a unique prefix (JobNotFoundError when there is none)."""
    with store_open(config) as store:
        return store.get(job_id)


def attachment(config: Config, job_id: str) -> tuple[Job, Path | None]:
    """A job (by id or a unique prefix) and its attachment as rendered (the PDF; the fax TIFF
    when there is no PDF), or None when it has not been rendered or was purged."""
    with store_open(config) as store:
        job = store.get(job_id)
    pdf, tiff = attachment_paths(open_documents(config).job_dir(job.id), job.id)
    return job, next((path for path in (pdf, tiff) if path.is_file()), None)


@dataclass(slots=True)
class PreviewPages:
    """A preview's report (``faxgw preview --json``), and its first pages as pictures."""

    report: dict[str, Any]
    images: list[PageImage] = field(default_factory=list)
    #: Pages in the attachment (more than ``images`` when they were capped).
    pages: int = 0


def preview_pages(config: Config, files: Sequence[Path], *, limit: int,
                  number_text: str | None = None, subject: str | None = None,
                  note: str = "", cover: bool | None = None) -> PreviewPages:
    """:func:`~faxgw.app.preview.preview` (nothing is queued), with the first ``limit``
    pages of the attachment it would send as pictures: the PDF, or the fax TIFF."""
    suffix = ".tif" if rules_for(config.service).attach_as == "tiff" else ".pdf"
    with tempfile.TemporaryDirectory(prefix="faxgw-preview-") as folder:
        out = Path(folder) / f"fax{suffix}"
        found = preview(config, files, number_text=number_text, out=out, subject=subject,
                        note=note, cover=cover)
        images, pages = page_images(out, limit=limit)
    found.report["out"] = None  # the temporary file is gone
    return PreviewPages(found.report, images, pages)


def job_page_image(config: Config, job_id: str, index: int
                   ) -> tuple[Job, PageImage | None]:
    """A job (by id or a unique prefix) and page ``index`` (from 0) of its attachment as a
    picture; None when it has no attachment (yet) or no such page."""
    job, path = attachment(config, job_id)
    return job, (page_image(path, index) if path is not None else None)
