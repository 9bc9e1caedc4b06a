"""Send as me: a person who is not the administrator signs in to the console with their own
mailbox (device code, delegated, through the gateway's app registration and token cache) and
gets a user session: Send a fax from their own mailbox, and Job status for their own jobs.

Who they are is the account the identity provider reports at the end of the sign-in, never a
form field; it must be in ``[web] user_domains``. Each browser has its own sign-in under way
(a random id in a cookie of its own), apart from the admin's one-at-a-time Sign in page; the
session is made only when that browser asks after the sign-in has finished.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .routes import (
    before_session,
    current_session,
    home,
    login_token_ok,
    start_session,
    state_of,
)
from .signin_flow import (
    SIGNED_IN,
    WAITING,
    PendingSignIns,
    SignInView,
    TooManySignIns,
    remaining,
)

__all__ = ["ME_COOKIE", "ROUTES"]

ME_COOKIE = "faxgw_me"
#: The answer when too many "Send as me" sign-ins are under way at once.
BUSY = ("Too many people are signing in with \"Send as me\" right now. Try again in a "
        "minute or two.")


def _pending(request: Request) -> PendingSignIns:
    pending = state_of(request).pending
    assert pending is not None
    return pending


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


async def send_as_me(request: Request) -> Response:
    session = current_session(request)
    if session is not None:
        return _see(home(session))
    pending = _pending(request)
    key = request.cookies.get(ME_COOKIE)
    if request.method == "POST":
        form = await request.form()
        if not login_token_ok(request, form):
            return _page(request, SignInView(), "The form was too old: try again.", 403)
        flows = pending.get(key)
        action = form.get("action")
        if action == "cancel":
            if flows is not None:
                flows.cancel()
            return _see("/login/me")
        response = _see("/login/me")
        if flows is None or flows.view().state != WAITING:
            if flows is not None:
                pending.pop(key)
            try:
                key, flows = pending.new()
            except TooManySignIns:
                return _page(request, SignInView(), BUSY, 429)
            response.set_cookie(ME_COOKIE, key, max_age=3600, httponly=True,
                                samesite="strict", secure=state_of(request).secure,
                                path="/login/me")
        await run_in_threadpool(flows.start)
        return response
    flows = pending.get(key)
    view = flows.view() if flows is not None else SignInView()
    if view.state == SIGNED_IN and flows is not None:
        pending.pop(key)
        response = _see("/send")
        user = start_session(request, response, view.account)
        user.flashes.append(f"Signed in as {view.account}: the faxes you send go out from "
                            "your own mailbox, and Job status shows your own jobs.")
        response.delete_cookie(ME_COOKIE, path="/login/me")
        return response
    return _page(request, view)


def _page(request: Request, view: SignInView, error: str = "",
          status_code: int = 200) -> Response:
    config = state_of(request).config
    return before_session(request, "me.html", status_code, title="Send as me", view=view,
                          error=error, minutes=remaining(view),
                          refresh=2 if view.state == WAITING else None,
                          oauth2=config.auth.method == "oauth2",
                          domains=config.web.user_domains)


ROUTES = [Route("/login/me", send_as_me, methods=["GET", "POST"])]
