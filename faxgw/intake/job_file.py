"""``job.json``: a job folder's own description, enough to register the job again.

Written before anything is moved into the folder (the plan), and again when the take changed
it; a folder whose job is missing from the store is registered again from it at start-up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Intake"]


@dataclass(slots=True)
class Intake:
    """A job whose folder is complete in ``jobs/<id>/``, ready to be registered."""

    id: str
    number: str
    documents: list[str] = field(default_factory=list)
    subject: str = ""
    note: str = ""
    sender: str = ""
    source: str = ""
    #: Who is told by email how the job ends ("" = nobody).
    notify: str = ""
    #: Cover page for this job: True / False, or None for the service's default.
    cover: bool | None = None
    #: The sender proved this address by signing in as it (the console's "Send as me"):
    #: ``[intake] allowed_senders`` does not apply. Only the gateway sets it; a manifest
    #: cannot (its keys are fixed), and this file lives in the gateway's private folder.
    sender_signed_in: bool = False
    #: Where the documents were taken from (so that recovery can finish a claim).
    source_paths: list[str] = field(default_factory=list)
    #: Why the job is refused at intake (code, message), or None when it may go on.
    error_code: int | None = None
    error: str | None = None

    def refuse(self, code: int, error: str) -> None:
        """Fail the job with ``code``, unless it has failed already (the first cause wins)."""
        if self.error is None:
            self.error_code, self.error = code, error

    def to_file(self) -> bytes:
        """``job.json``: the folder's own description, enough to register it again."""
        text = json.dumps(asdict(self), indent=2, ensure_ascii=False)
        # A name the file system gave that is not UTF-8 holds lone surrogates: written as
        # JSON escapes (\udcXX), they read back as the same name.
        return text.encode("utf-8", "backslashreplace")

    @classmethod
    def from_file(cls, path: Path) -> Intake:
        """Read a ``job.json``."""
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{name: data[name] for name in cls.__slots__ if name in data})
