"""The worker: take the intake, send what is due, and record every outcome.

``run_once`` is burst mode (take what is there, send what is due, return): tests and
cron-style retry runs use it; ``faxgw run`` repeats it on a schedule (``scheduler.py``).
Crash recovery happens in :meth:`Worker.startup`: jobs left in ``sending`` go back to the
queue, and job folders the store does not know are registered.

Sending fans out per sending mailbox: each mailbox gets up to ``[limits] connections``
sessions (each authenticated once and reused for many messages), and its messages are paced
to ``[limits] messages_per_minute``. Mailboxes do not wait for each other, and a mailbox
whose sign-in is broken pauses alone (:mod:`faxgw.accounts`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import deque
from collections.abc import Callable
from datetime import datetime
from email.generator import BytesGenerator
from io import BytesIO

from .accounts import AccountGate
from .auth import CredentialProvider, credentials_fingerprint, make_provider
from .config import Config
from .errors import ConfigError, ConnectError, DeliveryError, JobError
from .intake import register
from .jobs import Job, JobState, utcnow
from .mail import compose
from .outcomes import Recorder, RunSummary
from .pacing import MailboxPacer
from .prepare import attachment_for, record_rendered, render_job
from .profiles import rules_for
from .spool import Spool
from .store import JobStore, open_store
from .transport import SmtpSession

log = logging.getLogger("faxgw.worker")

#: Jobs claimed per round; the rest are claimed when these are done.
CLAIM_BATCH = 500
#: A job refused for "too many connections" this often in one run waits a minute instead.
MAX_THROTTLES_PER_JOB = 2

__all__ = ["RunSummary", "Worker"]


class _MailboxRun:
    """The jobs of one mailbox in one round, shared by that mailbox's sessions."""

    def __init__(self, account: str, jobs: list[Job]) -> None:
        self.account = account
        self.queue: deque[Job] = deque(jobs)
        self.throttles: dict[str, int] = {}
        #: Set when the mailbox cannot be reached at all: the rest of its jobs defer with it.
        self.down: DeliveryError | None = None


