"""Jobs, their states and the transitions between them (pure: no I/O).

::

    queued → sending → sent ─→ confirmed (the fax service reports the fax delivered)
                │        ├→ failed (the service or the mail server reports it failed)
                │        ├→ deferred (reported busy / no answer: dialled again)
                │        └→ unconfirmed (no report within [inbox] confirm_within) → …
                ├→ deferred (retry at next_attempt_at) → sending …
                └→ failed (permanent, or expired)
    held ⇄ (hold / release from queued or deferred)
    cancelled ← queued | deferred | held

``sent`` means the mail server accepted the email; where the service reports back (and the
mailbox is read), a report moves the job on. A late report still moves an ``unconfirmed`` job.

A job never leaves ``sending`` except by a recorded outcome. A job in ``sending`` is claimed
by one runner (``owner``) until its lease ends (``lease_until``); at start-up, ``sending`` jobs
go back to ``queued`` (the process that was sending them is gone).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class JobState(StrEnum):
    """The state of a job. The string values are part of the interface (``--state``, JSON)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HELD = "held"
    CONFIRMED = "confirmed"
    UNCONFIRMED = "unconfirmed"

    @property
    def finished(self) -> bool:
        """True for states a job never leaves by itself."""
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.SENT, JobState.FAILED, JobState.CANCELLED,
                             JobState.CONFIRMED, JobState.UNCONFIRMED})

#: States a report from the fax service or the mail server may move a job out of.
REPORTABLE_STATES = frozenset({JobState.SENT, JobState.UNCONFIRMED})

#: Allowed transitions. ``failed`` → ``queued`` is ``faxgw retry``.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.SENDING, JobState.FAILED, JobState.HELD, JobState.CANCELLED}
    ),
    JobState.SENDING: frozenset(
        {JobState.SENT, JobState.DEFERRED, JobState.FAILED, JobState.QUEUED}
    ),
    JobState.DEFERRED: frozenset(
        {JobState.SENDING, JobState.QUEUED, JobState.FAILED, JobState.HELD, JobState.CANCELLED}
    ),
    JobState.HELD: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.SENT: frozenset(
        {JobState.CONFIRMED, JobState.FAILED, JobState.DEFERRED, JobState.UNCONFIRMED}
    ),
    JobState.UNCONFIRMED: frozenset({JobState.CONFIRMED, JobState.FAILED, JobState.DEFERRED}),
    JobState.CONFIRMED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_transition(current: JobState, target: JobState) -> bool:
    """Whether a job may go from ``current`` to ``target``."""
    return target in TRANSITIONS[current]


def new_job_id() -> str:
    """A new job id: sortable by creation time, unique across hosts, safe in file names.

    12 hex digits of milliseconds then 8 random hex digits, e.g. ``0193a4f2c1d0-9f3b2a71``.
    """
    return f"{int(time.time() * 1000):012x}-{secrets.token_hex(4)}"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (one place, so tests can reason about it)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Job:
    """One fax job as the store keeps it."""

    id: str
    number: str
    state: JobState = JobState.QUEUED
    code: int | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    recipient: str = ""
    sender: str = ""
    subject: str = ""
    note: str = ""
    documents: list[str] = field(default_factory=list)
    pages: int | None = None
    bytes: int | None = None
    message_id: str | None = None
    error: str | None = None
    #: The mail server's last reply to this job (e.g. ``250 2.0.0 OK``), if any.
    last_reply: str | None = None
    source: str = ""
    #: Where the job's age counts from for ``[retry] max_age``: its creation, moved forward
    #: by ``faxgw retry`` and by time spent waiting for a sign-in.
    age_from: datetime | None = None
    #: Since when the job has been waiting for its account (sign-in, paused mailbox).
    paused_since: datetime | None = None
    #: Cover page: True / False as asked for the job, None for the service's default.
    cover: bool | None = None
    #: The runner whose claim the job is in while ``sending`` (None otherwise).
    owner: str | None = None
    #: Until when that claim holds.
    lease_until: datetime | None = None
    #: The runner rendering the job's attachment now; a job being prepared is not claimed.
    preparing: str | None = None
    #: Who is told by email how the job ended ("" = nobody).
    notify: str = ""
    #: The outcome last told to ``notify`` (``state:code``), so that it is told once.
    notified: str = ""

    def age_seconds(self, now: datetime) -> float:
        """Seconds the job has been trying, not counting waits for its account."""
        start = self.age_from or self.created
        if self.paused_since is not None:
            now = self.paused_since
        return max(0.0, (now - start).total_seconds())

    def to_json(self) -> dict[str, object]:
        """The job as ``faxgw jobs --json`` and ``faxgw show --json`` print it."""
        return {
            "id": self.id,
            "state": self.state.value,
            "code": self.code,
            "number": self.number,
            "recipient": self.recipient,
            "sender": self.sender,
            "subject": self.subject,
            "documents": list(self.documents),
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "pages": self.pages,
            "bytes": self.bytes,
            "message_id": self.message_id,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "error": self.error,
            "last_reply": self.last_reply,
            "cover": self.cover,
            "source": self.source,
            "notify": self.notify,
        }


#: The fields a store lets a caller set through ``update`` or ``transition(fields=…)``; the
#: state, the claim and the times of a change are the store's own to set.
UPDATABLE: frozenset[str] = frozenset({
    "recipient", "sender", "subject", "note", "documents", "pages", "bytes", "message_id",
    "error", "code", "next_attempt_at", "attempts", "created", "last_reply", "age_from",
    "paused_since", "preparing", "notify", "notified",
})


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One line of a job's append-only history."""

    job_id: str
    at: datetime
    event: str
    state: JobState | None = None
    code: int | None = None
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        """The event as ``faxgw show --json`` prints it."""
        return {
            "at": _iso(self.at),
            "event": self.event,
            "state": self.state.value if self.state else None,
            "code": self.code,
            "detail": self.detail,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None
