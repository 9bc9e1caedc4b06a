"""Recording what happened to a job: sent, deferred with backoff, waiting, failed, expired.

Every outcome is one store transition with its history event and, when there was one, the
server's reply, fenced by the runner's claim (``owner``). When to try again and when to give
up follow ``[retry]`` by the rules of :mod:`faxgw.domain.retry`: backoff with jitter, expiry
with code 520 after ``max_attempts`` attempts or ``max_age`` of trying; waiting for the
account (sign-in, full mailbox) uses neither attempts nor age.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import Config
from ..domain import codes
from ..domain.disposition import Disposition
from ..domain.errors import DeliveryError, JobError, JobStateError
from ..domain.jobs import Job, JobState
from ..domain.retry import backoff_seconds, expiry_reason, jittered
from ..fax.policy import mask, mask_numbers
from ..intake.register import refuse
from ..ports import DocumentStore, JobStore

log = logging.getLogger("faxgw.worker")

#: How soon a job waiting for its account is due again. Zero: it is due at once but not
#: claimed while its account is paused (see accounts.py), so a new sign-in sends it in the
#: next round, and a cron-style run probes the account once per run.
WAIT_RECHECK_SECONDS = 0.0


@dataclass(slots=True)
class RunSummary:
    """What one run did, by outcome."""

    taken: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    waiting_for_auth: int = 0

    def to_json(self) -> dict[str, int]:
        """The counts, as ``faxgw run --once --json`` prints them."""
        return {"taken": self.taken, "sent": self.sent, "deferred": self.deferred,
                "failed": self.failed, "waiting_for_auth": self.waiting_for_auth}


class Recorder:
    """Writes outcomes into the store and counts them into a run summary."""

    def __init__(self, config: Config, store: JobStore, documents: DocumentStore,
                 clock: Callable[[], datetime], rng: random.Random, *, owner: str) -> None:
        self.config = config
        self.store = store
        self.documents = documents
        self.clock = clock
        self.rng = rng
        #: The runner whose claims the outcomes are recorded under.
        self.owner = owner

    def _masked(self, job: Job, text: str | None) -> str | None:
        if text is None:
            return None
        return mask_numbers(text, (job.number, job.recipient), self.config.numbers.mask_digits)

    def _move(self, job: Job, state: JobState, summary: RunSummary, *, code: int | None,
              event: str, detail: str = "", error: str | None = None,
              next_attempt_at: datetime | None = None, count_attempt: bool = False,
              reply: str | None = None, paused: bool = False) -> None:
        fields: dict[str, object] = {}
        if reply:
            fields["last_reply"] = reply
        if paused:
            fields["paused_since"] = job.paused_since or self.clock()
        try:
            self.store.transition(job.id, state, event=event, detail=detail or (error or ""),
                                  code=code, error=error, next_attempt_at=next_attempt_at,
                                  count_attempt=count_attempt, owner=self.owner,
                                  fields=fields or None)
        except JobStateError as exc:
            self._not_recorded(job, event, detail or error or "", exc)
            return
        if state is JobState.SENT:
            summary.sent += 1
        elif state is JobState.FAILED:
            summary.failed += 1
            log.warning("! %s failed (%s): %s", job.id, code, self._masked(job, error))
        elif paused:
            summary.waiting_for_auth += 1
        elif state is JobState.DEFERRED:
            summary.deferred += 1

    def _not_recorded(self, job: Job, event: str, detail: str, exc: JobStateError) -> None:
        """This runner's claim on the job ended (it was taken back while this runner was
        slow, and maybe another has it now): its outcome must not overwrite the job, but
        the history keeps it."""
        log.warning("! %s: %s not recorded: %s", job.id, event, exc)
        self.store.add_event(job.id, f"{event}-not-recorded",
                             f"by a runner that no longer held the job: {detail}".strip())

    def sent(self, job: Job, reply: str, summary: RunSummary) -> None:
        """The server accepted the message."""
        self._move(job, JobState.SENT, summary, code=codes.SENT, event="sent",
                   detail=f"server replied {reply}", count_attempt=True, reply=reply)
        if log.isEnabledFor(logging.INFO):  # masking costs more than the rest of the line
            log.info("← %s sent to %s (%s)", job.id,
                     mask(job.recipient, self.config.numbers.mask_digits),
                     self._masked(job, reply))

    def input_failed(self, job: Job, exc: JobError, summary: RunSummary) -> None:
        """The job's documents cannot be sent as they are: fail, keep the originals."""
        try:
            refuse(self.store, self.documents, job, exc,
                   owner=self.owner if job.state is JobState.SENDING else None)
        except JobStateError as lost:
            self._not_recorded(job, "failed", exc.message, lost)
            return
        summary.failed += 1
        log.warning("! %s failed (%s): %s", job.id, exc.code, self._masked(job, exc.message))

    def internal_error(self, job: Job, exc: BaseException, summary: RunSummary) -> None:
        """A bug: fail the job with its files kept, so that ``faxgw retry`` can resend it."""
        log.error("! %s: unexpected error", job.id, exc_info=exc)
        self._move(job, JobState.FAILED, summary, code=codes.INTERNAL, event="failed",
                   error=f"unexpected error: {type(exc).__name__}: {exc}", count_attempt=True)

    def delivery_failed(self, job: Job, exc: DeliveryError, summary: RunSummary) -> None:
        """The send failed: fail for good, or defer with backoff, or expire."""
        reply = exc.reply
        if exc.ambiguous:
            self.store.add_event(job.id, "possibly-delivered", exc.message, code=exc.code)
        if exc.disposition is Disposition.PERMANENT:
            self._move(job, JobState.FAILED, summary, code=exc.code, error=exc.message,
                       event="rejected", count_attempt=True, reply=reply)
            return
        attempts = job.attempts + 1
        now = self.clock()
        retry = self.config.retry
        why = expiry_reason(job, attempts, now, max_attempts=retry.max_attempts,
                            max_age=retry.max_age)
        if why is not None:
            self._move(job, JobState.FAILED, summary, code=codes.EXPIRED, event="expired",
                       error=f"gave up after {why}; last error: {exc.message}",
                       count_attempt=True, reply=reply)
            return
        delay = backoff_seconds(attempts, retry.backoff, retry.jitter, self.rng,
                                retry_after=exc.retry_after)
        at = now + timedelta(seconds=delay)
        self._move(job, JobState.DEFERRED, summary, code=exc.code, error=exc.message,
                   event="deferred", next_attempt_at=at, count_attempt=True, reply=reply,
                   detail=f"{exc.message}; next attempt at {at.isoformat(timespec='seconds')}")
        log.info("↻ %s deferred (%s) until %s: %s", job.id, exc.code,
                 at.isoformat(timespec="seconds"), self._masked(job, exc.message))

    def wait_for_account(self, job: Job, exc: DeliveryError, summary: RunSummary) -> None:
        """The account cannot send now: the job waits, attempts and age untouched."""
        at = self.clock() + timedelta(seconds=WAIT_RECHECK_SECONDS)
        self._move(job, JobState.DEFERRED, summary, code=exc.code, error=exc.message,
                   event="waiting-for-account", next_attempt_at=at, reply=exc.reply,
                   paused=True)

    def requeue(self, job: Job, why: str) -> None:
        """Give a claimed job back to the queue untouched (nothing was tried)."""
        try:
            self.store.transition(job.id, JobState.QUEUED, event="requeued", detail=why,
                                  code=job.code, error=job.error, owner=self.owner)
        except JobStateError as exc:
            self._not_recorded(job, "requeued", why, exc)

    def asked_to_wait(self, job: Job, exc: DeliveryError, summary: RunSummary) -> None:
        """The server named how long to wait (``Retry-After``): the job waits exactly that
        long, and the wait uses no attempt (it says nothing about the job)."""
        at = self.clock() + timedelta(seconds=exc.retry_after or 0.0)
        self._move(job, JobState.DEFERRED, summary, code=exc.code, error=exc.message,
                   event="throttled", next_attempt_at=at, reply=exc.reply,
                   detail=f"{exc.message}; the server asked to wait until "
                          f"{at.isoformat(timespec='seconds')}")

    def throttled(self, job: Job, exc: DeliveryError, summary: RunSummary,
                  seconds: float = 60.0) -> None:
        """The server asked for fewer connections: try again soon; not the job's fault."""
        at = self.clock() + jittered(seconds, self.config.retry.jitter, self.rng)
        self._move(job, JobState.DEFERRED, summary, code=exc.code, error=exc.message,
                   event="throttled", next_attempt_at=at, reply=exc.reply)
