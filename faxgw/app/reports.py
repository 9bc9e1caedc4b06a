"""Use cases for "did the fax arrive": read the sending mailbox, tell submitters, list reports.

:func:`check_once` is one round (``faxgw reports --poll``, and every ``faxgw run --once``):
read the mailbox when ``[inbox] method`` is set, mark overdue jobs ``unconfirmed``, send the
notifications that are due. :func:`check_forever` is the same round in the service, every
``[inbox] poll_seconds`` for the mailbox and every few seconds for notifications.

One reader per mailbox across processes: a reader holds an exclusive ``flock`` on its
mailbox's lock file in the spool's state folder while it polls; another process that finds
it held skips its poll (the holder reads for both).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..config import Config
from ..confirm.classify import report_rules
from ..domain.cluster import ONE_HOST, Singletons
from ..domain.errors import FaxgwError
from ..domain.jobs import utcnow
from ..domain.reports import Report
from ..engine.confirmations import PollSummary, ReportReader
from ..engine.notify import Notifier, NotifySummary
from ..engine.pacing import WINDOW_SECONDS
from ..engine.runners import runner_id
from ..inbox import open_inbox
from ..intake.layout import SpoolLayout
from ..intake.register import default_sender
from ..ports import CredentialProvider, JobStore, ReportStore
from .wiring import make_credentials, make_transport, open_store

log = logging.getLogger("faxgw.reports")

__all__ = ["CheckSummary", "check_forever", "check_once", "list_reports"]

#: How often the service looks for notifications to send (jobs that failed while sending).
NOTIFY_SECONDS = 5.0


@dataclass(slots=True)
class CheckSummary:
    """One round: what the reader did (None when the mailbox is not read, or another
    process is reading it) and what the notifier did."""

    poll: PollSummary | None
    notify: NotifySummary

    def to_json(self) -> dict[str, object]:
        """As ``faxgw reports --poll --json`` prints it."""
        return {"poll": self.poll.to_json() if self.poll is not None else None,
                "notified": self.notify.sent, "notify_failed": self.notify.failed,
                "notify_later": self.notify.later}


def _reports_of(store: JobStore) -> ReportStore:
    if not isinstance(store, ReportStore):  # pragma: no cover - every store keeps reports
        raise FaxgwError("this job store keeps no reports")
    return store


@contextlib.contextmanager
def _reader_lock(config: Config, mailbox: str) -> Iterator[bool]:
    """Whether this process may read ``mailbox`` now (True while it holds the lock)."""
    folder = SpoolLayout(config.spool.dir).state / "inbox"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = hashlib.sha256(mailbox.lower().encode()).hexdigest()[:16]
    fd = os.open(Path(folder, f"{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the flock


class Checker:
    """The parts of one round, opened once (the service keeps them between rounds)."""

    def __init__(self, config: Config, *, store: JobStore | None = None,
                 credentials: CredentialProvider | None = None,
                 clock: Callable[[], datetime] = utcnow, turns: Singletons = ONE_HOST) -> None:
        self.config = config
        self.clock = clock
        #: Hosts sharing one database read the mailbox one at a time (the lock file only
        #: covers the processes of one host).
        self.turns = turns
        self.store = store if store is not None else open_store(config, clock=clock)
        self._own_store = store is None
        self.credentials = credentials if credentials is not None else make_credentials(config)
        self.mailbox = default_sender(config)
        self.inbox = open_inbox(config, self.credentials, self.mailbox)
        if self._own_store and turns is ONE_HOST and self.inbox is not None:
            self.turns = _turns_of(config, self.store)
        reports = _reports_of(self.store)
        self.reader = None if self.inbox is None else ReportReader(
            config, self.store, reports, self.inbox, mailbox=self.mailbox,
            rules=report_rules(config.service), clock=clock)
        self.notifier = Notifier(config, self.store, reports,
                                 make_transport(config, self.credentials), clock=clock)

    async def poll(self) -> PollSummary | None:
        """Read the mailbox once, unless another process is reading it."""
        if self.reader is None:
            return None
        with _reader_lock(self.config, self.mailbox) as mine:
            if not mine or not self.turns.take_turn(f"inbox:{self.mailbox.lower()}"):
                return None
            return await self.reader.poll()

    async def round(self) -> CheckSummary:
        """Read the mailbox, then send the notifications that are due."""
        poll = await self.poll()
        return CheckSummary(poll, await self.notifier.run_once())

    async def close(self) -> None:
        """Log out of the mailbox and close the store (when opened here)."""
        if self.inbox is not None:
            await self.inbox.close()
        if self._own_store:
            self.store.close()


def _turns_of(config: Config, store: JobStore) -> Singletons:
    """A one-shot round's turns (``faxgw reports --poll``, ``faxgw run --once``): with a
    shared database, those of the hosts sharing it, so that the mailbox is not read while a
    service on another host reads it (closed with the store)."""
    if config.store.postgres:
        from ..store.postgres import PostgresJobStore

        if isinstance(store, PostgresJobStore):
            return store.coordination(runner_id(), window_seconds=WINDOW_SECONDS)
    return ONE_HOST


def check_once(config: Config) -> CheckSummary:
    """One round: read the mailbox (when configured), then notify."""
    async def main() -> CheckSummary:
        checker = Checker(config)
        try:
            return await checker.round()
        finally:
            await checker.close()

    return asyncio.run(main())


async def check_forever(config: Config, stop: asyncio.Event, *,
                        store: JobStore | None = None,
                        credentials: CredentialProvider | None = None,
                        turns: Singletons = ONE_HOST) -> None:
    """The service's rounds until ``stop``: notifications every few seconds, the mailbox
    every ``[inbox] poll_seconds`` (when it is this host's ``turns``). A failed round is
    logged and tried again next time."""
    checker = Checker(config, store=store, credentials=credentials, turns=turns)
    loop = asyncio.get_running_loop()
    next_poll = loop.time()
    try:
        while not stop.is_set():
            try:
                if checker.reader is not None and loop.time() >= next_poll:
                    next_poll = loop.time() + config.inbox.poll_seconds
                    await checker.poll()
                await checker.notifier.run_once()
            except FaxgwError as exc:
                log.warning("reading reports: %s", exc)
            except Exception:  # noqa: BLE001 - a bad round never stops the service
                log.exception("reading reports failed; trying again next round")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), NOTIFY_SECONDS)
    finally:
        await checker.close()


def list_reports(config: Config, *, unmatched: bool = False, job_id: str | None = None,
                 limit: int = 100) -> list[Report]:
    """The reports the reader recorded, newest first."""
    store = open_store(config)
    try:
        return _reports_of(store).reports(unmatched=unmatched, job_id=job_id, limit=limit)
    finally:
        store.close()
