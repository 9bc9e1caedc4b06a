"""Polling the device code sign-in (RFC 8628) ourselves, around single msal polls.

msal's own loop (``acquire_token_by_device_flow`` without ``exit_condition``) sleeps in whole
seconds of the server's ``interval`` and gives no hook between polls. faxgw drives the loop so
that it can:

- report each answer (``authorization_pending``, ``slow_down``) to the person waiting;
- add 5 seconds to the interval on ``slow_down`` (RFC 8628 §3.5) and keep it added;
- stop at the code's expiry with a clear message, and turn Ctrl-C into :class:`SignInCancelled`;
- poll fast in tests (``interval_override``), which msal's loop cannot.

Each poll is one ``acquire_token_by_device_flow(flow, exit_condition=lambda f: True)`` call
made by the caller's ``poll_once``; msal stores the tokens when the answer is a success.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..domain import codes
from ..domain.errors import AuthError

#: RFC 8628 §3.5: on ``slow_down`` the interval grows by 5 seconds for all later polls.
SLOW_DOWN_SECONDS = 5.0
RETRY_ANSWERS = ("authorization_pending", "slow_down")


class SignInCancelled(AuthError):
    """The person stopped the sign-in (Ctrl-C); nothing was stored."""

    def __init__(self, message: str = "Sign-in cancelled; nothing was stored.") -> None:
        super().__init__(message, code=codes.SIGN_IN_AGAIN)


@dataclass(frozen=True)
class DeviceFlow:
    """A device code sign-in in progress: what to show the person, and msal's flow."""

    user_code: str
    verification_uri: str
    message: str
    #: Unix time at which the code stops working (Entra: 15 minutes after it was issued).
    expires_at: float
    #: Seconds between polls, as the identity provider asked.
    interval: float
    #: The ``--account`` the person should sign in as, if one was given.
    account_hint: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_msal(cls, flow: dict[str, Any], account_hint: str | None) -> DeviceFlow:
        """Wrap the dict msal's ``initiate_device_flow`` returned (it must hold a user_code)."""
        return cls(
            user_code=str(flow["user_code"]),
            verification_uri=str(flow.get("verification_uri") or flow.get("verification_url")),
            message=str(flow.get("message") or ""),
            expires_at=float(flow.get("expires_at") or time.time() + 900),
            # RFC 8628 §3.2: 5 seconds when the server names no interval (0 is a valid one).
            interval=float(flow["interval"] if flow.get("interval") is not None else 5),
            account_hint=account_hint,
            raw=flow,
        )


@dataclass(frozen=True)
class PollEvent:
    """One unanswered poll: its number, the answer, and the wait before the next poll."""

    attempt: int
    answer: str
    interval: float


def poll_until_done(
    flow: DeviceFlow,
    poll_once: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    interval_override: float | None = None,
    slow_down_seconds: float = SLOW_DOWN_SECONDS,
    on_poll: Callable[[PollEvent], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Poll until the identity provider answers with tokens or a final error; return it.

    ``poll_once`` makes one token request and returns msal's result dict. The result is
    returned as it came (tokens, or ``expired_token``, ``authorization_declined``,
    ``bad_verification_code``…); when the code expires locally first, an ``expired_token``
    result is made up here. Ctrl-C during the wait or a poll raises :class:`SignInCancelled`.
    """
    interval = interval_override if interval_override is not None else flow.interval
    attempt = 0
    try:
        while True:
            # RFC 8628 §3.4: wait ``interval`` before each poll, the first one included.
            sleep(interval)
            if clock() >= flow.expires_at:
                return {"error": "expired_token",
                        "error_description": "The sign-in code expired before it was used."}
            attempt += 1
            result = poll_once(flow.raw)
            answer = result.get("error")
            if answer not in RETRY_ANSWERS:
                return result
            if answer == "slow_down":
                interval += slow_down_seconds
            if on_poll is not None:
                on_poll(PollEvent(attempt, str(answer), interval))
    except KeyboardInterrupt:
        raise SignInCancelled() from None
