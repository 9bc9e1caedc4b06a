"""The page pictures of a preview, kept for the browser that asked for it.

A preview's pictures are rendered once, with the preview, and kept in memory on the session
that made it (the latest preview only, for :data:`KEEP_SECONDS`); the page links to them as
``/send/preview/{id}/{page}.png``. The id is random and new for every preview, so an old
page never shows a newer preview's pictures; it is not a secret: only the session that made
the preview gets them, anyone else gets 404. Nothing is written to disk.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..app.console import PageImage
from .sessions import Session

__all__ = ["KEEP_SECONDS", "PAGES_SHOWN", "StoredPreview", "keep", "picture"]

#: A preview shows at most this many pages as pictures (and says how many more there are).
PAGES_SHOWN = 10
#: How long a preview's pictures are kept for its session.
KEEP_SECONDS = 15 * 60.0


@dataclass(frozen=True, slots=True)
class StoredPreview:
    """One preview's pictures."""

    id: str
    images: tuple[PageImage, ...]
    #: Pages in the fax (more than ``images`` when capped at :data:`PAGES_SHOWN`).
    pages: int
    made: float

    @property
    def more(self) -> int:
        """Pages not shown."""
        return max(0, self.pages - len(self.images))


def keep(session: Session, images: list[PageImage], pages: int,
         clock: Callable[[], float] = time.monotonic) -> StoredPreview:
    """Keep ``images`` as the session's preview (replacing the one before)."""
    stored = StoredPreview(secrets.token_urlsafe(12), tuple(images), pages, clock())
    session.preview = stored
    return stored


def picture(session: Session, preview_id: str, page: int,
            clock: Callable[[], float] = time.monotonic) -> PageImage | None:
    """Page ``page`` (from 1) of the session's preview ``preview_id``; None when the session
    has no such preview (another's, replaced, or expired) or it has no such page."""
    stored = session.preview
    if not isinstance(stored, StoredPreview):
        return None
    if clock() - stored.made > KEEP_SECONDS:
        session.preview = None
        return None
    if not secrets.compare_digest(stored.id, preview_id) or not 1 <= page <= len(stored.images):
        return None
    return stored.images[page - 1]
