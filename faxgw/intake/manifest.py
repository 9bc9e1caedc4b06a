"""``NAME.fax`` manifests: a TOML file in ``outgoing/`` that names a job's number and files.

::

    to = "+4930123456"
    files = ["contract.pdf", "annex.pdf"]     # plain names in outgoing/, in order
    subject = "Contract"                      # optional: subject, note, sender, cover
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .layout import MANIFEST_SUFFIX

KEYS = frozenset({"to", "files", "subject", "note", "sender", "cover", "notify"})


class _Fields(Protocol):
    subject: str
    note: str
    sender: str
    notify: str
    cover: bool | None


def manifest_fields(data: dict[str, object], intake: _Fields) -> tuple[list[str], str]:
    """The files and the number a manifest names; its subject, note, sender and cover are set
    on ``intake``. Raises ValueError naming what is wrong."""
    unknown = set(data) - KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}")
    number = data.get("to")
    if not isinstance(number, str) or not number.strip():
        raise ValueError('missing to = "+<number>"')
    files = data.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise ValueError('missing files = ["a.pdf", ...]')
    for name in files:
        if name != Path(name).name or name in ("", ".", "..") or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name in outgoing/")
        if name.endswith(MANIFEST_SUFFIX):
            raise ValueError(f"{name!r} is a manifest, not a document")
    if len(set(files)) != len(files):
        raise ValueError("names a file twice")
    for key in ("subject", "note", "sender", "notify"):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        setattr(intake, key, value)
    cover = data.get("cover")
    if cover is not None and not isinstance(cover, bool):
        raise ValueError("cover must be true or false")
    intake.cover = cover
    return list(files), number
