"""A sending mailbox's limits for every runner that sends as it, as the sessions wait for them.

Exchange counts connections and messages per mailbox, not per host: with several gateways on
one queue, ``[limits] connections`` and ``messages_per_minute`` must hold for all of them
together. The engine's :class:`~faxgw.engine.pacing.MailboxPacer` keeps them within one
process; the :class:`~faxgw.domain.cluster.MailboxLimits` the store provides keeps them across
processes and hosts (slots and a sliding window in PostgreSQL; nothing to add on one host).

Here are the waits around that port: a session holds one of its mailbox's slots from before it
opens until it closes (:func:`session_in_slot`, :class:`SlotSession`), and every message takes
its place in the mailbox's budget of the last minute before it goes (:func:`message_budget`).
A coordination that cannot be reached (the database restarting) is never taken as a "yes": a
slot is waited for, and a message whose budget cannot be read does not go.

A slot is this runner's for a while at a time (renewed while its session lives): a session
never outlives its slot. It starts a message only while its slot is surely held for
:data:`SLOT_MARGIN_SECONDS` more, and one that sits idle is closed as that time runs short
(the database out of reach): the mail server then never sees more sessions of a mailbox than
its slots, whatever happened to the runners' database connections. A session idle for
:data:`SLOT_IDLE_SECONDS` is closed too, so that its slot goes to whichever runner needs one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from ..domain.cluster import MailboxLimits
from ..domain.errors import StoreError
from ..ports import Accepted, Session

log = logging.getLogger("faxgw.worker")

#: First and longest pause between two asks for a slot.
SLOT_POLL_SECONDS = (0.1, 2.0)
#: Longest pause before asking for a place in the message budget again.
BUDGET_POLL_SECONDS = 5.0
#: A session starts a message only while its slot is surely held this much longer (more
#: than a message takes), and is closed when idle with less.
SLOT_MARGIN_SECONDS = 15.0
#: How often an open session's slot is looked at (and renewed when due).
SLOT_WATCH_SECONDS = 2.0
#: A session idle this long gives its slot back (a runner on another host may be waiting
#: for it); only where others share the slots.
SLOT_IDLE_SECONDS = 10.0


async def session_in_slot(limits: MailboxLimits, mailbox: str, slots: int, *,
                          new: Callable[[], Session], parked: Callable[[], Session | None],
                          stopping: Callable[[], bool],
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                          ) -> Session | None:
    """A session for ``mailbox`` that holds one of its ``slots`` connection slots: one of
    this runner's own parked sessions (it holds its slot already), else a ``new`` one in a
    free slot, waited for while every slot is held; None when the worker is stopping first.

    A parked session is always taken before waiting, and looked for again while waiting:
    a runner never waits for a slot that it holds itself, so two runners can never wait
    for each other's idle sessions."""
    pause, longest = SLOT_POLL_SECONDS
    while True:
        while (session := parked()) is not None:
            if session.usable:
                return session
            await session.close()
        try:
            slot = limits.take_slot(mailbox, slots)
        except StoreError as exc:
            log.warning("! %s: no connection slot now: %s", mailbox, exc)
            slot = None
        if slot is not None:
            release = functools.partial(release_slot, limits, mailbox, slot)
            try:
                return SlotSession(new(), release, keep=functools.partial(
                    limits.keep_slot, mailbox, slot))
            except BaseException:
                release()
                raise
        if stopping():
            return None
        await sleep(pause)
        pause = min(pause * 2, longest)


def release_slot(limits: MailboxLimits, mailbox: str, slot: int) -> None:
    """Give a slot back; one that cannot be given back now (the database out of reach) is
    free for the others when its lease ends."""
    try:
        limits.release_slot(mailbox, slot)
    except StoreError as exc:
        log.warning("! %s: connection slot %d not given back: %s", mailbox, slot, exc)


@asynccontextmanager
async def message_budget(limits: MailboxLimits, mailbox: str, per_minute: int,
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                         ) -> AsyncIterator[None]:
    """Wait for a place in ``mailbox``'s budget of the last minute, across runners; the
    block is the message under way, which counts from when it ends (the server's answer).

    A budget that cannot be read (the database is gone) raises its StoreError: the message
    does not go, and the round ends as with any store failure (a stop is never held up)."""
    if per_minute <= 0:
        yield
        return
    while (wait := limits.reserve_message(mailbox, per_minute)) > 0:
        await sleep(min(wait, BUDGET_POLL_SECONDS))
    try:
        yield
    finally:
        try:
            limits.message_answered(mailbox)
        except StoreError as exc:
            # The reservation stays counted until it ages out: the budget errs on the safe side.
            log.warning("! %s: the message's answer was not counted: %s", mailbox, exc)


class SlotSession:
    """A transport :class:`~faxgw.ports.Session` that holds one of its mailbox's connection
    slots until it is closed (however it closes: used up, broken, at the end of a run).

    ``keep`` says how long the slot is still surely held (renewing it when due): the session
    is :attr:`usable` only while that is more than ``margin`` seconds, and a watch closes it
    when it sits idle with less, so that it never outlives its slot."""

    def __init__(self, session: Session, release: Callable[[], None], *,
                 keep: Callable[[], float] | None = None,
                 margin: float = SLOT_MARGIN_SECONDS) -> None:
        self.account = session.account
        self._session = session
        self._release: Callable[[], None] | None = release
        self._keep = keep if keep is not None else (lambda: float("inf"))
        self._margin = margin
        self._closed = False
        #: Set while the session opens or sends: the watch does not close it then.
        self._busy = False
        self._used = time.monotonic()
        self._watch = asyncio.ensure_future(self._watch_slot())

    @property
    def usable(self) -> bool:
        """Whether the session can take another message now (open, and its slot held for
        long enough)."""
        return (not self._closed and self._session.usable
                and self._keep() > self._margin)

    async def open(self) -> None:
        """Connect and authenticate (the slot is already held)."""
        self._busy = True
        try:
            await self._session.open()
        finally:
            self._busy, self._used = False, time.monotonic()

    async def send(self, message: bytes, *, sender: str, recipients: Sequence[str],
                   envelope_id: str = "") -> Accepted:
        """Send one message through the session."""
        self._busy = True
        try:
            return await self._session.send(message, sender=sender, recipients=recipients,
                                            envelope_id=envelope_id)
        finally:
            self._busy, self._used = False, time.monotonic()

    async def _watch_slot(self) -> None:
        """Close the session when it sits idle while its slot is about to end, or for
        :data:`SLOT_IDLE_SECONDS` (a session busy with a message is closed by its loop
        afterwards: it is no longer usable)."""
        while not self._closed:
            left = self._keep()
            if left == float("inf"):
                return  # a slot nobody else can take (one host)
            if not self._busy:
                if left <= self._margin:
                    log.warning("! %s: its connection slot could not be renewed: its "
                                "session is closed", self.account)
                    await self.close()
                    return
                if time.monotonic() - self._used >= SLOT_IDLE_SECONDS:
                    log.debug("%s: a session idle for %g s gives its slot back",
                              self.account, SLOT_IDLE_SECONDS)
                    await self.close()
                    return
            await asyncio.sleep(SLOT_WATCH_SECONDS)

    async def close(self) -> None:
        """Close the session, then give its slot back (once)."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not asyncio.current_task():
            self._watch.cancel()
        try:
            await self._session.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
