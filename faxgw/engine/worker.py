"""The worker: take the intake, send what is due, and record every outcome.

``run_once`` is burst mode (take what is there, send what is due, return): tests and
cron-style retry runs use it; ``faxgw run`` repeats it on a schedule (``scheduler.py``).
Crash recovery happens in :meth:`Worker.startup`: jobs left in ``sending`` go back to the
queue, and job folders the store does not know are registered.

The worker is handed its parts (:mod:`faxgw.app.wiring` builds them from the configuration):
a :class:`~faxgw.ports.JobStore`, the spool (drop folders and job files), a
:class:`~faxgw.ports.Transport` and a :class:`~faxgw.ports.CredentialProvider`. It claims
jobs as one runner (``owner``) with a lease, and records each outcome under that claim.
Sending fans out per sending mailbox (:mod:`faxgw.engine.sessions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..config import Config
from ..domain import codes
from ..domain.errors import JobError, StoreError
from ..domain.jobs import Job, JobState, utcnow
from ..domain.retry import age_from_after_wait
from ..intake.job_file import Intake
from ..intake.register import register, register_all
from ..intake.spool import Spool
from ..ports import CredentialProvider, JobStore, Session, Transport
from .accounts import AccountGate
from .observe import Observations
from .outcomes import Recorder, RunSummary
from .pacing import MailboxPacer
from .preparer import Preparer
from .renderpool import DocumentsFactory, RenderPool
from .runners import Liveness, RunnerLock, liveness, runner_id
from .sessions import MailboxRun, MailboxSessions
from .taking import take

log = logging.getLogger("faxgw.worker")

#: Jobs claimed per round; the rest are claimed when these are done.
CLAIM_BATCH = 500
#: How long a claim holds without being renewed, unless ``[store] lease_seconds`` says
#: otherwise. A runner renews its claims every third of it while it works (the heartbeat);
#: a runner on another host whose claims were not renewed this long is taken to be gone.
LEASE_SECONDS = 60.0
#: How often a long-running worker looks for claims and marks of runners that are gone.
REAP_SECONDS = 10.0

__all__ = ["RunSummary", "Worker"]


class Worker(MailboxSessions):
    """One gateway worker over a spool, a job store and a transport."""

    def __init__(
        self,
        config: Config,
        *,
        store: JobStore,
        spool: Spool,
        transport: Transport,
        credentials: CredentialProvider,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        pacer_factory: Callable[[], MailboxPacer] | None = None,
        render_processes: int = 0,
        open_documents: DocumentsFactory | None = None,
        owner: str | None = None,
        observations: Observations | None = None,
    ) -> None:
        """``render_processes`` > 0 renders in that many processes of their own (see
        :mod:`faxgw.engine.renderpool`), started now, which open the job files with
        ``open_documents``; 0 renders in threads. Render durations go to ``observations``
        (send durations and sessions: the transport, when it is an observed one)."""
        self.config = config
        self.lease_seconds = config.store.lease_seconds
        self.spool = spool  # made ready (Spool.ensure) before the store was opened in it
        self.transport = transport
        self.transport.warm()
        self.store = store
        self.owner = owner or runner_id()
        #: Held while this runner lives: other runners on this host see it is alive.
        self.runner_lock = RunnerLock(spool.layout.state / "runners", self.owner)
        #: Jobs claimed by this runner and maybe still held (renewed by the heartbeat).
        self._claimed: set[str] = set()
        self._reaped_at = float("-inf")
        self.observations = observations if observations is not None else Observations()
        self.preparer = Preparer(config, spool, store, render_processes=render_processes,
                                 open_documents=open_documents,
                                 observations=self.observations)
        self.credentials = credentials
        self.clock = clock
        self.recorder = Recorder(config, store, spool, clock, rng or random.Random(),
                                 owner=self.owner)
        self.gate = AccountGate(credentials.fingerprint, clock)
        self._pacer_factory = pacer_factory or (lambda: MailboxPacer(
            connections=config.limits.connections,
            messages_per_minute=config.limits.messages_per_minute))
        self._pacers: dict[str, MailboxPacer] = {}
        self._idle: dict[str, list[Session]] = {}
        self._runs: dict[str, MailboxRun] = {}
        self._pending: list[Job] = []
        self._started = False
        #: Set by a shutdown: sessions finish the message under way and take no more.
        self.stopping = False

    @property
    def render_pool(self) -> RenderPool | None:
        """The render processes (``faxgw run``), or None when rendering in threads."""
        return self.preparer.render_pool

    def _claim(self) -> list[Job]:
        """Claim due jobs, except those of paused mailboxes (the store passes over jobs still
        being prepared). A job that waited for its account has its age moved forward by the
        wait (:func:`~faxgw.domain.retry.age_from_after_wait`)."""
        now = self.clock()
        with self.observations.timed(self.observations.claim):
            jobs = self.store.claim_due(now, CLAIM_BATCH, owner=self.owner,
                                        lease_until=now + timedelta(seconds=self.lease_seconds),
                                        exclude_senders=self.gate.paused_accounts())
        for job in jobs:
            self._claimed.add(job.id)
            if job.paused_since is not None:
                job.age_from, job.paused_since = age_from_after_wait(job, now), None
                self.store.update(job.id, age_from=job.age_from, paused_since=None)
        return jobs

    async def _heartbeat(self) -> None:
        """Renew this runner's claims every third of a lease, while a run lasts."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self._claimed:
                continue
            until = self.clock() + timedelta(seconds=self.lease_seconds)
            try:
                # On the loop, like every store call of the engine: a store's connection
                # belongs to the thread that opened it (SQLite checks that).
                held = self.store.renew(self.owner, list(self._claimed), until)
            except Exception as exc:  # noqa: BLE001 - a missed beat is tried again next time
                log.warning("! the claims could not be renewed: %s", exc)
                continue
            self._claimed.intersection_update(held)

    def reap(self) -> None:
        """Take back the claims and ``preparing`` marks of runners that are gone.

        A runner on this host is gone when its lock is free (it ended, however it ended):
        its claims go back to the queue at once. A runner on another host cannot be asked:
        its claims go back once their lease has ended. Either way the job's history says it
        was recovered and may have been delivered already (at least once, never silently).
        """
        self._reaped_at = time.monotonic()
        folder = self.spool.layout.state / "runners"
        gone: list[str] = []
        elsewhere: list[str] = []
        for owner in self.store.claim_owners() - {self.owner}:
            state = liveness(folder, owner)
            if state is Liveness.GONE:
                gone.append(owner)
            elif state is Liveness.ELSEWHERE:
                elsewhere.append(owner)
        recovered = self.store.recover_sending(owners=gone)
        if elsewhere:
            recovered += self.store.recover_sending(owners=elsewhere,
                                                    lease_ended_by=self.clock())
        for job_id in recovered:
            log.warning("↻ %s: the runner sending it is gone: queued again (possibly "
                        "delivered already)", job_id)
        for job_id in self.store.recover_preparing(owners=gone):
            log.info("↻ %s was being rendered by a runner that is gone: it is rendered when "
                     "it is sent", job_id)

    # -- start-up and intake -------------------------------------------------------------

    def startup(self) -> None:
        """Recover from a stop: take back the claims of runners that are gone (:meth:`reap`),
        register orphaned job folders."""
        self.reap()
        for intake in self.spool.recover(self.store.unknown):
            if self.store.exists(intake.id):
                self.spool.registered([intake.id])
                continue
            log.warning("↻ %s: job folder without a job record: registered again", intake.id)
            try:
                register(intake, config=self.config, store=self.store, documents=self.spool)
                self.spool.registered([intake.id])
            except StoreError:
                # Another runner registered it between our look and our add (its folder is
                # in jobs/ a moment before its record); only a job still unknown is an error.
                if not self.store.exists(intake.id):
                    raise
                log.info("%s was registered by another runner meanwhile", intake.id)
        self._started = True

    async def _render(self, job: Job, summary: RunSummary) -> None:
        """Render, pre-flight and build one job; a job that cannot pass fails now, and so
        does one whose render fails in a way nobody foresaw (its own job, not the round)."""
        try:
            await self.preparer.render(job)
        except JobError as exc:
            self.recorder.input_failed(job, exc, summary)
        except Exception as exc:  # noqa: BLE001 - one job's fault never ends the round
            log.error("! %s: rendering failed unexpectedly", job.id, exc_info=exc)
            self.recorder.input_failed(job, JobError(
                f"rendering failed unexpectedly: {type(exc).__name__}: {exc}",
                code=codes.INTERNAL), summary)
        except BaseException:
            # A stop: the job is rendered when it is sent.
            self.store.update(job.id, preparing=None)
            raise

    def _register(self, intake: Intake) -> Job | None:
        """Register one taken job folder; whatever goes wrong with it, it is answered: it
        fails with a code and the cause, its files kept (None only when even that fails,
        which is logged; the folder is registered again at the next start)."""
        try:
            return register(intake, config=self.config, store=self.store,
                            documents=self.spool, preparing=self.owner)
        except Exception as exc:  # noqa: BLE001 - one item never stops the intake
            log.error("! %s: could not be registered", intake.id, exc_info=exc)
            if self.store.exists(intake.id):
                return None
            intake.error_code = intake.error_code or codes.INTERNAL
            intake.error = f"could not be registered: {type(exc).__name__}: {exc}"
            try:
                return register(intake, config=self.config, store=self.store,
                                documents=self.spool)
            except Exception as again:  # noqa: BLE001
                log.error("! %s: could not be recorded as failed either (%s); it is "
                          "registered again at the next start", intake.id, again)
                return None

    # -- sending -------------------------------------------------------------------------

    async def run_once(self) -> RunSummary:
        """Take the intake, send everything that is due now, and return.

        Intake and sending overlap: the first jobs taken are on their way while later files
        are still being taken and rendered.
        """
        if not self._started:
            self.startup()
        elif time.monotonic() - self._reaped_at >= REAP_SECONDS:
            self.reap()
        summary = RunSummary()
        progress = asyncio.Event()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        intake = asyncio.ensure_future(self._take_intake_overlapped(summary, progress))
        try:
            await self.send_due(summary, intake=intake, progress=progress)
        finally:
            heartbeat.cancel()
            if not intake.done():
                intake.cancel()
            await asyncio.gather(intake, heartbeat, return_exceptions=True)
            # Messages of jobs not sent in this run (deferred, paused) are built anew when
            # they are due: their Date is then the date they leave.
            self.preparer.forget_messages()
        # An intake error (the spool cannot be written) is not swallowed; an intake cut short
        # by a stop is not an error: what it had not taken is taken next time.
        if not intake.cancelled():
            intake.result()
        return summary

    async def _take_intake_overlapped(self, summary: RunSummary,
                                      progress: asyncio.Event) -> None:
        """Take the intake while the sessions send (:func:`~faxgw.engine.taking.take`)."""
        await take(self.spool.scan_batches, lambda intakes: self._register_batch(intakes, summary),
                   self.store.get, lambda job: self._render(job, summary), self._unmark,
                   progress, renderers=self.preparer.concurrency)

    def _unmark(self, job_id: str) -> None:
        """A render that did not happen: the job is rendered when it is sent."""
        with contextlib.suppress(Exception):
            if self.store.get(job_id).preparing == self.owner:
                self.store.update(job_id, preparing=None)

    def _register_batch(self, intakes: list[Intake], summary: RunSummary) -> list[Job]:
        """Register taken job folders; the queued ones, to be rendered. Registered as being
        prepared by this runner: no claim takes them before they are rendered, while jobs
        taken before these may be claimed and sent meanwhile."""
        try:
            # One transaction for the batch; should any of them spoil it (a store that
            # refuses one), each is registered, and answered, on its own.
            jobs = register_all(intakes, config=self.config, store=self.store,
                                documents=self.spool, preparing=self.owner)
        except Exception as exc:  # noqa: BLE001 - one item never stops the intake
            log.debug("registering %d job(s) together failed (%s): one by one", len(intakes),
                      exc)
            jobs = [job for job in map(self._register, intakes) if job is not None]
        self.spool.registered(job.id for job in jobs)
        summary.taken += len(jobs)
        return [job for job in jobs if job.state is JobState.QUEUED]

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
            runs = [MailboxRun(account, group) for account, group in by_account.items()]
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
        """Release the store, the render processes, the credential provider's connections
        and this runner's lock."""
        self.preparer.close()
        self.store.close()
        self.credentials.close()
        self.runner_lock.release()

