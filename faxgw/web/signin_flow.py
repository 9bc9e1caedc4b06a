"""The console's device code sign-in: one at a time, waited for in a thread of its own; and
one per browser for "Send as me" (:class:`PendingSignIns`).

The page shows the verification address and the user code while the thread waits for the
person to finish; the device code itself stays inside the flow (never in a page, a URL or a
log). When the sign-in ends, the user code is forgotten and the page shows the outcome.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, replace

from ..app import signin
from ..config import Config
from ..domain import codes
from ..domain.errors import FaxgwError

log = logging.getLogger("faxgw.web")

__all__ = ["MAX_PENDING", "PendingSignIns", "SignInFlows", "SignInView", "TooManySignIns"]

IDLE, WAITING, SIGNED_IN, FAILED, CANCELLED = "idle", "waiting", "signed-in", "failed", \
    "cancelled"


@dataclass(frozen=True)
class SignInView:
    """What the Sign in page shows."""

    state: str = IDLE
    verification_uri: str = ""
    user_code: str = ""
    expires_at: float = 0.0
    account: str = ""
    message: str = ""
    code: int | None = None
    solution: str = ""


class SignInFlows:
    """The one device code sign-in the console may have under way."""

    def __init__(self, config: Config, *, user: bool = False) -> None:
        """``user``: a person signs in with their own mailbox ("Send as me"), not the
        gateway's account; the account must pass :func:`~faxgw.app.signin.user_refusal`."""
        self._config = config
        self._user = user
        self._refusal = ""
        self._lock = threading.Lock()
        self._view = SignInView()
        self._generation = 0
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None

    def view(self) -> SignInView:
        with self._lock:
            return self._view

    def start(self, account: str | None = None) -> SignInView:
        """Ask the identity provider for a code and wait for the sign-in in a thread; when
        one is already under way, that one (blocking: call it from a worker thread)."""
        with self._lock:
            if self._view.state == WAITING:
                return self._view
            self._generation += 1
            generation = self._generation
            self._cancelled = threading.Event()
            cancelled = self._cancelled
            self._view = SignInView(state=WAITING, message="Asking the sign-in service…")
        try:
            flow = signin.start_user_sign_in(self._config, self._refused) if self._user \
                else signin.start_sign_in(self._config, account)
        except FaxgwError as exc:
            self._end(generation, FAILED, exc)
            return self.view()
        with self._lock:
            if generation != self._generation or cancelled.is_set():
                flow.close()
                return self._view
            self._view = SignInView(
                state=WAITING, verification_uri=flow.flow.verification_uri,
                user_code=flow.flow.user_code, expires_at=flow.flow.expires_at,
                account=flow.flow.account_hint or "")
        self._thread = threading.Thread(target=self._wait, args=(flow, generation, cancelled),
                                        name="faxgw-web-sign-in", daemon=True)
        self._thread.start()
        return self.view()

    def cancel(self) -> None:
        """Stop waiting; the page shows the sign-in cancelled."""
        with self._lock:
            self._cancelled.set()
            if self._view.state == WAITING:
                self._generation += 1
                self._view = SignInView(state=CANCELLED,
                                        message="Sign-in cancelled; nothing was stored.")

    def clear(self) -> None:
        """Forget a finished sign-in's outcome (the page shows the start again)."""
        with self._lock:
            if self._view.state != WAITING:
                self._view = SignInView()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel a sign-in under way and wait a little for its thread."""
        self.cancel()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _refused(self, username: str) -> str | None:
        """:func:`~faxgw.app.signin.user_refusal`, noted so that the page shows it without a
        sign-in code's solution (the sign-in worked; the account may not be used)."""
        self._refusal = signin.user_refusal(self._config, username) or ""
        return self._refusal or None

    def _wait(self, flow: signin.SignIn, generation: int, cancelled: threading.Event) -> None:
        def on_poll(event: signin.PollEvent) -> None:
            if cancelled.is_set():
                raise signin.SignInCancelled()

        try:
            with flow:
                account = flow.finish(on_poll=on_poll)
        except signin.SignInCancelled:
            return
        except FaxgwError as exc:
            self._end(generation, FAILED, FaxgwError(self._refusal) if self._refusal else exc)
            return
        except Exception as exc:  # noqa: BLE001 - a thread must end with an answer on the page
            log.exception("the sign-in stopped with an unexpected error")
            self._end(generation, FAILED, FaxgwError(f"unexpected error: {type(exc).__name__}",
                                                     code=codes.INTERNAL))
            return
        log.warning("%s signed in as %s from the web console",
                    "a person (send as me)" if self._user else "the gateway", account)
        with self._lock:
            if generation == self._generation:
                self._view = SignInView(state=SIGNED_IN, account=account,
                                        message=f"Signed in as {account}.")

    def _end(self, generation: int, state: str, exc: FaxgwError) -> None:
        code = exc.code
        entry = codes.CODES.get(code) if code is not None else None
        with self._lock:
            if generation != self._generation:
                return
            self._view = replace(SignInView(), state=state, message=str(exc), code=code,
                                 solution=entry.solution if entry else "")
        log.warning("sign-in from the web console failed: %s", exc)


