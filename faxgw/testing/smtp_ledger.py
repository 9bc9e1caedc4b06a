"""What the test SMTP server saw and decided: records and Exchange-like limits.

The :class:`Ledger` is shared by every connection of one server. Connections run on the
server's event-loop thread while tests read the records from the main thread, so every
change happens under one lock and readers get plain lists that are only ever appended to.

The limits copy Exchange Online's documented per-mailbox behaviour (Microsoft's "Exchange
Online limits" page, sending limits for SMTP client submission):

* at most N concurrent *authenticated* sessions per user; the next one is refused at AUTH
  with :data:`CONCURRENCY_REPLY`;
* at most M messages per user in any rolling 60 s window; the next one is refused after
  its data with :data:`RATE_REPLY` (the store driver, ``STOREDRV``, rejects at submission,
  i.e. after the message was uploaded).
"""

from __future__ import annotations

import collections
import email
import email.policy
import functools
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import cast

__all__ = [
    "CONCURRENCY_REPLY",
    "RATE_REPLY",
    "RATE_WINDOW_SECONDS",
    "Ledger",
    "Received",
    "parse_message",
]

CONCURRENCY_REPLY = (
    "432 4.3.2 Concurrent connections limit exceeded. "
    "Visit https://aka.ms/concurrent_sending for more information."
)
"""Exchange Online's reply to AUTH when a mailbox already has its maximum of sessions."""

RATE_REPLY = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
"""Exchange Online's (older) throttling reply, used here for the per-minute message rate."""

RATE_WINDOW_SECONDS = 60.0

_EML_NAME = re.compile(r"(\d+)\.eml\Z")


