"""When the client's bytes reached the test SMTP server, and which commands came together.

One :class:`Arrivals` per connection follows the bytes the connection received and the bytes
aiosmtpd has read of them. From that it knows **when the line just read arrived**
(:attr:`Arrivals.last_arrival`), which gives two things:

* the server's reply delay counts from then, like the latency of a distant server. A client
  that waits for each reply sees the delay once per command; a client that pipelines (RFC
  2920) sees it once per batch, as it would over a real network;
* whether the client waited for the server's last reply before sending the line
  (:meth:`Arrivals.sent_after`): if so, the line starts a new *flight*, one write of the
  client; if it arrived before that reply went out, it came with the command before it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

__all__ = ["Arrivals"]


class Arrivals:
    """Arrival times of one connection's incoming bytes, matched to the reads of them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._received = 0
        self._read = 0
        # (offset just past the chunk's last byte, when the chunk arrived), oldest first
        self._chunks: collections.deque[tuple[int, float]] = collections.deque()
        self.last_arrival = clock()
        """When the last byte read so far arrived (at first: when the connection opened)."""

    def reset(self) -> None:
        """Forget unread bytes: aiosmtpd discards them when TLS starts (RFC 3207 §4.2)."""
        self._received = self._read = 0
        self._chunks.clear()

    def received(self, size: int) -> None:
        """``size`` bytes arrived now."""
        self._received += size
        self._chunks.append((self._received, self._clock()))

    def sent_after(self, moment: float) -> bool:
        """Whether the line just read arrived after ``moment`` (e.g. the last reply sent)."""
        return self.last_arrival >= moment

    def consumed(self, size: int) -> None:
        """``size`` more bytes were read; :attr:`last_arrival` becomes when the last came."""
        self._read += size
        while len(self._chunks) > 1 and self._chunks[0][0] < self._read:
            self._chunks.popleft()
        if self._chunks:
            self.last_arrival = self._chunks[0][1]
