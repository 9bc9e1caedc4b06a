"""Rendering a fax job: every document, in order, as one PDF on the configured paper (or the
fax TIFF a service wants), with its cover page, checked against every limit.

Public API::

    detect_type(path) -> "pdf" | "jpeg" | "png" | "tiff" | "gif" | "bmp" | "text"
    render_pdf(documents, out, *, paper="A4", font=None) -> Rendered(path, pages, bytes)
    PAPER_SIZES  # {"A4": (595.28, 841.89), "Letter": (612.0, 792.0)}, in points

Bad documents raise :class:`faxgw.domain.errors.DocumentError` (codes 410, 411, 412; 405 for
a link or a pipe, 413 for a file over ``[limits] max_input_bytes``, 420 for an image too large
to decode), never a library's own exception.

Modules: ``source`` (reading a document, bounded), ``detect`` (type by content), ``pdf`` (the
job: parts, boundary, atomic write), ``pdfinput`` (PDF pages onto the paper; pdfium for what
pypdf cannot read), ``images`` (img2pdf), ``text`` (fpdf2), ``tiff`` (fax TIFF: ``raster``
makes its pages, ``libtiff`` writes them, ``tiff_ifd`` reads them back), ``cover``
(the cover page), ``attachment`` (what a service gets), ``preflight`` (the service's and the
mail server's limits), ``job`` (a job's attachment, start to end), ``process`` (the render
process's side of :mod:`faxgw.engine.renderpool`).
"""

from __future__ import annotations

from typing import Any

from .rendered import Rendered

__all__ = ["PAPER_SIZES", "Rendered", "detect_type", "render_pdf"]


def __getattr__(name: str) -> Any:
    # The rendering libraries load when rendering is first asked for, not with the package:
    # a run with nothing to render starts without them.
    if name in ("PAPER_SIZES", "render_pdf"):
        from . import pdf

        return getattr(pdf, name)
    if name == "detect_type":
        from .detect import detect_type

        return detect_type
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
