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
import contextlib
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .accounts import AccountGate
from .auth import CredentialProvider, credentials_fingerprint, make_provider
from .config import Config
from .errors import ConfigError, ConnectError, DeliveryError, JobError
from .intake import register
from .jobs import Job, JobState, utcnow
from .outcomes import Recorder, RunSummary
from .pacing import MailboxPacer
from .preparer import Preparer
from .renderpool import RenderPool
from .spool import Intake, Spool
from .store import JobStore, open_store
from .transport import SmtpSession, tls_context

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
        #: The session loops of this mailbox (more start when its queue grows), and how
        #: many of them are running.
        self.tasks: list[asyncio.Future[None]] = []
        self.sessions = 0


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
        render_processes: int = 0,
    ) -> None:
        """``render_processes`` > 0 renders in that many processes of their own (see
        :mod:`faxgw.renderpool`), started now; 0 renders in threads."""
        self.config = config
        self.spool = Spool(config.spool.dir, settle_seconds=config.spool.settle_seconds,
                           clock=lambda: clock().timestamp())
        self.spool.ensure()
        if config.smtp.security != "none":
            # Load the trust store now, not on the event loop when the first session opens
            # (tens of milliseconds); a ca_file that cannot be loaded is reported then.
            with contextlib.suppress(ConfigError):
                tls_context(config.smtp)
        self.store = store if store is not None else open_store(config, clock=clock)
        self.preparer = Preparer(config, self.spool, self.store,
                                 render_processes=render_processes)
        self.credentials = credentials if credentials is not None else make_provider(config)
        self.clock = clock
        self.recorder = Recorder(config, self.store, self.spool, clock, rng or random.Random())
        self.gate = AccountGate(lambda: credentials_fingerprint(config), clock)
        self._pacer_factory = pacer_factory or (lambda: MailboxPacer(
            connections=config.limits.connections,
            messages_per_minute=config.limits.messages_per_minute))
        self._pacers: dict[str, MailboxPacer] = {}
        #: Open, authenticated sessions between two rounds of one ``send_due``, by mailbox.
        self._idle: dict[str, list[SmtpSession]] = {}
        #: The mailboxes being sent in the current round; jobs a refill claims for a
        #: mailbox without one wait in ``_pending`` for the next round.
        self._runs: dict[str, _MailboxRun] = {}
        self._pending: list[Job] = []
        self._started = False
        #: Set by a shutdown: sessions finish the message under way and take no more.
        self.stopping = False

    @property
    def render_pool(self) -> RenderPool | None:
        """The render processes (``faxgw run``), or None when rendering in threads."""
        return self.preparer.render_pool

    def _claim(self) -> list[Job]:
        """Claim due jobs, except those of paused mailboxes and those still rendering."""
        return self.store.claim_due(self.clock(), CLAIM_BATCH,
                                    exclude_senders=self.gate.paused_accounts(),
                                    exclude_ids=self.preparer.rendering)

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

    async def _render(self, job: Job, summary: RunSummary) -> Job | None:
        """Render, pre-flight and build one job; a job that cannot pass fails now (None)."""
        try:
            return await self.preparer.render(job)
        except JobError as exc:
            self.recorder.input_failed(job, exc, summary)
            return None

    # -- sending -------------------------------------------------------------------------

    async def run_once(self) -> RunSummary:
        """Take the intake, send everything that is due now, and return.

        Intake and sending overlap: the first jobs taken are on their way while later files
        are still being taken and rendered.
        """
        if not self._started:
            self.startup()
        summary = RunSummary()
        progress = asyncio.Event()
        intake = asyncio.ensure_future(self._take_intake_overlapped(summary, progress))
        try:
            await self.send_due(summary, intake=intake, progress=progress)
        finally:
            if not intake.done():
                intake.cancel()
            await asyncio.gather(intake, return_exceptions=True)
            # Messages of jobs not sent in this run (deferred, paused) are built anew when
            # they are due: their Date is then the date they leave.
            self.preparer.forget_messages()
        intake.result()  # an intake error (the spool cannot be written) is not swallowed
        return summary

    async def _take_intake_overlapped(self, summary: RunSummary,
                                      progress: asyncio.Event) -> None:
        """Take the intake while the sessions send: files are taken in a thread (renames
        and fsyncs); each batch is registered and rendered (claims pass over its jobs until
        they are rendered), and ``progress`` is set after each batch and at the end."""
        loop = asyncio.get_running_loop()
        taken: asyncio.Queue[Intake | None] = asyncio.Queue()
        stop = threading.Event()

        def scan() -> None:
            try:
                for intake in self.spool.scan_iter():
                    loop.call_soon_threadsafe(taken.put_nowait, intake)
                    if stop.is_set():
                        return  # the rest is taken next time
            finally:
                loop.call_soon_threadsafe(taken.put_nowait, None)

        scanning = asyncio.ensure_future(asyncio.to_thread(scan))
        batch_size = self.preparer.concurrency  # as many as render at once
        done = False
        try:
            while not done:
                batch = [await taken.get()]
                while len(batch) < batch_size and not taken.empty():
                    batch.append(taken.get_nowait())
                if batch[-1] is None:
                    done = True
                await self._register_and_render(
                    [intake for intake in batch if intake is not None], summary)
                progress.set()
        finally:
            progress.set()
            stop.set()
            if not scanning.done():
                # Finish the job the thread is taking, and register what it took: a folder
                # in jobs/ without a record would wait for the next start-up.
                await asyncio.shield(scanning)
                rest = [taken.get_nowait() for _ in range(taken.qsize())]
                await self._register_and_render([i for i in rest if i is not None], summary)
        await scanning

    async def _register_and_render(self, intakes: list[Intake], summary: RunSummary) -> None:
        if not intakes:
            return
        jobs = []
        for intake in intakes:
            job = register(intake, config=self.config, store=self.store, spool=self.spool)
            # No await between the two: no claim can come in between and take the job.
            if job.state is JobState.QUEUED:
                self.preparer.rendering.add(job.id)
            jobs.append(job)
        summary.taken += len(jobs)
        try:
            # Jobs taken before these may be claimed and sent meanwhile.
            await asyncio.gather(*(self._render(job, summary) for job in jobs
                                   if job.state is JobState.QUEUED))
        finally:
            self.preparer.rendering.difference_update(job.id for job in jobs)

    async def send_due(self, summary: RunSummary, intake: asyncio.Future[None] | None = None,
                       progress: asyncio.Event | None = None) -> None:
        """Send every job that is due, mailbox by mailbox in parallel, until none is left
        (and the ``intake`` under way, if any, has taken every file; it sets ``progress``
        whenever it has registered more)."""
        try:
            await self._send_rounds(summary, intake, progress)
        finally:
            pending, self._pending = self._pending, []
            for job in pending:
                self.recorder.requeue(job, "not tried in this round")
            idle, self._idle = self._idle, {}
            for sessions in idle.values():
                for session in sessions:
                    await session.close()

    async def _send_rounds(self, summary: RunSummary, intake: asyncio.Future[None] | None,
                           progress: asyncio.Event | None) -> None:
        while True:
            jobs = self._claim()
            jobs, self._pending = self._pending + jobs, []
            if not jobs:
                if intake is None or progress is None or intake.done() or self.stopping:
                    return
                # More is being taken: wait until some of it is registered, or all is.
                waiter = asyncio.ensure_future(progress.wait())
                waiting: set[asyncio.Future[Any]] = {intake, waiter}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                progress.clear()
                continue
            by_account: dict[str, list[Job]] = {}
            for job in jobs:
                by_account.setdefault(job.sender.lower(), []).append(job)
            runs = [_MailboxRun(account, group) for account, group in by_account.items()]
            self._runs = {run.account: run for run in runs}
            try:
                results = await asyncio.gather(
                    *(self._send_mailbox(run, summary) for run in runs), return_exceptions=True
                )
            finally:
                # Whatever stopped a round (a configuration error, a shutdown), no claimed job
                # may stay in ``sending``: give back what was not tried.
                self._runs = {}
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
        # Sessions left open by the previous round go first; broken ones, and any beyond the
        # mailbox's connection budget (less after a throttle), are closed.
        idle: list[SmtpSession] = []
        for session in self._idle.pop(run.account, []):
            if session.usable and len(idle) < pacer.connections:
                idle.append(session)
            else:
                await session.close()
        if idle:
            self._idle[run.account] = idle
        self._top_up(run, pacer, summary)
        try:
            while running := [task for task in run.tasks if not task.done()]:
                await asyncio.wait(running)
        finally:
            for task in run.tasks:
                task.cancel()  # only those still running: a shutdown or an error above
            results = await asyncio.gather(*run.tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _top_up(self, run: _MailboxRun, pacer: MailboxPacer, summary: RunSummary) -> None:
        """Start session loops for the mailbox's queue, up to its connection budget; open
        sessions from the previous round are used before new ones."""
        wanted = min(pacer.connections, run.sessions + len(run.queue)) - run.sessions
        idle = self._idle.get(run.account, [])
        for _ in range(max(0, wanted)):
            session = idle.pop() if idle else None
            run.sessions += 1
            run.tasks.append(asyncio.ensure_future(
                self._session_loop(run, pacer, summary, session)))

    async def _session_loop(self, run: _MailboxRun, pacer: MailboxPacer,
                            summary: RunSummary, session: SmtpSession | None = None) -> None:
        """One session of a mailbox: take its jobs one by one until none are left.

        The session stays open for the next round of the same ``send_due`` unless it was
        throttled or the worker is stopping.
        """
        keep = True
        pacer.active += 1
        try:
            while not self.stopping:
                if not run.queue and (session is None
                                      or not await self._refill(run, pacer, summary)):
                    break
                if pacer.over_capacity():
                    keep = False
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
            run.sessions -= 1
            if session is not None:
                if keep and session.usable and not self.stopping:
                    self._idle.setdefault(run.account, []).append(session)
                else:
                    await session.close()

    async def _refill(self, run: _MailboxRun, pacer: MailboxPacer,
                      summary: RunSummary) -> bool:
        """The mailbox's queue ran dry while its session is open: claim what has become due
        since (the intake may have taken more) rather than end the round. Jobs go to their
        mailbox's queue in this round, or wait for the next round."""
        if run.down is not None or self.gate.paused(run.account) is not None:
            return False
        jobs = self._claim()
        grown: dict[str, _MailboxRun] = {}
        for job in jobs:
            target = self._runs.get(job.sender.lower())
            if target is None or target.down is not None:
                self._pending.append(job)
            else:
                target.queue.append(job)
                grown[target.account] = target
        for target in grown.values():  # more work: more of the mailbox's sessions
            self._top_up(target, self._pacer(target.account), summary)
        return bool(run.queue)

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
            for idle in self._idle.pop(job.sender.lower(), []):
                await idle.close()  # the server counts idle sessions too
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
        """The job's message as bytes (see :meth:`Preparer.message`)."""
        return await self.preparer.message(job)

    # -- housekeeping --------------------------------------------------------------------

    def purge(self) -> list[str]:
        """Delete finished jobs older than ``[limits] retention``, with their files."""
        before = self.clock() - timedelta(seconds=self.config.limits.retention)
        removed = self.store.purge(before)
        for job_id in removed:
            self.spool.remove(job_id)
        if removed:
            log.info("purged %d finished job(s) older than the retention", len(removed))
        return removed

    def close(self) -> None:
        """Release the store, the render processes and the credential provider's
        connections."""
        self.preparer.close()
        self.store.close()
        close = getattr(self.credentials, "close", None)
        if close is not None:
            close()


def reply_text(exc: DeliveryError) -> str:
    """The server's reply, or the error text when there was none."""
    return f"{exc.smtp_code} {exc.smtp_message}" if exc.smtp_code else exc.message

