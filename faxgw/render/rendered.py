"""What a render produced, and the render process's exit codes: the few names the engine and
the intake need without loading the rendering libraries (fpdf2, pypdf, img2pdf, pdfium),
which a start with nothing to render should not pay for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..fsutil import remove_temporaries

#: How much lower (``nice``) render processes run than the worker.
RENDER_NICENESS = 10
#: The exit status of a render process that ended itself after a fatal error.
FATAL_EXIT = 70


@dataclass(frozen=True, slots=True)
class Rendered:
    """The PDF :func:`~faxgw.render.render_pdf` wrote (or the TIFF made of it)."""

    path: Path
    #: Number of pages, i.e. fax pages.
    pages: int
    #: Size of the file in bytes.
    bytes: int


def attachment_paths(job_dir: Path, job_id: str) -> tuple[Path, Path]:
    """Where a job's attachment is written: the PDF and the TIFF of job ``job_id``."""
    return job_dir / f"fax-{job_id}.pdf", job_dir / f"fax-{job_id}.tif"


def attachment_path(job_dir: Path, job_id: str, attach_as: str) -> Path:
    """The job's attachment as sent: the PDF, or the TIFF for services that take TIFF."""
    pdf, tiff = attachment_paths(job_dir, job_id)
    return tiff if attach_as == "tiff" else pdf


def remove_unfinished(job_dir: Path) -> list[str]:
    """Remove what a render stopped on the way was writing in ``job_dir`` (its temporary
    files: a fax TIFF half made, a PDF not yet renamed into place, a helper's part); the
    names removed. The attachments already in place, and the documents, stay."""
    return remove_temporaries(job_dir)