@dataclass(frozen=True)
class Received:
    """One message the server received in full."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    """The message exactly as uploaded, dot-unstuffed, CRLF line ends."""
    auth_user: str | None
    auth_mechanism: str | None
    """``"PLAIN"``, ``"LOGIN"``, ``"XOAUTH2"`` or ``None`` if the session never authenticated."""
    tls: bool
    """Whether TLS (STARTTLS or implicit) was active when the data arrived."""
    session_id: int
    mail_parameters: tuple[str, ...] = ()
    """DSN parameters given with MAIL (``ENVID=…``, ``RET=…``) when the server offers DSN."""
    rcpt_parameters: tuple[tuple[str, ...], ...] = ()
    """DSN parameters given with each RCPT (``NOTIFY=…``), in recipient order."""

    @functools.cached_property
    def message(self) -> EmailMessage:
        """:attr:`data` parsed with ``email.policy.default`` (``iter_attachments()`` works).

        Parsed when first asked for, not as the message arrives: parsing cost the server a
        sixth of its time, and that delayed every reply to the data by as much.
        """
        return parse_message(self.data)


def parse_message(data: bytes) -> EmailMessage:
    """Parse raw message bytes the way tests want them: modern ``EmailMessage`` API."""
    # message_from_bytes is typed as returning Message; with policy.default it builds an
    # EmailMessage (the policy's message_factory).
    return cast(EmailMessage, email.message_from_bytes(data, policy=email.policy.default))


class Ledger:
    """Thread-safe records of one server, and the per-user limits that need shared state."""

    def __init__(
        self,
        *,
        max_connections_per_user: int | None,
        messages_per_minute_per_user: int | None,
        clock: Callable[[], float],
        maildir: Path | None,
    ) -> None:
        self._lock = threading.Lock()
        self._max_connections_per_user = max_connections_per_user
        self._messages_per_minute = messages_per_minute_per_user
        self._clock = clock
        self._maildir = maildir

        self.messages: list[Received] = []
        self.dropped_messages: list[Received] = []
        self.commands: list[tuple[int, str]] = []
        self._flight_of_command: list[int] = []  # parallel to commands
        self._flights = 0
        self._current_flight: dict[int, int] = {}  # session id -> its latest flight
        self.replies: list[tuple[int, str]] = []
        self.errors: list[BaseException] = []
        self.max_concurrent_sessions = 0
        self.max_concurrent_sessions_by_user: dict[str, int] = {}
        self.refused_connections = 0
        self.rate_refusals = 0
        self.credentials_seen_in_clear = False

        self._next_session_id = 1
        self._active_sessions = 0
        self._active_by_user: dict[str, int] = collections.defaultdict(int)
        self._accepted_at: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._last_eml_number = self._highest_eml_number(maildir) if maildir else 0

    # -- sessions --------------------------------------------------------------------------

    def open_session(self) -> int:
        """Count a new TCP connection; return its session id (1, 2, ...)."""
        with self._lock:
            session_id = self._next_session_id
            self._next_session_id += 1
            self._active_sessions += 1
            self.max_concurrent_sessions = max(self.max_concurrent_sessions, self._active_sessions)
            return session_id

    def close_session(self, authenticated_user: str | None) -> None:
        """Count a connection as gone; release its user's concurrency slot if it held one."""
        with self._lock:
            self._active_sessions -= 1
            if authenticated_user is not None:
                self._active_by_user[authenticated_user] -= 1

    def admit_user(self, user: str) -> bool:
        """Called when a session's credentials are valid: take a concurrency slot for ``user``.

        Returns False (and counts a refused connection) if the user already holds the maximum.
        A slot taken here is released by :meth:`close_session`.
        """
        with self._lock:
            active = self._active_by_user[user]
            limit = self._max_connections_per_user
            if limit is not None and active >= limit:
                self.refused_connections += 1
                return False
            self._active_by_user[user] = active + 1
            self.max_concurrent_sessions_by_user[user] = max(
                self.max_concurrent_sessions_by_user.get(user, 0), active + 1
            )
            return True

    @property
    def active_sessions(self) -> int:
        """Connections open right now."""
        with self._lock:
            return self._active_sessions

    def active_sessions_by_user(self) -> dict[str, int]:
        """Authenticated sessions open right now, per user (users with none are left out)."""
        with self._lock:
            return {user: n for user, n in self._active_by_user.items() if n}

    # -- messages --------------------------------------------------------------------------

    def admit_message(self, sender_key: str) -> bool:
        """Apply the per-minute rate; True if one more message from ``sender_key`` may pass.

        Only accepted messages count towards the window (a refused one is not submitted).
        A True answer must be followed by :meth:`store`.
        """
        limit = self._messages_per_minute
        if limit is None:
            return True
        with self._lock:
            now = self._clock()
            accepted = self._accepted_at[sender_key]
            while accepted and now - accepted[0] >= RATE_WINDOW_SECONDS:
                accepted.popleft()
            if len(accepted) >= limit:
                self.rate_refusals += 1
                return False
            accepted.append(now)
            return True

    def store(self, received: Received) -> None:
        """Keep an accepted message (and write it to the maildir, if there is one)."""
        with self._lock:
            self.messages.append(received)
            if self._maildir is not None:
                self._last_eml_number += 1
                self._write_eml(self._maildir, self._last_eml_number, received.data)

    def drop(self, received: Received) -> None:
        """Keep a message whose connection was dropped before the server replied."""
        with self._lock:
            self.dropped_messages.append(received)

    # -- transcript ------------------------------------------------------------------------

    def note_command(self, session_id: int, command: str, *, auth_in_clear: bool,
                     new_flight: bool = True) -> None:
        """Record a (sanitised) command line; flag AUTH sent without TLS.

        ``new_flight``: the server had read everything before this line arrived, so it came
        in a new write of the client; otherwise it came with the command before it.
        """
        with self._lock:
            if new_flight or session_id not in self._current_flight:
                self._flights += 1
                self._current_flight[session_id] = self._flights
            self.commands.append((session_id, command))
            self._flight_of_command.append(self._current_flight[session_id])
            if auth_in_clear:
                self.credentials_seen_in_clear = True

    def flights(self) -> list[tuple[int, tuple[str, ...]]]:
        """``(session_id, command lines)`` per client write, in order: a pipelining client's
        ``MAIL``, ``RCPT`` and ``DATA`` are one flight, a waiting client's three."""
        grouped: dict[int, tuple[int, list[str]]] = {}
        with self._lock:
            for (session_id, command), flight in zip(self.commands, self._flight_of_command,
                                                     strict=True):
                grouped.setdefault(flight, (session_id, []))[1].append(command)
        return [(session_id, tuple(commands)) for session_id, commands in grouped.values()]

    def note_reply(self, session_id: int, reply: str) -> None:
        """Record a complete reply (lines of a multi-line reply joined with ``\\n``)."""
        with self._lock:
            self.replies.append((session_id, reply))

    def note_error(self, error: BaseException) -> None:
        """Record an unexpected exception inside the server (a bug, or a raising validator)."""
        with self._lock:
            self.errors.append(error)

    # -- maildir ---------------------------------------------------------------------------

    @staticmethod
    def _highest_eml_number(maildir: Path) -> int:
        # Continue numbering after files left by an earlier run instead of overwriting them.
        if not maildir.is_dir():
            return 0
        numbers = [int(m.group(1)) for p in maildir.iterdir() if (m := _EML_NAME.match(p.name))]
        return max(numbers, default=0)

    @staticmethod
    def _write_eml(maildir: Path, number: int, data: bytes) -> None:
        # Write under a temporary name, then rename: a process watching the directory (the
        # demo) never sees a half-written message (the Maildir tmp/ -> new/ idea).
        maildir.mkdir(parents=True, exist_ok=True)
        final = maildir / f"{number}.eml"
        temporary = maildir / f".{number}.eml.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, final)
