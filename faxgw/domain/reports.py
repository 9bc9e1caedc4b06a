"""What the mailbox reader saw: reports from the fax service and the mail server (pure).

A :class:`Report` is one message found in the sending mailbox, classified (what kind of
report, what it says happened) and tied to a job where it could be (how it was matched).
Messages that are not reports (an out-of-office reply, a newsletter) are recorded too, with
the outcome ``none``: ``faxgw reports --unmatched`` lists what was seen but not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

#: The envelope id a fax email asks its bounces to name (SMTP DSN ``ENVID``).
ENVELOPE_PREFIX = "faxgw."


def envelope_id_for(job_id: str) -> str:
    """The envelope id of job ``job_id``'s email: ``faxgw.<job id>``."""
    return f"{ENVELOPE_PREFIX}{job_id}"


class Outcome(StrEnum):
    """What a report says became of the fax. The values are part of ``faxgw reports --json``."""

    DELIVERED = "delivered"
    FAILED = "failed"
    #: Still trying (a "received, will dial" report, a delayed-delivery DSN): no change.
    PENDING = "pending"
    #: Not a report at all (auto-reply, newsletter, a person's mail).
    NONE = "none"


class MatchedBy(StrEnum):
    """How a report was tied to its job, best first; ``number-time`` is a guess, flagged."""

    MESSAGE_ID = "message-id"
    JOB_HEADER = "job-header"
    ENVELOPE_ID = "envelope-id"
    SUBJECT_TOKEN = "subject-token"
    NUMBER_TIME = "number-time"
    NONE = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """What a parser read from a message: its kind, the outcome and the handles to match."""

    kind: str
    outcome: Outcome
    code: int | None = None
    summary: str = ""
    pages: int | None = None
    remote_id: str = ""
    #: Message-IDs the report refers to (In-Reply-To, References, the embedded original).
    message_ids: tuple[str, ...] = ()
    #: ``X-Faxgw-Job`` values found in embedded original headers.
    job_ids: tuple[str, ...] = ()
    envelope_id: str = ""
    #: The fax number the report names, as written there.
    number: str = ""
    #: Job tokens (``[faxgw 9f3b2a71]``, the id's random part) found in the report.
    tokens: tuple[str, ...] = ()


@dataclass(slots=True)
class Report:
    """One message the reader processed, as the store keeps it."""

    #: Unique per mailbox message: ``<mailbox>/<the inbox's id>``.
    key: str
    mailbox: str
    received: datetime
    sender: str
    subject: str
    kind: str
    outcome: Outcome
    code: int | None = None
    job_id: str | None = None
    matched_by: MatchedBy = MatchedBy.NONE
    summary: str = ""
    raw: bytes = field(default=b"", repr=False)

    def to_json(self) -> dict[str, object]:
        """The report as ``faxgw reports --json`` prints it (without the raw message)."""
        return {
            "key": self.key,
            "mailbox": self.mailbox,
            "received": self.received.isoformat(timespec="seconds"),
            "sender": self.sender,
            "subject": self.subject,
            "kind": self.kind,
            "outcome": self.outcome.value,
            "code": self.code,
            "job": self.job_id,
            "matched_by": self.matched_by.value or None,
            "summary": self.summary,
        }
