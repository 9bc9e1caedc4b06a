"""Scripted faults for the test SMTP server.

A :class:`FaultPlan` holds what the server should do *instead of* its normal handling at a
named point of the SMTP dialogue. Faults live in the server, never in the client: the code
under test sees exactly the bytes a misbehaving Exchange Online would send (the approach of
aiosmtplib's own suite, whose handlers return ``451``/``535`` or drop the connection).

Points (:data:`FAULT_POINTS`):

``CONNECT``
    The greeting. ``reply`` replaces the ``220`` banner; ``drop`` closes the TCP
    connection before any byte is sent.
``EHLO``, ``HELO``, ``STARTTLS``, ``AUTH``, ``MAIL``, ``RCPT``, ``DATA``, ``RSET``, ``NOOP``,
``QUIT``
    The command with that verb. The scripted action replaces the server's whole handling
    of the command, whatever state the session is in (no envelope change, no
    authentication). ``DATA`` means the reply to the ``DATA`` command itself, before the
    client uploads the message.
``DATA_END``
    The reply after the final ``.`` of the message data: the message was received in full
    but is *not* stored in ``server.messages``. ``drop`` here is the ambiguous outcome every
    SMTP client must survive (the message is kept in ``server.dropped_messages``).

A reply starting with ``421`` also closes the connection afterwards, as RFC 5321 §3.8
requires of a server that sends it.

Faults fire in the order they were added, for the next matching events in order of
arrival across all sessions; ``times=None`` means "every time". All methods are
thread-safe: tests script faults from the main thread while the server runs in its own.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["FAULT_POINTS", "Fault", "FaultPlan", "is_reply_line"]

FAULT_POINTS: frozenset[str] = frozenset(
    {
        "CONNECT",
        "EHLO",
        "HELO",
        "STARTTLS",
        "AUTH",
        "MAIL",
        "RCPT",
        "DATA",
        "DATA_END",
        "RSET",
        "NOOP",
        "QUIT",
    }
)
"""The points at which a fault can be injected."""

# One SMTP reply line: a 2xx-5xx code, then a space and text (or nothing). No CR/LF, so a
# scripted reply can never smuggle extra lines into the stream.
_REPLY_LINE = re.compile(r"[2-5][0-9][0-9]( [^\r\n]*)?\Z")


def is_reply_line(text: str) -> bool:
    """Whether ``text`` is one complete SMTP reply line such as ``"250 OK"`` (no CR/LF)."""
    return _REPLY_LINE.match(text) is not None


@dataclass(frozen=True)
class Fault:
    """One scripted action, as handed to the server when it fires."""

    point: str
    """Where it fired: one of :data:`FAULT_POINTS`."""
    action: Literal["reply", "drop"]
    """``reply``: send :attr:`reply` instead; ``drop``: close the connection without a reply."""
    reply: str | None = None
    """The reply line for ``action == "reply"``, e.g. ``"451 4.3.0 Temporary server error"``."""

    @property
    def closes_connection(self) -> bool:
        """True if the server must close the connection after acting (drop, or a 421 reply)."""
        return self.action == "drop" or (self.reply is not None and self.reply.startswith("421"))


@dataclass
class _Scripted:
    fault: Fault
    remaining: int | None  # None: fires forever


class FaultPlan:
    """Faults scripted by a test, consumed by the server as matching events arrive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: list[_Scripted] = []
        self._fired: list[Fault] = []

    def reply(self, point: str, reply: str, *, times: int | None = 1) -> None:
        """Answer the next ``times`` events at ``point`` with ``reply`` (``None``: always).

        ``reply`` is one SMTP reply line, code first:
        ``faults.reply("MAIL", "550 5.7.60 Client does not have permissions to send as this
        sender")``.
        """
        if not is_reply_line(reply):
            raise ValueError(f"not a single SMTP reply line: {reply!r}")
        self._add(Fault(self._checked_point(point), "reply", reply), times)

    def drop(self, point: str, *, times: int | None = 1) -> None:
        """Close the connection without replying at the next ``times`` events at ``point``."""
        self._add(Fault(self._checked_point(point), "drop"), times)

    def clear(self) -> None:
        """Forget every scripted fault that has not fired yet."""
        with self._lock:
            self._scripted.clear()

    def take(self, point: str) -> Fault | None:
        """Consume and return the first pending fault for ``point``, or ``None``.

        Called by the server; each call that returns a fault uses up one of its ``times``.
        """
        with self._lock:
            for index, scripted in enumerate(self._scripted):
                if scripted.fault.point != point:
                    continue
                if scripted.remaining is not None:
                    scripted.remaining -= 1
                    if scripted.remaining == 0:
                        del self._scripted[index]
                self._fired.append(scripted.fault)
                return scripted.fault
        return None

    @property
    def pending(self) -> int:
        """How many scripted faults may still fire (an unlimited one counts once)."""
        with self._lock:
            return len(self._scripted)

    @property
    def fired(self) -> list[Fault]:
        """A copy of the faults that have fired so far, in order."""
        with self._lock:
            return list(self._fired)

    def _add(self, fault: Fault, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, not {times!r}")
        with self._lock:
            self._scripted.append(_Scripted(fault, times))

    @staticmethod
    def _checked_point(point: str) -> str:
        upper = point.upper()
        if upper not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {point!r}; use one of {sorted(FAULT_POINTS)}")
        return upper
