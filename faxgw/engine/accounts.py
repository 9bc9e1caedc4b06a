"""Paused sending mailboxes: a sign-in problem or a full mailbox stops an account, not a job.

While an account is paused its jobs are not claimed; they wait as ``deferred`` with the
pause's code, their attempts and age untouched. A pause ends when its time is up, or at once
when the credentials change (someone signed in again, a password file was replaced): then the
waiting jobs go out by themselves. What a person must do is logged once per pause, not once
per job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..domain import codes
from ..domain.errors import DeliveryError

log = logging.getLogger("faxgw.accounts")

#: A paused account is tried again after this long even if nothing changed (the fault may
#: have been fixed on the server side, e.g. SMTP AUTH switched on for the mailbox).
AUTH_PROBE_SECONDS = 600.0


@dataclass(slots=True)
class Pause:
    """Why and until when an account does not send."""

    code: int
    message: str
    until: datetime
    fingerprint: object


class AccountGate:
    """Which accounts are paused, and why."""

    def __init__(self, fingerprint: Callable[[], object], clock: Callable[[], datetime]) -> None:
        self._fingerprint = fingerprint
        self._clock = clock
        self._pauses: dict[str, Pause] = {}
        # Pauses that ended by time or a credentials change, kept until the account either
        # sends (logged as resumed) or fails the same way again (not logged twice).
        self._probing: dict[str, Pause] = {}

    def pause(self, account: str, error: DeliveryError, *, seconds: float | None = None) -> Pause:
        """Pause ``account`` because of ``error``; log what to do when the reason is new."""
        key = account.lower()
        code = error.code or codes.SIGN_IN_AGAIN
        until = self._clock() + timedelta(seconds=seconds or AUTH_PROBE_SECONDS)
        previous = self._pauses.get(key) or self._probing.pop(key, None)
        pause = Pause(code, error.message, until, self._fingerprint())
        self._pauses[key] = pause
        if previous is None or previous.code != code:
            entry = codes.describe(code)
            log.error("! %s paused (%d %s): %s. %s", account, code, entry.status,
                      error.message, entry.solution)
        return pause

    def paused(self, account: str) -> Pause | None:
        """The account's pause, or None when it may send."""
        key = account.lower()
        pause = self._pauses.get(key)
        if pause is None:
            return None
        if self._clock() >= pause.until or self._fingerprint() != pause.fingerprint:
            self._probing[key] = self._pauses.pop(key)
            log.info("↻ %s: trying again (%s)", account,
                     "time is up" if self._clock() >= pause.until else "credentials changed")
            return None
        return pause

    def paused_accounts(self) -> list[str]:
        """Every account paused now (expired pauses are dropped first)."""
        return [account for account in list(self._pauses) if self.paused(account)]

    def resumed(self, account: str) -> None:
        """The account sent again: forget any pause (logged when there was one)."""
        key = account.lower()
        if (self._pauses.pop(key, None) or self._probing.pop(key, None)) is not None:
            log.info("✓ %s sends again: its waiting jobs go out", account)
