"""Reading the sending mailbox: each report moves its job on; no report in time, unconfirmed.

One poll reads what arrived after the stored cursor, classifies each message
(:mod:`faxgw.confirm`), ties it to its job, applies it, records it (raw message kept), moves
the messages it used to the done folder, and saves the cursor. Every step may be repeated
after a crash without harm: a recorded report is known by its key and never applied twice,
a job already moved on refuses the move, and the cursor only advances past what is recorded.
One message that cannot be read is recorded as ``unreadable``; it never stops the poll.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..config import Config
from ..confirm.classify import ReportRules, classify
from ..confirm.correlate import correlate, digits
from ..confirm.mail import header
from ..domain import codes
from ..domain.errors import JobNotFoundError, JobStateError
from ..domain.jobs import REPORTABLE_STATES, Job, JobState
from ..domain.reports import Finding, MatchedBy, Outcome, Report
from ..domain.retry import backoff_seconds
from ..ports import Inbox, InboxMessage, JobStore, ReportStore

log = logging.getLogger("faxgw.reports")

#: Messages read per request; a poll reads on until the mailbox has no more.
BATCH = 100


@dataclass(slots=True)
class PollSummary:
    """What one poll did."""

    seen: int = 0
    matched: int = 0
    unmatched: int = 0
    unconfirmed: int = 0
    changed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The counts, as ``faxgw reports --poll --json`` prints them."""
        return {"seen": self.seen, "matched": self.matched, "unmatched": self.unmatched,
                "unconfirmed": self.unconfirmed, "changed": list(self.changed)}


