"""The attachment a job sends: its documents as one PDF, the cover first, TIFF if asked.

:func:`build_attachment` is the one call the worker and ``faxgw preview`` make. It renders
the documents with :func:`~faxgw.render.render_pdf` into ``fax-<id>.pdf`` in the job's
folder, puts the cover page in front when one is given, and for services that take TIFF
also writes ``fax-<id>.tif`` (checked by reading it back) and describes that file instead.
Every file is written atomically: temp name, fsync, rename.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

from pypdf import PdfReader, PdfWriter

from ..fax.profiles import ServiceRules
from ..fsutil import write_atomic
from .cover import CoverInfo, load_template, render_cover
from .pdf import Rendered, render_pdf
from .rendered import attachment_paths
from .source import DEFAULT_MAX_INPUT_BYTES
from .tiff import pdf_to_tiff

__all__ = ["CoverInfo", "attachment_paths", "build_attachment"]

log = logging.getLogger("faxgw.render")


def build_attachment(
    documents: Sequence[Path],
    job_dir: Path,
    job_id: str,
    rules: ServiceRules,
    *,
    cover: CoverInfo | None,
    font: Path | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    link_originals: bool = False,
) -> Rendered:
    """Render ``documents`` (in order) into the attachment ``rules`` ask for; describe it.

    With ``cover``, a cover page built from ``rules.cover_template`` comes first and counts
    as a page. The result points at ``fax-<id>.pdf``, or at ``fax-<id>.tif`` when
    ``rules.attach_as`` is ``"tiff"`` (pages and bytes are then the TIFF's). A document
    larger than ``max_input_bytes`` is refused unread.

    Raises :class:`~faxgw.domain.errors.DocumentError` for a bad document (codes 405, 410-413,
    420) or a TIFF that fails its check (590), :class:`~faxgw.domain.errors.ConfigError` for an
    unusable cover template; nothing half-written is left behind.
    """
    pdf_path, tiff_path = attachment_paths(Path(job_dir), job_id)
    # The template is checked before any rendering: a broken one is the administrator's
    # to fix, and should not cost a render first.
    template = load_template(rules.cover_template) if cover is not None else None
    # A cover page makes the PDF anew anyway: linking to the original would be wasted.
    rendered = render_pdf(documents, pdf_path, paper=rules.paper, font=font,
                          max_input_bytes=max_input_bytes,
                          link_originals=link_originals and cover is None)
    if cover is not None:
        cover_pdf = render_cover(cover, document_pages=rendered.pages, paper=rules.paper,
                                 template=template, font=font)
        rendered = _prepend(cover_pdf, rendered)
    if rules.attach_as == "tiff":
        rendered = pdf_to_tiff(pdf_path, tiff_path, compression=rules.tiff_compression,
                               pages=rendered.pages)
    log.debug("attachment for %s: %s, %d pages, %d bytes", job_id, rendered.path.name,
              rendered.pages, rendered.bytes)
    return rendered


def _prepend(cover_pdf: bytes, rendered: Rendered) -> Rendered:
    """Put the cover's pages in front of the rendered PDF, in place (atomically)."""
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(cover_pdf)).pages:
        writer.add_page(page)
    # Read the document into memory first: the rename replaces the file being read.
    for page in PdfReader(io.BytesIO(rendered.path.read_bytes())).pages:
        writer.add_page(page)
    size = write_atomic(rendered.path, writer.write)
    return Rendered(path=rendered.path, pages=len(writer.pages), bytes=size)
