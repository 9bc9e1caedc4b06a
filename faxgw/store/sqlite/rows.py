"""Jobs and history events to and from SQLite rows.

Times are stored as text in one fixed form in UTC (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), so that
text order is time order in SQL comparisons.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from ...domain.errors import StoreError
from ...domain.jobs import UPDATABLE, HistoryEvent, Job, JobState, utcnow
from ...domain.reports import MatchedBy, Outcome, Report

#: The columns of ``jobs`` that :func:`insert_values` fills, in order.
INSERT_COLUMNS = (
    "id", "created", "updated", "state", "code", "attempts", "next_attempt_at", "number",
    "recipient", "sender", "subject", "note", "documents", "pages", "bytes", "message_id",
    "error", "last_reply", "source", "age_from", "paused_since", "cover", "preparing",
    "notify", "notified",
)


def ts(value: datetime | None) -> str | None:
    """A time as the store's text; isoformat() writes it as strftime would, in a tenth of the
    time (every job read and write goes through here)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def dt(value: str | None) -> datetime | None:
    """The store's text as a time; fromisoformat reads the trailing "Z" as UTC (3.11+)."""
    if value is None:
        return None
    return datetime.fromisoformat(value)


def column(name: str, value: object) -> object:
    """A job field's value as its column holds it."""
    if name == "documents":
        return json.dumps(value)
    if isinstance(value, datetime):
        return ts(value)
    return value


def check_fields(fields: dict[str, object]) -> None:
    """Refuse fields a caller may not set (see :data:`UPDATABLE`)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise StoreError(f"unknown job fields: {', '.join(sorted(unknown))}")


def insert_values(job: Job, updated: datetime) -> tuple[object, ...]:
    """The values of :data:`INSERT_COLUMNS` for a new job."""
    return (
        job.id, ts(job.created), ts(updated), job.state.value, job.code, job.attempts,
        ts(job.next_attempt_at), job.number, job.recipient, job.sender, job.subject, job.note,
        json.dumps(job.documents), job.pages, job.bytes, job.message_id, job.error,
        job.last_reply, job.source, ts(job.age_from or job.created), ts(job.paused_since),
        job.cover, job.preparing, job.notify, job.notified,
    )


def job_from(row: sqlite3.Row) -> Job:
    """A job from its row."""
    # Made into a dict first: the 27 lookups by name then take half the time they take on
    # sqlite3.Row, which compares the name with each column's in turn; every job read
    # comes through here.
    r = dict(zip(row.keys(), row, strict=False))  # as many values as names: not checked
    return Job(
        id=r["id"],
        number=r["number"],
        state=JobState(r["state"]),
        code=r["code"],
        created=dt(r["created"]) or utcnow(),
        updated=dt(r["updated"]) or utcnow(),
        attempts=r["attempts"],
        next_attempt_at=dt(r["next_attempt_at"]),
        recipient=r["recipient"],
        sender=r["sender"],
        subject=r["subject"],
        note=r["note"],
        documents=json.loads(r["documents"]),
        pages=r["pages"],
        bytes=r["bytes"],
        message_id=r["message_id"],
        error=r["error"],
        last_reply=r["last_reply"],
        source=r["source"],
        age_from=dt(r["age_from"]),
        paused_since=dt(r["paused_since"]),
        cover=None if r["cover"] is None else bool(r["cover"]),
        owner=r["owner"],
        lease_until=dt(r["lease_until"]),
        preparing=r["preparing"],
        notify=r["notify"],
        notified=r["notified"],
    )


def event_from(row: sqlite3.Row) -> HistoryEvent:
    """A history event from its row."""
    return HistoryEvent(
        job_id=row["job_id"],
        at=dt(row["at"]) or utcnow(),
        event=row["event"],
        state=JobState(row["state"]) if row["state"] else None,
        code=row["code"],
        detail=row["detail"],
    )


#: The columns of ``reports`` that :func:`report_values` fills, in order.
REPORT_COLUMNS = ("key", "mailbox", "received", "sender", "subject", "kind", "outcome", "code",
                  "job_id", "matched_by", "summary", "raw")


def report_values(report: Report) -> tuple[object, ...]:
    """The values of :data:`REPORT_COLUMNS` for a report."""
    return (report.key, report.mailbox, ts(report.received), report.sender, report.subject,
            report.kind, report.outcome.value, report.code, report.job_id,
            report.matched_by.value, report.summary, report.raw)


def report_from(row: sqlite3.Row) -> Report:
    """A report from its row."""
    return Report(
        key=row["key"], mailbox=row["mailbox"], received=dt(row["received"]) or utcnow(),
        sender=row["sender"], subject=row["subject"], kind=row["kind"],
        outcome=Outcome(row["outcome"]), code=row["code"], job_id=row["job_id"],
        matched_by=MatchedBy(row["matched_by"]), summary=row["summary"], raw=row["raw"],
    )
