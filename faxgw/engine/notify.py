"""Telling the submitter how a job ended: a short email through the same transport.

A job with a ``notify`` address is told each outcome ``[notify] on`` names (``failed``,
``confirmed``, ``unconfirmed``), once: the outcome told is stored (``notified``) in the same
step as its history event. A notification is sent from the job's own mailbox, marked as
machine-written (RFC 3834 ``Auto-Submitted``) and with a Message-ID of its own form, so that
a bounce of it or a reply to it is never taken for a report (no loops). The service's report,
when there is one, is attached.
"""

from __future__ import annotations

import email.policy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from ..config import Config
from ..domain import codes
from ..domain.disposition import Disposition
from ..domain.errors import DeliveryError
from ..domain.jobs import Job, JobState
from ..domain.reports import Report
from ..ports import JobStore, ReportStore, Transport

log = logging.getLogger("faxgw.notify")


def outcome_key(job: Job) -> str:
    """The outcome a notification tells, as ``notified`` stores it: ``state:code``."""
    return f"{job.state.value}:{job.code if job.code is not None else ''}"


def notification_bytes(job: Job, report: Report | None, *, now: datetime) -> bytes:
    """The notification email for ``job``'s present outcome."""
    entry = codes.describe(job.code) if job.code is not None and job.code in codes.CODES \
        else None
    domain = job.sender.rpartition("@")[2] or "faxgw.invalid"
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = job.sender
    message["To"] = job.notify
    message["Subject"] = f"Fax to {job.number}: {job.state.value}" + (
        f" ({job.code})" if job.code is not None else "")
    message["Date"] = format_datetime(now)
    message["Message-ID"] = (f"<faxgw-notify.{job.id}.{job.state.value}."
                             f"{int(now.timestamp())}@{domain}>")
    message["Auto-Submitted"] = "auto-generated"
    message["X-Faxgw-Notification"] = job.id
    lines = [
        f"Job:     {job.id}",
        f"Number:  {job.number}",
        f"Pages:   {job.pages if job.pages is not None else '-'}",
        f"State:   {job.state.value}",
        f"Code:    {job.code if job.code is not None else '-'}"
        + (f" {entry.status}" if entry else ""),
    ]
    if job.error:
        lines.append(f"Reason:  {job.error}")
    if entry is not None and job.state is not JobState.CONFIRMED:
        lines += ["", f"What to do: {entry.solution}"]
    if report is not None:
        lines += ["", "The fax service's report is attached."]
    message.set_content("\n".join(lines) + "\n", charset="utf-8", cte="quoted-printable")
    if report is not None and report.raw:
        message.add_attachment(report.raw, maintype="message", subtype="rfc822",
                               filename="report.eml")
    return message.as_bytes()


@dataclass(slots=True)
class NotifySummary:
    """What one round of notifications did."""

    sent: int = 0
    failed: int = 0
    later: int = 0


class Notifier:
    """Sends the notifications that are due (see the module's docstring)."""

    def __init__(self, config: Config, store: JobStore, reports: ReportStore,
                 transport: Transport, *, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.store = store
        self.reports = reports
        self.transport = transport
        self.clock = clock

    async def run_once(self) -> NotifySummary:
        """Tell every submitter whose job reached an outcome they are to be told."""
        summary = NotifySummary()
        states = [JobState(state) for state in self.config.notify.on]
        for job in self.store.to_notify(states):
            reports = self.reports.reports(job_id=job.id, limit=1)
            raw = notification_bytes(job, reports[0] if reports else None, now=self.clock())
            session = self.transport.session(job.sender)
            try:
                await session.open()
                await session.send(raw, sender=job.sender, recipients=[job.notify])
            except DeliveryError as exc:
                if exc.disposition is Disposition.PERMANENT:
                    self.store.update(job.id, notified=outcome_key(job),
                                      event="notification-failed",
                                      detail=f"to {job.notify}: {exc}")
                    summary.failed += 1
                else:
                    # The mailbox cannot send now: the next round tries again.
                    summary.later += 1
                    log.info("notification for job %s waits: %s", job.id, exc)
                continue
            finally:
                await session.close()
            self.store.update(job.id, notified=outcome_key(job), event="notified",
                              detail=f"told {job.notify}: {job.state.value}")
            summary.sent += 1
        return summary
