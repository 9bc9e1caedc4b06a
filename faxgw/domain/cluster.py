"""What runners on several hosts coordinate through: the names and the ports (pure, no I/O).

A runner writes :data:`HANDING_OVER` into a job's history just before it hands the message
to the mail server. A claim taken back because its lease ended is then judged by it: without
the mark nothing can have left, and the job is queued again; with it the fax may have been
sent, and the job becomes ``unconfirmed`` (a report settles it) instead of being sent twice.

:class:`MailboxLimits` is how the engine keeps a sending mailbox's limits (``[limits]
connections`` and ``messages_per_minute``) for every runner that sends as it, and
:class:`Singletons` how work that must run once at a time (the token keep-alive, the mailbox
reader, the purge) finds out whether it is this runner's turn. :data:`ONE_HOST` is both for a
store on one host (SQLite): the engine's own pacing already holds the limits there, and the
singletons keep the locks they have on one host (lock files).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

#: The history event written just before a message is handed to the mail server.
HANDING_OVER = "handing-over"

#: What a job's history says when its claim ended before anything was handed over.
REQUEUED_DETAIL = ("the runner sending this job stopped; queued again (possibly delivered: "
                   "if the server had already accepted it, the fax may arrive twice)")
#: What it says when the claim ended while the message was being handed over.
UNCONFIRMED_DETAIL = ("the runner sending this job stopped while handing it to the mail "
                      "server: it may have been sent; unconfirmed until a report settles it "
                      "(it is not sent again by itself)")


class MailboxLimits(Protocol):
    """The connection slots and the message budget of sending mailboxes, for every runner.

    Calls never wait: a runner that is told no asks again later. ``mailbox`` is the sending
    address as the engine groups it (folded to lower case).
    """

    def take_slot(self, mailbox: str, slots: int) -> int | None:
        """Take one of ``mailbox``'s ``slots`` connection slots for this runner; its number,
        or None while every slot is held (by this runner or others)."""
        ...

    def keep_slot(self, mailbox: str, slot: int) -> float:
        """How many seconds from now ``slot`` is surely still this runner's (renewed first
        when that is due): a session must not be used once this ends, nor start a message
        that could outlast it; 0 when the slot is lost. Never raises: a coordination out of
        reach renews nothing, and what is left of the slot's time is the answer."""
        ...

    def release_slot(self, mailbox: str, slot: int) -> None:
        """Give a slot taken by :meth:`take_slot` back."""
        ...

    def reserve_message(self, mailbox: str, per_minute: int) -> float:
        """Reserve one message in ``mailbox``'s budget of the last minute: 0 when reserved,
        else how many seconds to wait before asking again."""
        ...

    def message_answered(self, mailbox: str) -> None:
        """The server answered a reserved message: it counts from now."""
        ...


class Singletons(Protocol):
    """Work that runs on one runner at a time, across hosts."""

    def take_turn(self, name: str) -> bool:
        """Whether this runner does ``name`` now: True when it holds the turn (it keeps it
        until it stops or its connection to the others ends)."""
        ...


class Coordination(MailboxLimits, Singletons, Protocol):
    """Everything a runner coordinates with the others through its store."""

    def beat(self) -> None:
        """Say this runner is alive (the hosts ``faxgw status`` lists)."""
        ...

    def leave(self) -> None:
        """Say this runner stops (it leaves the list)."""
        ...

    async def listen(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``wake`` whenever a job becomes due on any host, until ``stop`` is set."""
        ...


class OneHost:
    """:class:`Coordination` on one host: everything is granted, because the engine's
    in-process pacing and the host's lock files already decide; there is no host list."""

    def take_slot(self, mailbox: str, slots: int) -> int | None:
        """Always a slot (the pacer counts this process's sessions)."""
        return 0

    def keep_slot(self, mailbox: str, slot: int) -> float:
        """Forever (nobody else can take it)."""
        return float("inf")

    def release_slot(self, mailbox: str, slot: int) -> None:
        """Nothing to give back."""

    def reserve_message(self, mailbox: str, per_minute: int) -> float:
        """Always now (the pacer counts this process's messages)."""
        return 0.0

    def message_answered(self, mailbox: str) -> None:
        """Nothing to count."""

    def take_turn(self, name: str) -> bool:
        """Always this runner's turn."""
        return True

    def beat(self) -> None:
        """Nobody to tell."""

    def leave(self) -> None:
        """Nobody to tell."""

    async def listen(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """Nothing to hear: the sweep and the runner's own intake find the jobs."""
        await stop.wait()


#: The coordination of a store on one host.
ONE_HOST: Coordination = OneHost()
