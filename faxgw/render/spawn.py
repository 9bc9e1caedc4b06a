"""Where a render process starts: a name the worker can hand to ``multiprocessing`` without
loading the rendering libraries itself (the render process loads them, the worker never)."""

from __future__ import annotations

from typing import Any


def serve(*args: Any) -> None:
    """Run :func:`faxgw.render.process.serve` in this (new) process."""
    from .process import serve as serve_renders

    serve_renders(*args)
