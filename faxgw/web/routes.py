"""The console as an ASGI app: its state, the log-in, the guards every page and form passes
through (session, CSRF), and the security headers on every answer."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Config
from ..domain.codes import INTERNAL
from . import credentials
from .sessions import LoginThrottle, Session, Sessions
from .signin_flow import PendingSignIns, SignInFlows
from .views import when, when_seconds

if TYPE_CHECKING:
    from ..app.service import Observations

__all__ = ["WebState", "create_app"]

log = logging.getLogger("faxgw.web")

COOKIE = "faxgw_session"
LOGIN_COOKIE = "faxgw_login"
#: Only the console's own files: its script and htmx, its stylesheet, its page pictures;
#: connect-src for the Job status table's refresh (htmx asks the console itself).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


@dataclass
class WebState:
    """What every request handler shares."""

    config: Config
    sessions: Sessions = field(default_factory=Sessions)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    flows: SignInFlows | None = None
    #: "Send as me" sign-ins under way, one per browser (made in ``__post_init__``).
    pending: PendingSignIns | None = None
    #: When the worker in this process last finished a round (``faxgw run`` with
    #: ``[web] listen``); None when no worker runs beside the console (``faxgw web``).
    last_round: Callable[[], datetime | None] | None = None
    #: What that worker observes (render and send durations, sessions per mailbox) for
    #: ``/metrics``; None without a worker beside the console.
    observations: Observations | None = None
    templates: Environment = field(default_factory=lambda: Environment(
        loader=PackageLoader("faxgw.web", "templates"), autoescape=select_autoescape(default=True),
        trim_blocks=True, lstrip_blocks=True))

    def __post_init__(self) -> None:
        if self.flows is None:
            self.flows = SignInFlows(self.config)
        if self.pending is None:
            self.pending = PendingSignIns(self.config)
        self.templates.filters["when"] = when
        self.templates.filters["when_seconds"] = when_seconds

    def close(self) -> None:
        """Cancel the sign-ins under way and wait a little for their threads."""
        assert self.flows is not None and self.pending is not None
        self.pending.close()
        self.flows.close()

    @property
    def secure(self) -> bool:
        """Served over TLS: cookies are Secure."""
        return self.config.web.certificate_file is not None


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
                if not scope["path"].startswith("/static/"):
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)


def state_of(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def page(request: Request, template: str, status_code: int = 200,
         session: Session | None = None, **values: Any) -> HTMLResponse:
    """A page from its template; a logged-in page gets the navigation and the CSRF token."""
    flashes: list[str] = []
    if session is not None:
        flashes, session.flashes = session.flashes, []
    html = state_of(request).templates.get_template(template).render(
        request=request, session=session, csrf=session.csrf if session else "",
        flashes=flashes, **values)
    return HTMLResponse(html, status_code=status_code)


def current_session(request: Request) -> Session | None:
    return state_of(request).sessions.get(request.cookies.get(COOKIE))


def to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def home(session: Session) -> str:
    """Where a session starts: Email server for the admin, Send a fax for a user."""
    return "/server" if session.admin else "/send"


def before_session(request: Request, template: str, status_code: int = 200,
                   **values: Any) -> HTMLResponse:
    """A page whose form is sent before there is a session (Log in, Send as me): its CSRF
    token ``login_csrf`` is also in a short-lived cookie of its own (double submit)."""
    token = secrets.token_urlsafe(32)
    response = page(request, template, status_code, None, login_csrf=token, **values)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=state_of(request).secure, path="/login")
    return response


def login_token_ok(request: Request, form: FormData) -> bool:
    """Whether a form sent before there is a session carries its cookie's token."""
    token, cookie = form.get("csrf"), request.cookies.get(LOGIN_COOKIE, "")
    return bool(isinstance(token, str) and cookie and secrets.compare_digest(token, cookie))


def start_session(request: Request, response: Response, user: str = "") -> Session:
    """Log the browser in (the admin, or ``user`` for "Send as me")."""
    state = state_of(request)
    session = state.sessions.create(user)
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict",
                        secure=state.secure, path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return session


async def checked_form(request: Request, session: Session) -> FormData | None:
    """The POSTed form when its CSRF token is the session's, else None."""
    form = await request.form()
    token = form.get("csrf")
    if isinstance(token, str) and session.csrf_ok(token):
        return form
    await form.close()
    return None


def refused_csrf(request: Request, session: Session | None) -> HTMLResponse:
    return page(request, "error.html", 403, session, title="Refused",
                message="The form was not sent from this console (its security token is "
                        "missing or old). Go back, reload the page and try again.")


async def login_page(request: Request) -> Response:
    state = state_of(request)
    if request.method == "GET":
        session = current_session(request)
        if session is not None:
            return RedirectResponse(home(session), status_code=303)
        return _login_form(request, "")
    form = await request.form()
    if not login_token_ok(request, form):
        return _login_form(request, "The log-in form was too old: try again.", 403)
    client = request.client.host if request.client else "?"
    wait = state.throttle.wait_seconds(client)
    if wait > 0:
        return _login_form(request, f"Too many failed log-ins: wait {int(wait) + 1} seconds "
                                    "and try again.", 429)
    password = form.get("password")
    path = state.config.web.admin_password_file
    good = await asyncio.to_thread(credentials.check_password, path,
                                   password if isinstance(password, str) else "")
    if not good:
        pause = state.throttle.failed(client)
        message = "Wrong password." if credentials.has_password(path) else \
            "No admin password is set: run 'faxgw web password' on the gateway."
        if pause:
            message += f" Wait {int(pause)} seconds before the next try."
        return _login_form(request, message, 401)
    state.throttle.succeeded(client)
    response = RedirectResponse("/server", status_code=303)
    start_session(request, response)
    return response


def _login_form(request: Request, error: str, status_code: int = 200) -> HTMLResponse:
    path = state_of(request).config.web.admin_password_file
    return before_session(request, "login.html", status_code, title="Log in", error=error,
                          no_password=not credentials.has_password(path))


async def logout(request: Request) -> Response:
    # A GET is safe here: the cookie is SameSite=Strict, so another site cannot send it.
    state_of(request).sessions.end(request.cookies.get(COOKIE))
    response = to_login()
    response.delete_cookie(COOKIE, path="/")
    return response


async def root(request: Request) -> Response:
    session = current_session(request)
    return RedirectResponse(home(session) if session else "/login", 303)


async def not_found(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", 404, current_session(request), title="Not found",
                message="There is no such page.")


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error (code %d) answering %s %s: %s: %s", INTERNAL, request.method,
              request.url.path, type(exc).__name__, exc)
    return page(request, "error.html", 500, None, title="Unexpected error",
                message=f"faxgw met an unexpected error (code {INTERNAL}); the gateway's log "
                        "says more.")


def create_app(config: Config, state: WebState | None = None) -> Starlette:
    """The console for ``config``: pages, API, health and metrics."""
    from . import api, me, pages

    web = state or WebState(config)
    routes = [
        Route("/", root),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout),
        *me.ROUTES,
        *pages.ROUTES,
        *api.ROUTES,
        Mount("/static", StaticFiles(packages=[("faxgw.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={404: not_found, 500: server_error})
    app.state.web = web
    return app