#: At most this many "Send as me" sign-ins wait at once: each holds a thread and a device
#: code at the identity provider, so beyond it a new one is refused (429) until some end.
MAX_PENDING = 32
#: Finished sign-ins whose browser has not come back for the outcome are kept up to this
#: many (then the oldest are forgotten): the table never grows without bound.
MAX_KEPT = 4 * MAX_PENDING


class TooManySignIns(Exception):
    """:data:`MAX_PENDING` "Send as me" sign-ins are under way: try again shortly."""


class PendingSignIns:
    """The "Send as me" sign-ins under way, by browser."""

    def __init__(self, config: Config, *, limit: int = MAX_PENDING) -> None:
        self._config = config
        self._limit = limit
        self._lock = threading.Lock()
        self._flows: dict[str, SignInFlows] = {}

    def get(self, key: str | None) -> SignInFlows | None:
        """The sign-in of the browser whose cookie holds ``key``, if any."""
        with self._lock:
            return self._flows.get(key or "")

    def waiting(self) -> int:
        """How many sign-ins are under way (started and not yet ended)."""
        with self._lock:
            return sum(1 for flows in self._flows.values() if _open(flows))

    def new(self) -> tuple[str, SignInFlows]:
        """A sign-in for a browser: the key for its cookie, and the flow (not started).
        Raises :class:`TooManySignIns` when :data:`MAX_PENDING` are under way."""
        key = secrets.token_urlsafe(32)
        flows = SignInFlows(self._config, user=True)
        with self._lock:
            if sum(1 for other in self._flows.values() if _open(other)) >= self._limit:
                raise TooManySignIns(f"{self._limit} sign-ins are under way")
            ended = [k for k, other in self._flows.items() if not _open(other)]
            while ended and len(self._flows) >= MAX_KEPT:
                self._flows.pop(ended.pop(0))
            self._flows[key] = flows
        return key, flows

    def pop(self, key: str | None) -> SignInFlows | None:
        """Forget a browser's sign-in (done, or to start again)."""
        with self._lock:
            return self._flows.pop(key or "", None)

    def cancel_all(self) -> int:
        """Cancel every sign-in under way (the administrator signed every mailbox out) and
        forget them all; how many were waiting."""
        with self._lock:
            flows, self._flows = list(self._flows.values()), {}
        waiting = sum(1 for flow in flows if _open(flow))
        for flow in flows:
            flow.cancel()
        return waiting

    def close(self) -> None:
        """Cancel every sign-in under way and wait a little for their threads."""
        with self._lock:
            flows, self._flows = list(self._flows.values()), {}
        for flow in flows:
            flow.cancel()
        for flow in flows:
            flow.close(1.0)


def _open(flows: SignInFlows) -> bool:
    """Made and not yet started, or waiting for the person: it counts against the limit."""
    return flows.view().state in (IDLE, WAITING)


def remaining(view: SignInView) -> int:
    """Whole minutes until the code stops working."""
    return max(0, int((view.expires_at - time.time()) // 60))
