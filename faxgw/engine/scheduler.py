"""``faxgw run``: the periodic work, driven by APScheduler 3.

The scheduler only *wakes* the work; it never runs a send itself. APScheduler 3 skips runs
that are late by more than ``misfire_grace_time`` and cancels running coroutines at shutdown:
a send started by the scheduler could be dropped or cut in half. So the sends run in one loop
owned by :class:`Service`, which the scheduler's jobs wake, and which on shutdown finishes the
message under way and returns the rest of the round to the queue. When each job is due is
recorded in the job store (``next_attempt_at``), not in the scheduler: a skipped or lost wake-up
only delays a retry until the next one, a second later.

Scheduled work:
- every second: intake scan and retry sweep (send what is due);
- every ``[auth] keepalive_days`` (oauth2): refresh the tokens of every signed-in account, so an
  idle gateway never reaches the identity provider's inactivity limit;
- every hour: purge finished jobs older than ``[limits] retention``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .worker import Worker

log = logging.getLogger("faxgw.scheduler")

SWEEP_SECONDS = 1.0
#: Each sweep comes up to this part of :data:`SWEEP_SECONDS` late, at random: runners that
#: share a spool or a database and started at nearly the same moment would otherwise sweep
#: in the same order every time, and the first would take every job that became due.
SWEEP_JITTER = 0.5
PURGE_SECONDS = 3600.0
#: A round that keeps failing the same way is logged once per this long.
REPEAT_LOG_SECONDS = 300.0


class Service:
    """The long-running gateway: a worker woken by a scheduler until told to stop."""

    def __init__(self, worker: Worker, *, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self.worker = worker
        self.sweep_seconds = sweep_seconds
        self._wake = asyncio.Event()
        self.rounds = 0
        #: When the last round finished without crashing (UTC); None before the first.
        self.last_round_at: datetime | None = None
        self.keepalives = 0
        #: The last crashed round's failure and when it was logged.
        self._last_failure: tuple[str, float] | None = None

    def wake(self) -> None:
        """Start a round now (a job became due: another host's intake, a retry)."""
        self._wake.set()

    def _jobs(self) -> list[dict[str, Any]]:
        # misfire_grace_time=None: a late wake-up still runs; coalesce: several missed ones
        # run once; max_instances=1: never two of the same at once.
        common: dict[str, Any] = {"misfire_grace_time": None, "coalesce": True,
                                  "max_instances": 1}
        jobs: list[dict[str, Any]] = [
            {"func": self._wake.set, "trigger": "interval", "seconds": self.sweep_seconds,
             "jitter": self.sweep_seconds * SWEEP_JITTER, "id": "sweep",
             "next_run_time": datetime.now().astimezone(), **common},
            {"func": self._purge, "trigger": "interval", "seconds": PURGE_SECONDS,
             "id": "purge", **common},
        ]
        config = self.worker.config
        if config.auth.method == "oauth2":
            jobs.append({"func": self._keepalive, "trigger": "interval",
                         "seconds": config.auth.keepalive_days * 86400, "id": "keepalive",
                         "next_run_time": self._first_keepalive(), **common})
        return jobs

    def _first_keepalive(self) -> datetime:
        """Soon after start when the last refresh is older than the interval, else on time."""
        interval = timedelta(days=self.worker.config.auth.keepalive_days)
        now = datetime.now().astimezone()
        last: datetime | None = None
        try:
            # The account refreshed longest ago decides: none may come near the limit.
            refreshed = [s.last_refresh for s in self.worker.credentials.status()]
            known = [moment for moment in refreshed if moment is not None]
            last = min(known) if known and len(known) == len(refreshed) else None
        except Exception:  # noqa: BLE001 - status is advisory here
            last = None
        if last is None or now - last >= interval:
            return now + timedelta(seconds=5)
        return last + interval

    async def _keepalive(self) -> None:
        results = await self.worker.credentials.keepalive()
        self.keepalives += 1
        for result in results:
            if result.ok:
                log.info("✓ keep-alive: tokens of %s refreshed", result.account)
            else:
                log.error("! keep-alive for %s failed (%s): %s", result.account, result.code,
                          result.message)

    def _round_failed(self, exc: Exception) -> None:
        """Log a crashed round (the next one starts a second later): the same failure once
        per :data:`REPEAT_LOG_SECONDS`, not every second."""
        what = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if self._last_failure is not None and self._last_failure[0] == what and (
                now - self._last_failure[1] < REPEAT_LOG_SECONDS):
            return
        self._last_failure = (what, now)
        log.error("! a round failed (the next one starts in %g s): %s", self.sweep_seconds,
                  " ".join(what.split()), exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)

    async def _purge(self) -> None:
        # Hosts sharing one database purge it one at a time: whoever holds the turn.
        if self.worker.coordination.take_turn("purge"):
            self.worker.purge()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; the send under way is finished, never cut in half."""
        self.worker.startup()
        scheduler = AsyncIOScheduler()
        for job in self._jobs():
            scheduler.add_job(**job)
        scheduler.start()
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if stop.is_set():
                    break
                self._wake.clear()
                await self._round(stop)
        finally:
            stopper.cancel()
            scheduler.shutdown(wait=False)

    async def _round(self, stop: asyncio.Event) -> None:
        # The round runs as its own task so that a stop only sets ``worker.stopping`` (the
        # sessions finish their message and give the rest back) instead of cancelling it.
        round_task = asyncio.create_task(self.worker.run_once())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({round_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if round_task not in done:
            log.warning("stopping: finishing the message under way")
            self.worker.stopping = True
            # Waited for, not awaited: a round that fails while stopping is logged below
            # like any other, never the service's end.
            await asyncio.wait({round_task})
        stopper.cancel()
        self.rounds += 1
        try:
            summary = round_task.result()
        except Exception as exc:  # noqa: BLE001 - a crashed round never ends the service
            self._round_failed(exc)
            return
        self._last_failure = None
        self.last_round_at = datetime.now(UTC)
        if summary.taken or summary.sent or summary.failed or summary.deferred:
            log.info("round: %d taken, %d sent, %d deferred, %d failed, %d waiting for their "
                     "account", summary.taken, summary.sent, summary.deferred, summary.failed,
                     summary.waiting_for_auth)