class Worker:
    """One gateway worker over a spool, a job store and a mail server."""

    def __init__(
        self,
        config: Config,
        *,
        store: JobStore | None = None,
        credentials: CredentialProvider | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        pacer_factory: Callable[[], MailboxPacer] | None = None,
    ) -> None:
        self.config = config
        self.spool = Spool(config.spool.dir, settle_seconds=config.spool.settle_seconds,
                           clock=lambda: clock().timestamp())
        self.spool.ensure()
        self.store = store if store is not None else open_store(config, clock=clock)
        self.credentials = credentials if credentials is not None else make_provider(config)
        self.clock = clock
        self.recorder = Recorder(config, self.store, self.spool, clock, rng or random.Random())
        self.gate = AccountGate(lambda: credentials_fingerprint(config), clock)
        self._pacer_factory = pacer_factory or (lambda: MailboxPacer(
            connections=config.limits.connections,
            messages_per_minute=config.limits.messages_per_minute))
        self._pacers: dict[str, MailboxPacer] = {}
        self.rules = rules_for(config.service)
        # Rendering is CPU work in threads (pdfium in a process): a few at a time.
        self._render_slots = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))
        self._started = False
        #: Set by a shutdown: sessions finish the message under way and take no more.
        self.stopping = False

    # -- start-up and intake -------------------------------------------------------------

    def startup(self) -> None:
        """Recover from a stop: requeue ``sending`` jobs, register orphaned job folders."""
        for job_id in self.store.recover_sending():
            log.warning("↻ %s was being sent when the gateway stopped: queued again", job_id)
        for intake in self.spool.recover():
            if not self.store.exists(intake.id):
                log.warning("↻ %s: job folder without a job record: registered again", intake.id)
                register(intake, config=self.config, store=self.store, spool=self.spool)
        self._started = True

    async def take_intake(self, summary: RunSummary | None = None) -> list[Job]:
        """Take every settled file from the intake folders into the queue, rendered and
        checked against the service's limits (pre-flight)."""
        jobs = [register(intake, config=self.config, store=self.store, spool=self.spool)
                for intake in self.spool.scan()]
        summary = summary or RunSummary()
        await asyncio.gather(*(self._render(job, summary) for job in jobs
                               if job.state is JobState.QUEUED))
        return jobs

    async def _render(self, job: Job, summary: RunSummary) -> Job | None:
        """Render and pre-flight one job; a job that cannot pass fails now (None)."""
        async with self._render_slots:
            try:
                rendered = await asyncio.to_thread(render_job, job, self.spool, self.config)
            except JobError as exc:
                self.recorder.input_failed(job, exc, summary)
                return None
        return record_rendered(self.store, job, rendered)

    # -- sending -------------------------------------------------------------------------

    async def run_once(self) -> RunSummary:
        """Take the intake, send everything that is due now, and return."""
        if not self._started:
            self.startup()
        summary = RunSummary()
        summary.taken = len(await self.take_intake(summary))
        await self.send_due(summary)
        return summary

    async def send_due(self, summary: RunSummary) -> None:
        """Send every job that is due, mailbox by mailbox in parallel, until none is left."""
        while True:
            jobs = self.store.claim_due(self.clock(), CLAIM_BATCH,
                                        exclude_senders=self.gate.paused_accounts())
            if not jobs:
                return
            by_account: dict[str, list[Job]] = {}
            for job in jobs:
                by_account.setdefault(job.sender.lower(), []).append(job)
            runs = [_MailboxRun(account, group) for account, group in by_account.items()]
            try:
                results = await asyncio.gather(
                    *(self._send_mailbox(run, summary) for run in runs), return_exceptions=True
                )
            finally:
                # Whatever stopped a round (a configuration error, a shutdown), no claimed job
                # may stay in ``sending``: give back what was not tried.
                for run in runs:
                    while run.queue:
                        self.recorder.requeue(run.queue.popleft(), "not tried in this round")
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if self.stopping:
                return

    def _pacer(self, account: str) -> MailboxPacer:
        if account not in self._pacers:
            self._pacers[account] = self._pacer_factory()
        return self._pacers[account]

    async def _send_mailbox(self, run: _MailboxRun, summary: RunSummary) -> None:
        pacer = self._pacer(run.account)
        sessions = min(pacer.connections, len(run.queue))
        results = await asyncio.gather(
            *(self._session_loop(run, pacer, summary) for _ in range(sessions)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _session_loop(self, run: _MailboxRun, pacer: MailboxPacer,
                            summary: RunSummary) -> None:
        """One session of a mailbox: take its jobs one by one until none are left."""
        session: SmtpSession | None = None
        pacer.active += 1
        try:
            while run.queue and not self.stopping:
                if pacer.over_capacity():
                    return  # throttled: fewer sessions for this mailbox now
                job = run.queue.popleft()
                if run.down is not None:
                    self.recorder.delivery_failed(job, run.down, summary)
                    continue
                pause = self.gate.paused(run.account)
                if pause is not None:
                    self.recorder.wait_for_account(
                        job, DeliveryError(pause.message, code=pause.code), summary)
                    continue
                session = await self._send_one(job, run, pacer, session, summary)
        finally:
            pacer.active -= 1
            if session is not None:
                await session.close()

    async def _send_one(self, job: Job, run: _MailboxRun, pacer: MailboxPacer,
                        session: SmtpSession | None, summary: RunSummary) -> SmtpSession | None:
        """Send one job; return the session to use for the next (None when it broke)."""
        opened_here = False
        try:
            message = await self._prepare(job)
            if session is None or not session.usable:
                if session is not None:
                    await session.close()
                session = SmtpSession(self.config.smtp, self.credentials, job.sender)
                opened_here = True
                await session.open()
                self.gate.resumed(job.sender)
            await pacer.before_message()
            try:
                reply = await session.send(message, sender=job.sender,
                                           recipients=[job.recipient])
            finally:
                pacer.after_message()
        except JobError as exc:
            self.recorder.input_failed(job, exc, summary)
        except ConfigError as exc:
            run.queue.appendleft(job)
            raise exc from None
        except DeliveryError as exc:
            return await self._delivery_error(job, exc, run, pacer, session, opened_here,
                                              summary)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the other jobs
            self.recorder.internal_error(job, exc, summary)
        else:
            self.recorder.sent(job, reply, summary)
        return session

    async def _delivery_error(self, job: Job, exc: DeliveryError, run: _MailboxRun,
                        pacer: MailboxPacer, session: SmtpSession | None, opened_here: bool,
                        summary: RunSummary) -> SmtpSession | None:
        """Apply the classification's disposition to a failed send."""
        if exc.disposition in ("auth", "pause"):
            self.gate.pause(job.sender, exc, seconds=exc.retry_after)
            self.recorder.wait_for_account(job, exc, summary)
            return session
        if exc.disposition == "throttle":
            count = pacer.throttle()
            log.warning("↓ %s: server refused a connection (%s); %d session(s) for a while",
                        job.sender, reply_text(exc), count)
            run.throttles[job.id] = run.throttles.get(job.id, 0) + 1
            if run.throttles[job.id] >= MAX_THROTTLES_PER_JOB:
                self.recorder.throttled(job, exc, summary)
            else:
                run.queue.appendleft(job)
            if session is not None:
                await session.close()
            return None  # this session gives way
        if isinstance(exc, ConnectError) and opened_here:
            # Not even a session: the mailbox's other jobs share this fate for now.
            run.down = exc
        self.recorder.delivery_failed(job, exc, summary)
        if session is not None and not session.usable:
            await session.close()
            return None
        return session

    async def _prepare(self, job: Job) -> bytes:
        """The job's message as bytes. The attachment was made at intake; it is made again
        only when it is missing (a job folder recovered, a job sent again by retry)."""
        attachment = attachment_for(job, self.spool, self.rules)
        if job.pages is None or not attachment.exists():
            async with self._render_slots:
                rendered = await asyncio.to_thread(render_job, job, self.spool, self.config)
            job = record_rendered(self.store, job, rendered)
            attachment = rendered.path
        buffer = BytesIO()
        BytesGenerator(buffer).flatten(compose(job, attachment, body=self.rules.body))
        return buffer.getvalue()

    # -- housekeeping --------------------------------------------------------------------

    def purge(self) -> list[str]:
        """Delete finished jobs older than ``[limits] retention``, with their files."""
        from datetime import timedelta

        before = self.clock() - timedelta(seconds=self.config.limits.retention)
        removed = self.store.purge(before)
        for job_id in removed:
            self.spool.remove(job_id)
        if removed:
            log.info("purged %d finished job(s) older than the retention", len(removed))
        return removed

    def close(self) -> None:
        """Release the store and the credential provider's connections."""
        self.store.close()
        close = getattr(self.credentials, "close", None)
        if close is not None:
            close()


def reply_text(exc: DeliveryError) -> str:
    """The server's reply, or the error text when there was none."""
    return f"{exc.smtp_code} {exc.smtp_message}" if exc.smtp_code else exc.message

