"""The sessions of one send round: per sending mailbox, up to its connection budget.

Each mailbox gets up to ``[limits] connections`` sessions (each authenticated once and reused
for many messages) from the :class:`~faxgw.ports.Transport`, and its messages are paced to
``[limits] messages_per_minute``. Mailboxes do not wait for each other, and a mailbox whose
sign-in is broken pauses alone (:mod:`faxgw.engine.accounts`). What a failed send means is
the failure's :class:`~faxgw.domain.disposition.Disposition`, decided by the transport.

With several runners on one queue (hosts sharing PostgreSQL) both limits hold for all of
them together: a session holds one of its mailbox's slots, and a message its place in the
mailbox's budget, through the store's :class:`~faxgw.domain.cluster.MailboxLimits`
(:mod:`faxgw.engine.limits`). Just before a message goes, its job's history says so
(:data:`~faxgw.domain.cluster.HANDING_OVER`): a claim that ends after that is not sent again.

:class:`MailboxSessions` is the part of the :class:`~faxgw.engine.worker.Worker` that runs
them; the worker owns the rounds around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ..config import Config
from ..domain.cluster import HANDING_OVER, ONE_HOST, Coordination
from ..domain.disposition import Disposition
from ..domain.errors import ConfigError, ConnectError, DeliveryError, JobError, StoreError
from ..domain.jobs import Job
from ..domain.reports import envelope_id_for
from ..ports import Session, Transport
from .accounts import AccountGate
from .limits import message_budget, session_in_slot
from .outcomes import Recorder, RunSummary
from .pacing import MailboxPacer
from .preparer import Preparer

log = logging.getLogger("faxgw.worker")

#: A job refused for "too many connections" this often in one run waits a minute instead.
MAX_THROTTLES_PER_JOB = 2


class MailboxRun:
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


class MailboxSessions:
    """Session loops per mailbox, for a worker that provides the attributes below."""

    config: Config
    transport: Transport
    gate: AccountGate
    recorder: Recorder
    preparer: Preparer
    stopping: bool
    _pacer_factory: Callable[[], MailboxPacer]
    _pacers: dict[str, MailboxPacer]
    #: Open, authenticated sessions between two rounds of one ``send_due``, by mailbox.
    _idle: dict[str, list[Session]]
    #: The mailboxes being sent in the current round; jobs a refill claims for a mailbox
    #: without one wait in ``_pending`` for the next round.
    _runs: dict[str, MailboxRun]
    _pending: list[Job]
    #: The mailboxes' limits (and the turns, and the host list) across runners and hosts:
    #: the store's when it has one (PostgreSQL, set by the composition root); on one host the
    #: pacers alone decide.
    coordination: Coordination = ONE_HOST

    def _claim(self) -> list[Job]:
        raise NotImplementedError

    def _pacer(self, account: str) -> MailboxPacer:
        if account not in self._pacers:
            self._pacers[account] = self._pacer_factory()
        return self._pacers[account]

    async def _send_mailbox(self, run: MailboxRun, summary: RunSummary) -> None:
        pacer = self._pacer(run.account)
        # Sessions left open by the previous round go first; broken ones, and any beyond the
        # mailbox's connection budget (less after a throttle), are closed.
        idle: list[Session] = []
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

    def _top_up(self, run: MailboxRun, pacer: MailboxPacer, summary: RunSummary) -> None:
        """Start session loops for the mailbox's queue, up to its connection budget; open
        sessions from the previous round are used before new ones."""
        wanted = min(pacer.connections, run.sessions + len(run.queue)) - run.sessions
        idle = self._idle.get(run.account, [])
        for _ in range(max(0, wanted)):
            session = idle.pop() if idle else None
            run.sessions += 1
            run.tasks.append(asyncio.ensure_future(
                self._session_loop(run, pacer, summary, session)))

    async def _session_loop(self, run: MailboxRun, pacer: MailboxPacer,
                            summary: RunSummary, session: Session | None = None) -> None:
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

    async def _refill(self, run: MailboxRun, pacer: MailboxPacer,
                      summary: RunSummary) -> bool:
        """The mailbox's queue ran dry while its session is open: claim what has become due
        since (the intake may have taken more) rather than end the round. Jobs go to their
        mailbox's queue in this round, or wait for the next round."""
        if run.down is not None or self.gate.paused(run.account) is not None:
            return False
        jobs = self._claim()
        grown: dict[str, MailboxRun] = {}
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

    async def _send_one(self, job: Job, run: MailboxRun, pacer: MailboxPacer,
                        session: Session | None, summary: RunSummary) -> Session | None:
        """Send one job; return the session to use for the next (None when it broke)."""
        opened_here = False

        async def ready() -> bool:
            """Make ``session`` one that can take the message now (a parked one, or a new
            one in a free slot); False when the worker stops first (the job goes back)."""
            nonlocal session, opened_here
            if session is not None and session.usable:
                return True
            if session is not None:
                await session.close()
            session = await self._slot_session(job, run, pacer)
            if session is None:  # stopping while every slot was held elsewhere
                run.queue.appendleft(job)
                return False
            if not session.usable:  # a new one (a parked one is open already)
                opened_here = True
                await session.open()
                self.gate.resumed(job.sender)
            return True

        try:
            message = await self._prepare(job)
            if not await ready():
                return None
            await pacer.before_message()
            try:
                async with message_budget(self.coordination, run.account,
                                          pacer.messages_per_minute):
                    # The session may have given its slot back while the message waited for
                    # its place (idle, or the database out of reach): another one takes it.
                    if not await ready():
                        return None
                    assert session is not None
                    # Written before the first byte leaves: should this runner stop now and
                    # its lease run out, the job is then unconfirmed, never sent twice.
                    self.recorder.store.add_event(job.id, HANDING_OVER,
                                                  f"to the mail server ({self.transport.name})")
                    accepted = await session.send(message, sender=job.sender,
                                                  recipients=[job.recipient],
                                                  envelope_id=envelope_id_for(job.id))
            finally:
                pacer.after_message()
        except JobError as exc:
            self.recorder.input_failed(job, exc, summary)
        except (ConfigError, StoreError) as exc:
            # Not the job's fault: it goes back to the queue, and the round ends.
            run.queue.appendleft(job)
            if session is not None:
                await session.close()
            raise exc from None
        except DeliveryError as exc:
            return await self._delivery_error(job, exc, run, pacer, session, opened_here,
                                              summary)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the other jobs
            self.recorder.internal_error(job, exc, summary)
        else:
            self.recorder.sent(job, accepted.reply, summary)
        return session

    async def _slot_session(self, job: Job, run: MailboxRun,
                            pacer: MailboxPacer) -> Session | None:
        """A session for the job's mailbox holding one of its connection slots across
        runners: a parked one of this worker's, or a new one (waited for); None when the
        worker is stopping first."""
        return await session_in_slot(
            self.coordination, run.account, pacer.connections,
            new=lambda: self.transport.session(job.sender),
            parked=lambda: self._parked(run.account), stopping=lambda: self.stopping)

    def _parked(self, account: str) -> Session | None:
        """One of the mailbox's open sessions that its loops have parked (looked up anew
        each time: a loop parks its session into whatever list is there then)."""
        sessions = self._idle.get(account)
        return sessions.pop() if sessions else None

    async def _delivery_error(self, job: Job, exc: DeliveryError, run: MailboxRun,
                        pacer: MailboxPacer, session: Session | None, opened_here: bool,
                        summary: RunSummary) -> Session | None:
        """Apply the classification's disposition to a failed send."""
        if exc.disposition.pauses_account:
            self.gate.pause(job.sender, exc, seconds=exc.retry_after)
            self.recorder.wait_for_account(job, exc, summary)
            return session
        if exc.disposition is Disposition.WAIT:
            self.recorder.asked_to_wait(job, exc, summary)
            return session if session is not None and session.usable else None
        if exc.disposition is Disposition.THROTTLE:
            count = pacer.throttle()
            log.warning("↓ %s: server refused a connection (%s); %d session(s) for a while",
                        job.sender, exc.reply or exc.message, count)
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
