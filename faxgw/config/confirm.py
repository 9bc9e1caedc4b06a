"""The sections for "did the fax arrive": ``[inbox]`` (reading reports) and ``[notify]``
(telling the sender)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import OptionalPath, Section
from .values import parse_duration


class InboxConfig(Section):
    """``[inbox]``: the sending mailbox, read for fax-service reports and bounces."""

    method: Literal["none", "imap", "graph"] = "none"
    host: str = "outlook.office365.com"
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    folder: str = "INBOX"
    #: Processed messages are moved here (created when missing), never deleted.
    done_folder: str = "faxgw"
    poll_seconds: Annotated[float, Field(gt=0)] = 60.0
    #: An extra CA bundle to trust for the mail server ("" = the system's).
    ca_file: OptionalPath = None
    #: No report by then: the job becomes ``unconfirmed``.
    confirm_within: float = 6 * 3600.0

    @field_validator("confirm_within", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("folder", "done_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.strip() or any(c in value for c in '\r\n"'):
            raise ValueError(f"{value!r} is not a folder name")
        return value


NotifyOn = Literal["failed", "confirmed", "unconfirmed"]


def _notify_default() -> list[NotifyOn]:
    return ["failed", "unconfirmed"]


class NotifyConfig(Section):
    """``[notify]``: which outcomes the submitter is told about by email."""

    on: list[NotifyOn] = Field(default_factory=_notify_default)
