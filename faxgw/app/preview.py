"""Previewing a fax: render files as a job would send them, check every limit, send nothing.

It renders through the same :func:`~faxgw.render.job.render_attachment` as a job (the same
cover page, dated the same way), so what it shows is what would be sent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..domain import codes
from ..domain.errors import JobError
from ..domain.jobs import Job
from ..domain.numbers import FaxNumber
from ..fax.policy import parse_and_check
from ..fax.profiles import ServiceRules, rules_for
from ..intake.register import default_sender
from ..render import preflight
from ..render.job import render_attachment
from ..render.pdf import Rendered
from ..render.rendered import attachment_paths
from ..render.tiff import pdf_to_tiff

#: The job id a preview renders under (file names only; nothing is queued).
PREVIEW_ID = "preview"
#: What ``--out`` may end in: the PDF, or the fax TIFF.
OUT_SUFFIXES = (".pdf", ".tif", ".tiff")

__all__ = ["OUT_SUFFIXES", "PREVIEW_ID", "Preview", "preview"]


@dataclass(slots=True)
class Preview:
    """What a preview found: the report (``faxgw preview --json``), the rules it used, and
    every limit the fax would break."""

    report: dict[str, Any]
    rules: ServiceRules
    problems: list[JobError] = field(default_factory=list)


def preview(config: Config, files: Sequence[Path], *, number_text: str | None = None,
            out: Path | None = None, subject: str | None = None, note: str = "",
            cover: bool | None = None) -> Preview:
    """Render ``files`` as a job would send them and check every limit; write the PDF or the
    fax TIFF to ``out`` (by its suffix) when given.

    Raises :class:`~faxgw.domain.errors.DocumentError` for a document that cannot be read.
    """
    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise ValueError("--out must end in .pdf, .tif or .tiff")
    rules = rules_for(config.service)
    problems: list[JobError] = []
    number: FaxNumber | None = None
    if number_text is not None:
        try:
            number = parse_and_check(number_text, config.numbers, config.service.region)
        except JobError as exc:
            problems.append(exc)
    address = rules.address_for(number) if number is not None else None
    subject_text = subject or rules.subject_for(number.e164 if number else "<number>")
    use_cover = rules.cover if cover is None else cover
    job = Job(id=PREVIEW_ID, number=number.e164 if number else (number_text or ""),
              recipient=address or "", sender=default_sender(config), subject=subject_text,
              note=note, cover=use_cover)
    with tempfile.TemporaryDirectory(prefix="faxgw-preview-") as folder:
        rendered = render_attachment(job, list(files), Path(folder), rules,
                                     max_input_bytes=config.limits.max_input_bytes)
        if out is not None:
            _write_out(out, rendered, Path(folder), rules)
    problems.extend(preflight.violations(rendered, subject_text, rules,
                                         smtp_max_message_bytes=_smtp_limit(config)))
    report = _report(rules, rendered, number, address, subject_text, use_cover, problems, out)
    if note and not rules.body and not use_cover:
        report["warnings"].append(
            "the note is not sent: this service gets no email body; add a cover page "
            "(--cover, or [service] cover = true) to carry it")
    return Preview(report, rules, problems)


def _smtp_limit(config: Config) -> int | None:
    limit = config.smtp.max_message_bytes
    return limit if limit > 0 else None


def _write_out(out: Path, rendered: Rendered, folder: Path, rules: ServiceRules) -> None:
    """Copy the PDF or the TIFF rendition to ``out``, by its suffix."""
    pdf_path, tiff_path = attachment_paths(folder, PREVIEW_ID)
    if out.suffix.lower() == ".pdf":
        shutil.copyfile(pdf_path, out)
    elif rendered.path == tiff_path:
        shutil.copyfile(tiff_path, out)
    else:
        # A PDF service, but the user wants to see the fax as it would look on paper.
        pdf_to_tiff(pdf_path, out, compression=rules.tiff_compression, pages=rendered.pages)


def _report(rules: ServiceRules, rendered: Rendered, number: FaxNumber | None,
            address: str | None, subject: str, cover: bool, problems: list[JobError],
            out: Path | None) -> dict[str, Any]:
    return {
        "ok": not problems,
        "profile": rules.profile,
        "attachment": {
            "type": rules.attach_as,
            "compression": rules.tiff_compression if rules.attach_as == "tiff" else None,
            "pages": rendered.pages,
            "bytes": rendered.bytes,
            "encoded_bytes": preflight.encoded_size(rendered.bytes),
            "cover": cover,
        },
        "to": None if number is None else {"number": number.e164, "address": address},
        "subject": subject,
        "body": rules.body,
        "limits": {
            "max_pages": rules.max_pages,
            "max_attachment_bytes": rules.max_attachment_bytes,
            "max_subject_chars": rules.max_subject_chars,
        },
        "problems": [{"code": problem.code, "name": _code_name(problem.code),
                      "message": problem.message} for problem in problems],
        "out": str(out) if out is not None else None,
        "warnings": [],
    }


def _code_name(code: int | None) -> str:
    entry = codes.CODES.get(code) if code is not None else None
    return entry.name if entry else ""