class ReportReader:
    """Reads one mailbox's reports into the store (see the module's docstring)."""

    def __init__(self, config: Config, store: JobStore, reports: ReportStore, inbox: Inbox, *,
                 mailbox: str,
                 rules: ReportRules, clock: Callable[[], datetime],
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.store = store
        self.reports = reports
        self.inbox = inbox
        self.mailbox = mailbox
        self.rules = rules
        self.clock = clock
        self.rng = rng or random.Random()
        self._awaiting_jobs: list[Job] | None = None

    async def poll(self) -> PollSummary:
        """Read everything new, then mark overdue jobs unconfirmed."""
        summary = PollSummary()
        self._awaiting_jobs = None
        while True:
            cursor = self.reports.inbox_cursor(self.mailbox)
            batch = await self.inbox.fetch(cursor, limit=BATCH)
            done: list[str] = []
            for message in batch.messages:
                summary.seen += 1
                report = self._process(message, summary)
                if report is not None and report.job_id is not None:
                    done.append(message.id)
            if done:
                await self.inbox.mark_done(done)
            self.reports.save_inbox_cursor(self.mailbox, batch.cursor)
            if len(batch.messages) < BATCH:
                break
        summary.unconfirmed = len(self.expire_unconfirmed())
        return summary

    def _process(self, message: InboxMessage, summary: PollSummary) -> Report | None:
        key = f"{self.mailbox.lower()}/{message.id}"
        known = self.reports.get_report(key)
        if known is not None:
            # Recorded before a crash or a restart: its effect is in the store already; a
            # used one is moved to the done folder again, nothing is applied twice.
            return known
        try:
            parsed, finding = classify(message.raw, self.rules)
            sender, subject = header(parsed, "From"), header(parsed, "Subject")
        except Exception as exc:  # noqa: BLE001 - one unreadable message never stops a poll
            log.warning("report %s could not be read: %s", key, type(exc).__name__)
            finding = Finding("unreadable", Outcome.NONE, summary=f"unreadable: "
                              f"{type(exc).__name__}")
            sender = subject = ""
        job_id, matched_by = (None, MatchedBy.NONE)
        if finding.outcome is not Outcome.NONE:
            job_id, matched_by = correlate(finding, exists=self.store.exists,
                                           awaiting=self._awaiting, by_token=self._by_token)
        report = Report(key=key, mailbox=self.mailbox, received=self.clock(), sender=sender,
                        subject=subject[:300], kind=finding.kind, outcome=finding.outcome,
                        code=finding.code, job_id=job_id, matched_by=matched_by,
                        summary=finding.summary, raw=message.raw)
        if job_id is not None:
            self._apply(job_id, finding, matched_by)
            summary.matched += 1
            summary.changed.append(job_id)
        else:
            summary.unmatched += 1
        self.reports.add_report(report)
        return report

    def _reportable(self) -> list[Job]:
        """The jobs awaiting a report, newest first: read once for the reports that need
        them, and again only after a report moved a job."""
        if self._awaiting_jobs is None:
            self._awaiting_jobs = self.store.list_jobs(REPORTABLE_STATES, limit=5000)
        return self._awaiting_jobs

    def _awaiting(self, number: str) -> list[str]:
        since = self.clock() - timedelta(seconds=self.config.inbox.confirm_within * 2)
        wanted = number.lstrip("0")
        return [job.id for job in self._reportable()[:2000]
                if job.updated >= since and len(wanted) >= 6
                and (digits(job.number) == number or digits(job.number).endswith(wanted))]

    def _by_token(self, token: str) -> list[str]:
        return [job.id for job in self._reportable() if job.id.endswith(f"-{token}")]

    def _apply(self, job_id: str, finding: Finding, matched_by: MatchedBy) -> None:
        """Move the job as the report says; a job already moved on only gets the event."""
        self._awaiting_jobs = None  # the jobs awaiting a report may change now
        summary = finding.summary
        if matched_by is MatchedBy.NUMBER_TIME:
            summary += " (matched by number and time only)"
        try:
            job = self.store.get(job_id)
        except JobNotFoundError:
            return
        if finding.outcome is Outcome.PENDING or job.state not in REPORTABLE_STATES:
            note = "" if job.state in REPORTABLE_STATES else \
                f" (job already {job.state.value}: no change)"
            self.store.add_event(job.id, "report", summary + note, code=finding.code)
            return
        try:
            if finding.outcome is Outcome.DELIVERED:
                self.store.transition(job.id, JobState.CONFIRMED, event="confirmed",
                                      code=codes.CONFIRMED, detail=summary,
                                      expect=REPORTABLE_STATES)
                return
            code = finding.code or codes.REMOTE_REJECTED
            retry = self.config.retry
            if codes.describe(code).redial and job.attempts < retry.max_attempts:
                wait = backoff_seconds(job.attempts, retry.backoff, retry.jitter, self.rng)
                self.store.transition(job.id, JobState.DEFERRED, event="redial", code=code,
                                      error=summary, detail=f"{summary}; dialled again later",
                                      next_attempt_at=self.clock() + timedelta(seconds=wait),
                                      expect=REPORTABLE_STATES)
                return
            self.store.transition(job.id, JobState.FAILED, event="failed", code=code,
                                  error=summary, detail=summary, expect=REPORTABLE_STATES)
        except JobStateError:
            # Another reader (or a late crash replay) moved it first: the report is history.
            self.store.add_event(job.id, "report", summary, code=finding.code)

    def expire_unconfirmed(self) -> list[str]:
        """Jobs ``sent`` longer ago than ``[inbox] confirm_within``: ``unconfirmed`` (120)."""
        if not self.rules.confirms:
            return []
        before = self.clock() - timedelta(seconds=self.config.inbox.confirm_within)
        moved = []
        for job in self.store.sent_before(before):
            try:
                self.store.transition(
                    job.id, JobState.UNCONFIRMED, event="unconfirmed", code=codes.UNCONFIRMED,
                    detail=f"no report from the fax service within "
                           f"{self.config.inbox.confirm_within / 3600:g} h",
                    expect=[JobState.SENT])
                moved.append(job.id)
            except JobStateError:
                continue
        return moved

