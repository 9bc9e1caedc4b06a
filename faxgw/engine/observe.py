"""What the engine observes about its own work, for whoever watches it: how long renders and
sends take, and how many sessions each sending mailbox has open.

Plain Python, no metrics library: the engine records into an :class:`Observations` it is
handed (the composition root makes one per worker), and a face reads a :meth:`snapshot` and
turns it into its own format (the console's ``/metrics`` into Prometheus families). Every
method is thread-safe: renders are timed from threads, a scrape reads from another.

Sessions are counted by :class:`ObservedTransport`, a :class:`~faxgw.ports.Transport` around
the real one: a session counts from a successful ``open`` to its ``close``, so the engine's
session code needs no line of its own for it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..ports import Accepted, Session, Transport

__all__ = ["CLAIM_BUCKETS", "DURATION_BUCKETS", "Durations", "DurationsSnapshot",
           "ObservedTransport", "Observations", "Snapshot"]

#: Upper bounds (seconds) of the duration buckets: a send takes a fraction of a second to a
#: few seconds (a large attachment over a slow link: a minute); a render from tens of
#: milliseconds (a text page) to minutes (a long scan, up to ``[limits] render_seconds``).
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                       120.0, 300.0)


@dataclass(frozen=True, slots=True)
class DurationsSnapshot:
    """A histogram as it stood: per upper bound, how many took at most that long
    (cumulative, as Prometheus counts), then the total count and the sum of seconds."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total_seconds: float


class Durations:
    """A thread-safe histogram of durations in seconds."""

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self._bounds = tuple(sorted(bounds))
        self._lock = threading.Lock()
        # One slot per bound, and one more for what took longer than the last.
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration (negative ones, from a clock that stepped back, count as 0)."""
        seconds = max(0.0, seconds)
        slot = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self._counts[slot] += 1
            self._sum += seconds

    def snapshot(self) -> DurationsSnapshot:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip(self._bounds, counts, strict=False):
            running += count
            cumulative.append((bound, running))
        return DurationsSnapshot(tuple(cumulative), sum(counts), total)


#: Upper bounds (seconds) of the claim buckets: a claim is one short transaction, a
#: millisecond or a few; tens of them mean a crowded table (dead row versions) or a far database.
CLAIM_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1.0, 2.5)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything observed, as it stood at one moment."""

    render: DurationsSnapshot
    send: DurationsSnapshot
    #: Open sessions by sending mailbox (lower case); a mailbox seen once stays, at 0.
    sessions: dict[str, int]
    #: How long claiming due jobs took (one store transaction each).
    claim: DurationsSnapshot | None = None


class Observations:
    """The sink the engine records into: render, send and claim durations, sessions per
    mailbox."""

    def __init__(self, *, bounds: Sequence[float] = DURATION_BUCKETS,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.render = Durations(bounds)
        self.send = Durations(bounds)
        self.claim = Durations(CLAIM_BUCKETS)
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, int] = {}

    @contextmanager
    def timed(self, durations: Durations) -> Iterator[None]:
        """Time the block into ``durations`` (also when it raises: a failed send took time
        too)."""
        start = self._clock()
        try:
            yield
        finally:
            durations.observe(self._clock() - start)

    def session_opened(self, mailbox: str) -> None:
        with self._lock:
            key = mailbox.lower()
            self._sessions[key] = self._sessions.get(key, 0) + 1

    def session_closed(self, mailbox: str) -> None:
        with self._lock:
            key = mailbox.lower()
            self._sessions[key] = max(0, self._sessions.get(key, 0) - 1)

    def snapshot(self) -> Snapshot:
        with self._lock:
            sessions = dict(self._sessions)
        return Snapshot(self.render.snapshot(), self.send.snapshot(), sessions,
                        self.claim.snapshot())


class _ObservedSession:
    """A session that reports its opening and closing, and times each send."""

    def __init__(self, inner: Session, observations: Observations) -> None:
        self._inner = inner
        self._observations = observations
        self._counted = False
        self.account = inner.account

    @property
    def usable(self) -> bool:
        return self._inner.usable

    async def open(self) -> None:
        await self._inner.open()
        if not self._counted:
            self._counted = True
            self._observations.session_opened(self.account)

    async def send(self, message: bytes, *, sender: str, recipients: Sequence[str],
                   envelope_id: str = "") -> Accepted:
        with self._observations.timed(self._observations.send):
            return await self._inner.send(message, sender=sender, recipients=recipients,
                                          envelope_id=envelope_id)

    async def close(self) -> None:
        if self._counted:  # counted once, however often it is closed
            self._counted = False
            self._observations.session_closed(self.account)
        await self._inner.close()


class ObservedTransport:
    """A :class:`~faxgw.ports.Transport` whose sessions are observed."""

    def __init__(self, inner: Transport, observations: Observations) -> None:
        self._inner = inner
        self.observations = observations
        self.name = inner.name

    def session(self, account: str) -> Session:
        return _ObservedSession(self._inner.session(account), self.observations)

    def warm(self) -> None:
        self._inner.warm()
