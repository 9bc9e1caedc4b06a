"""Per-mailbox pacing: at most N sessions and M messages a minute for one sending mailbox.

Exchange Online allows a mailbox 3 concurrent SMTP connections (``432 4.3.2 Concurrent
connections limit exceeded``) and 30 messages a minute; a sender that ignores this gets
refusals and retries instead of faxes. The pacer keeps each mailbox under both limits, and
when the server still says "too many connections" it steps the mailbox's connections down for
a while (``throttle``), like Postfix's destination concurrency feedback.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

#: How long a throttled mailbox keeps its reduced connection count.
THROTTLE_SECONDS = 600.0
#: The rate window, with a second to spare for the difference between when the server and
#: faxgw see a message end.
WINDOW_SECONDS = 61.0


class MailboxPacer:
    """The connection and message-rate budget of one sending mailbox.

    ``clock`` and ``sleep`` are injectable so that tests can run minutes of pacing in
    milliseconds; by default they are ``time.monotonic`` and ``asyncio.sleep``.
    """

    def __init__(
        self,
        *,
        connections: int,
        messages_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.max_connections = max(1, connections)
        self.messages_per_minute = messages_per_minute
        self._clock = clock
        self._sleep = sleep
        self._sent_at: deque[float] = deque()
        self._throttled_until = 0.0
        self._reduced = self.max_connections
        self._lock = asyncio.Lock()
        self._in_flight = 0
        self.active = 0

    @property
    def connections(self) -> int:
        """How many sessions the mailbox may have open now."""
        if self._clock() >= self._throttled_until:
            self._reduced = self.max_connections
        return self._reduced

    def over_capacity(self) -> bool:
        """True when a session should close because the mailbox was throttled."""
        return self.active > self.connections

    def throttle(self) -> int:
        """The server refused a connection: one session fewer for a while; the new count."""
        self._reduced = max(1, min(self._reduced, self.active) - 1)
        self._throttled_until = self._clock() + THROTTLE_SECONDS
        return self._reduced

    async def before_message(self) -> None:
        """Wait until one more message fits into the last minute's budget.

        A message counts from when the server answered it (:meth:`after_message`), as the
        server counts it; messages under way count too, so sessions never overshoot.
        """
        if self.messages_per_minute <= 0:
            return
        async with self._lock:  # one waiter at a time keeps the window exact
            while True:
                now = self._clock()
                while self._sent_at and now - self._sent_at[0] >= WINDOW_SECONDS:
                    self._sent_at.popleft()
                if len(self._sent_at) + self._in_flight < self.messages_per_minute:
                    self._in_flight += 1
                    return
                if self._sent_at:
                    await self._sleep(self._sent_at[0] + WINDOW_SECONDS - now)
                else:  # the whole budget is under way: wait for an answer
                    await self._sleep(0.05)

    def after_message(self) -> None:
        """The server answered a message (accepted or not): it counts from now."""
        if self.messages_per_minute <= 0:
            return
        self._in_flight = max(0, self._in_flight - 1)
        self._sent_at.append(self._clock())
