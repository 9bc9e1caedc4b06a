"""Jobs, history events and reports to and from PostgreSQL rows.

Times are ``timestamptz``: PostgreSQL keeps the instant, and every time read back is given in
UTC whatever the session's zone, as the SQLite store gives them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...domain.jobs import HistoryEvent, Job, JobState
from ...domain.reports import MatchedBy, Outcome, Report

Row = dict[str, Any]

#: The columns of ``jobs`` that :func:`insert_values` fills, in order.
INSERT_COLUMNS = (
    "id", "created", "updated", "state", "code", "attempts", "next_attempt_at", "number",
    "recipient", "sender", "sender_key", "subject", "note", "documents", "pages", "bytes",
    "message_id", "error", "last_reply", "source", "age_from", "paused_since", "cover",
    "preparing", "notify", "notified",
)

#: Ends a SELECT of jobs that are then changed together: every transaction that locks several
#: jobs and waits for them takes them in this one order, so that two (runners on two hosts
#: taking back the same claims) never wait for each other in a circle.
LOCK_IN_ORDER = "ORDER BY created, id FOR UPDATE"

#: A history event: job_id, at, event, state, code, detail.
EVENT_INSERT = ("INSERT INTO history (job_id, at, event, state, code, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s)")


def sender_key(sender: str) -> str:
    """A sender as claims compare it: folded as Python folds it, beyond ASCII too, whatever
    the database's collation (its ``lower()`` depends on the locale it was created with)."""
    return sender.lower()


def utc(value: datetime | None) -> datetime | None:
    """A time as the store gives it: aware, in UTC."""
    return None if value is None else value.astimezone(UTC)


def insert_values(job: Job, updated: datetime) -> tuple[object, ...]:
    """The values of :data:`INSERT_COLUMNS` for a new job."""
    return (
        job.id, job.created, updated, job.state.value, job.code, job.attempts,
        job.next_attempt_at, job.number, job.recipient, job.sender, sender_key(job.sender),
        job.subject, job.note, list(job.documents), job.pages, job.bytes, job.message_id,
        job.error, job.last_reply, job.source, job.age_from or job.created, job.paused_since,
        job.cover, job.preparing, job.notify, job.notified,
    )


def column(name: str, value: object) -> object:
    """A job field's value as its column holds it."""
    if name == "documents":
        return list(value)  # type: ignore[call-overload]
    return value


def job_from(row: Row) -> Job:
    """A job from its row."""
    return Job(
        id=row["id"],
        number=row["number"],
        state=JobState(row["state"]),
        code=row["code"],
        created=row["created"].astimezone(UTC),
        updated=row["updated"].astimezone(UTC),
        attempts=row["attempts"],
        next_attempt_at=utc(row["next_attempt_at"]),
        recipient=row["recipient"],
        sender=row["sender"],
        subject=row["subject"],
        note=row["note"],
        documents=list(row["documents"]),
        pages=row["pages"],
        bytes=row["bytes"],
        message_id=row["message_id"],
        error=row["error"],
        last_reply=row["last_reply"],
        source=row["source"],
        age_from=utc(row["age_from"]),
        paused_since=utc(row["paused_since"]),
        cover=row["cover"],
        owner=row["owner"],
        lease_until=utc(row["lease_until"]),
        preparing=row["preparing"],
        notify=row["notify"],
        notified=row["notified"],
    )


def event_from(row: Row) -> HistoryEvent:
    """A history event from its row."""
    return HistoryEvent(
        job_id=row["job_id"],
        at=row["at"].astimezone(UTC),
        event=row["event"],
        state=JobState(row["state"]) if row["state"] else None,
        code=row["code"],
        detail=row["detail"],
    )


#: The columns of ``reports`` that :func:`report_values` fills, in order.
REPORT_COLUMNS = ("key", "mailbox", "received", "sender", "subject", "kind", "outcome", "code",
                  "job_id", "matched_by", "summary", "raw")


def report_values(report: Report) -> tuple[object, ...]:
    """The values of :data:`REPORT_COLUMNS` for a report (``raw`` as ``bytea``)."""
    return (report.key, report.mailbox, report.received, report.sender, report.subject,
            report.kind, report.outcome.value, report.code, report.job_id,
            report.matched_by.value, report.summary, bytes(report.raw))


def report_from(row: Row) -> Report:
    """A report from its row."""
    return Report(
        key=row["key"], mailbox=row["mailbox"], received=row["received"].astimezone(UTC),
        sender=row["sender"], subject=row["subject"], kind=row["kind"],
        outcome=Outcome(row["outcome"]), code=row["code"], job_id=row["job_id"],
        matched_by=MatchedBy(row["matched_by"]), summary=row["summary"], raw=bytes(row["raw"]),
    )
