"""A fax from a form or a multipart request: the uploaded files land in a private temporary
folder under their own names, then go to the same ``preview`` and ``submit`` as
``faxgw preview`` and ``faxgw submit``; the folder is removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from ..app.console import PreviewPages, preview_pages
from ..app.submit import submit as submit_fax
from ..config import Config
from ..domain.errors import DocumentError, FaxgwError
from ..domain.jobs import Job
from ..fax.profiles import rules_for

__all__ = ["FaxRequest", "default_cover", "message", "preview", "submit"]

CHUNK = 1024 * 1024


@dataclass
class FaxRequest:
    """What a person or a program asked to fax."""

    to: str
    subject: str = ""
    note: str = ""
    cover: bool | None = None
    files: list[UploadFile] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: FormData, *, cover_field: bool = False) -> FaxRequest:
        def text(name: str) -> str:
            value = form.get(name)
            return value.strip() if isinstance(value, str) else ""

        files = [item for item in form.getlist("files")
                 if isinstance(item, UploadFile) and item.filename]
        # A checkbox sends nothing when unticked: on the form, absent means "no".
        cover = ("cover" in form) if cover_field else None
        return cls(text("to"), text("subject"), text("note"), cover, files)


def default_cover(config: Config) -> bool:
    """Whether the form's ``Cover page`` box starts ticked (the profile's choice)."""
    return bool(rules_for(config.service).cover)


def message(exc: FaxgwError | ValueError) -> str:
    """The CLI's words for what went wrong: ``message (code N)`` where a code applies."""
    code = getattr(exc, "code", None)
    text = str(exc)
    if isinstance(exc, DocumentError) or code is None or f"code {code}" in text:
        return text
    return f"{text} (code {code})"


def _safe_name(name: str, index: int) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    return base if base not in ("", ".", "..") else f"document-{index}"


@contextmanager
def _saved(files: list[UploadFile], limit: int) -> Iterator[list[Path]]:
    """The uploads as files in a private temporary folder (each in a folder of its own, so
    that two uploads of one name keep their names)."""
    folder = Path(tempfile.mkdtemp(prefix="faxgw-web-"))
    try:
        paths = []
        for index, upload in enumerate(files, 1):
            target = folder / str(index) / _safe_name(upload.filename or "", index)
            target.parent.mkdir(mode=0o700)
            with target.open("wb") as out:
                written = 0
                upload.file.seek(0)
                while chunk := upload.file.read(CHUNK):
                    written += len(chunk)
                    out.write(chunk)
                    if written > limit:  # submit refuses it unread (413) by its size
                        break
            paths.append(target)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check(request: FaxRequest, *, need_number: bool) -> None:
    if need_number and not request.to:
        raise ValueError("give a fax number")
    if not request.files:
        raise ValueError("choose at least one document")


async def preview(config: Config, request: FaxRequest, *, pictures: int = 0) -> PreviewPages:
    """``faxgw preview --json``'s report for the request (the number when given), and the
    first ``pictures`` pages of the fax as pictures. Rendered in a worker thread."""
    _check(request, need_number=False)

    def run() -> PreviewPages:
        with _saved(request.files, config.limits.max_input_bytes) as paths:
            return preview_pages(config, paths, limit=pictures,
                                 number_text=request.to or None,
                                 subject=request.subject or None, note=request.note,
                                 cover=request.cover)

    return await run_in_threadpool(run)


async def submit(config: Config, request: FaxRequest, *, sender: str = "") -> Job:
    """The job ``faxgw submit`` would make of the request; ``sender``: a person who signed
    in as that address ("Send as me"), so that the job goes out from their mailbox, and who
    is told by email how it ends (``[notify] on``), as ``faxgw submit --notify`` would."""
    _check(request, need_number=True)

    def run() -> Job:
        with _saved(request.files, config.limits.max_input_bytes) as paths:
            return submit_fax(config, request.to, paths, subject=request.subject,
                              note=request.note, cover=request.cover, sender=sender,
                              sender_signed_in=bool(sender), notify=sender)

    return await run_in_threadpool(run)
