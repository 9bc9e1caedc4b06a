"""Log-in sessions, their CSRF tokens, and the growing pause after failed log-ins.

Sessions live in memory (a restart logs everyone out); the cookie holds a random id and
nothing else. Every form carries the session's CSRF token; the log-in form, before there is
a session, carries one bound to a short-lived cookie of its own (double submit).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["LoginThrottle", "Session", "Sessions"]

#: A session ends after this long without a request.
IDLE_SECONDS = 8 * 3600.0


@dataclass
class Session:
    """One logged-in browser."""

    id: str
    csrf: str
    last_seen: float
    #: One-time messages for the next page ("Job ... retried").
    flashes: list[str] = field(default_factory=list)
    #: The person's own address when they signed in with "Send as me" (a user session:
    #: their own jobs only); empty for the administrator.
    user: str = ""
    #: The page pictures of this session's latest preview (:mod:`faxgw.web.previews`).
    preview: object = None

    @property
    def admin(self) -> bool:
        """Logged in with the admin password."""
        return not self.user

    def owns(self, sender: str) -> bool:
        """Whether this session may see a job sent as ``sender`` (the admin sees all)."""
        return self.admin or sender.strip().lower() == self.user.lower()

    def csrf_ok(self, token: str) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, token)


class Sessions:
    """The open sessions, by id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        self._clock = clock
        self._idle = idle_seconds
        self._lock = threading.Lock()
        self._open: dict[str, Session] = {}

    def create(self, user: str = "") -> Session:
        """A new session: the admin's, or ``user``'s ("Send as me")."""
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._clock(),
                          user=user)
        with self._lock:
            self._open[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            for key in [k for k, s in self._open.items() if now - s.last_seen > self._idle]:
                del self._open[key]
            session = self._open.get(session_id)
            if session is not None:
                session.last_seen = now
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._open.pop(session_id or "", None)

    def end_users(self, accounts: Iterable[str]) -> int:
        """End every "Send as me" session of ``accounts`` (compared without case): their
        sign-in was removed. How many ended."""
        wanted = {account.strip().lower() for account in accounts}
        with self._lock:
            ended = [key for key, session in self._open.items()
                     if session.user and session.user.strip().lower() in wanted]
            for key in ended:
                del self._open[key]
        return len(ended)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


class LoginThrottle:
    """After ``free`` failed log-ins in a row from one address, each further failure makes it
    wait before the next try: 1, 2, 4 … seconds, at most ``longest``. A success resets it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, free: int = 3,
                 longest: float = 300.0) -> None:
        self._clock = clock
        self._free = free
        self._longest = longest
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}

    def wait_seconds(self, client: str) -> float:
        """How long ``client`` must still wait before it may try again (0: it may)."""
        with self._lock:
            _, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self._clock())

    def failed(self, client: str) -> float:
        """Record a failure; the pause it earns (0 for the first few)."""
        with self._lock:
            count, _ = self._failures.get(client, (0, 0.0))
            count += 1
            pause = 0.0 if count < self._free else min(2.0 ** (count - self._free),
                                                       self._longest)
            self._failures[client] = (count, self._clock() + pause)
            if len(self._failures) > 10_000:  # bounded: forget the oldest addresses
                self._failures.pop(next(iter(self._failures)))
            return pause

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
