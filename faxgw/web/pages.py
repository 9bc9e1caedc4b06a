"""The pages people use: Email server (with Sign in / Sign out), Job status and each job,
Send a fax, Codes. Every one needs a session; every form carries the CSRF token."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from ..app import console, control, queries, signin
from ..app.devices import listener_rows
from ..domain import codes
from ..domain.errors import ConfigError, FaxgwError, JobNotFoundError
from ..domain.jobs import JobState
from . import previews, uploads
from .routes import (
    checked_form,
    current_session,
    page,
    refused_csrf,
    state_of,
    to_login,
)
from .sessions import Session
from .signin_flow import remaining
from .views import CERTIFICATE_WARNING, account_block, server_rows, size

PAGE_SIZE = 25
Handler = Callable[[Request, Session], Awaitable[Response]]


def logged_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Without a session, the Log in page."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        session = current_session(request)
        if session is None:
            return to_login()
        return await handler(request, session)

    return wrapper


def admin_only(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Without a session, the Log in page; in a "Send as me" user session, 403."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        session = current_session(request)
        if session is None:
            return to_login()
        if not session.admin:
            return page(request, "error.html", 403, session, title="Administrators only",
                        message=f"You are signed in as {session.user} to send faxes as "
                                "yourself: this page is for the gateway's administrator "
                                "(Log out, then log in with the admin password).")
        return await handler(request, session)

    return wrapper


def _not_yours(request: Request, session: Session, job_id: str) -> Response:
    """Another person's job looks to a user as if it did not exist."""
    return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                message=f"no job {job_id!r}")


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@admin_only
async def server(request: Request, session: Session) -> Response:
    config = state_of(request).config
    sheet = await run_in_threadpool(queries.status_sheet, config)
    accounts = []
    problem = ""
    if config.auth.method == "oauth2":
        try:
            accounts = await run_in_threadpool(signin.statuses, config)
        except FaxgwError as exc:
            problem = str(exc)
    return page(request, "server.html", session=session, title="Email server",
                nav="server", rows=server_rows(config, sheet, accounts),
                blocks=[account_block(a) for a in accounts], queue=sheet["queue"],
                warnings=sheet["warnings"], problem=problem,
                oauth2=config.auth.method == "oauth2",
                certificate_warning="" if sheet["certificate_validation"]
                else CERTIFICATE_WARNING,
                smtp_intake=listener_rows(sheet["smtp_intake"]) if sheet["smtp_intake"]
                else [])


@admin_only
async def sign_out(request: Request, session: Session) -> Response:
    form = await checked_form(request, session)
    if form is None:
        return refused_csrf(request, session)
    state = state_of(request)
    account = form.get("account")
    one = account if isinstance(account, str) and account else None
    assert state.pending is not None
    # Signing out every mailbox first stops the "Send as me" sign-ins under way, so that
    # none of them stores tokens after the tokens are removed.
    stopped = state.pending.cancel_all() if one is None else 0
    removed = await run_in_threadpool(signin.sign_out, state.config, one)
    session.flashes += [f"Signed out {name}. Its jobs wait until someone signs in again."
                        for name in removed] or ["No account was signed in."]
    # A person whose mailbox is signed out may no longer send as it: their console
    # sessions end too.
    ended = state.sessions.end_users([*removed, *([one] if one else [])])
    if ended:
        session.flashes.append(f"Ended {ended} console session(s) of people who send as "
                               "themselves: they sign in again with Send as me.")
    if stopped:
        session.flashes.append(f"Stopped {stopped} Send as me sign-in(s) under way.")
    return _see("/server")


@admin_only
async def sign_in(request: Request, session: Session) -> Response:
    flows = state_of(request).flows
    assert flows is not None
    if request.method == "POST":
        form = await checked_form(request, session)
        if form is None:
            return refused_csrf(request, session)
        what = form.get("action")
        if what == "cancel":
            flows.cancel()
        elif what == "done":
            flows.clear()
            return _see("/server")
        else:
            await run_in_threadpool(flows.start)
        return _see("/signin")
    view = flows.view()
    return page(request, "signin.html", session=session, title="Sign in", nav="server",
                view=view, minutes=remaining(view),
                refresh=2 if view.state == "waiting" else None)


def _states(request: Request) -> list[JobState]:
    wanted = request.query_params.getlist("state")
    return [JobState(s) for s in wanted if s in JobState.__members__.values()]


#: How often the Job status table refreshes itself (with JavaScript; htmx).
LIVE_SECONDS = 5


async def _job_table(request: Request, session: Session) -> dict[str, Any]:
    """What the job table shows: the page asked for, of the jobs this session may see."""
    config = state_of(request).config
    states = _states(request)
    try:
        number = int(request.query_params.get("page", "1"))
    except ValueError:
        number = 1
    result = await run_in_threadpool(functools.partial(
        console.jobs_page, config, states or None, number, PAGE_SIZE,
        sender=None if session.admin else session.user))
    return {"result": result, "state": states[0].value if states else "",
            "every": LIVE_SECONDS, "now": datetime.now(UTC)}


@logged_in
async def jobs(request: Request, session: Session) -> Response:
    return page(request, "jobs.html", session=session, title="Job status", nav="jobs",
                states=[s.value for s in JobState], **await _job_table(request, session))


async def job_table(request: Request) -> Response:
    """The job table alone, for the Job status page to refresh itself with. Without a
    session, htmx is told to go to the Log in page (a plain request is sent there)."""
    session = current_session(request)
    if session is None:
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return to_login()
    # No session handed to the template: the one-time messages wait for a whole page.
    return page(request, "jobs_table.html", **await _job_table(request, session))


@logged_in
async def job(request: Request, session: Session) -> Response:
    config = state_of(request).config
    try:
        detail = await run_in_threadpool(queries.job_detail, config,
                                         request.path_params["job_id"])
    except JobNotFoundError as exc:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=str(exc))
    if not session.owns(detail.job.sender):
        return _not_yours(request, session, request.path_params["job_id"])
    actions = [name for name in ("retry", "cancel", "hold", "release")
               if detail.job.state in control.ACTION_STATES[name]]
    shown = min(detail.job.pages or 0, previews.PAGES_SHOWN)
    return page(request, "job.html", session=session, title=f"Job {detail.job.id}",
                nav="jobs", detail=detail, job=detail.job, actions=actions, size=size,
                shown=shown)


@logged_in
async def job_fax(request: Request, session: Session) -> Response:
    """The fax as it was (or will be) sent: the attachment, shown in the browser."""
    try:
        job, path = await run_in_threadpool(console.attachment, state_of(request).config,
                                            request.path_params["job_id"])
    except JobNotFoundError as exc:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=str(exc))
    if not session.owns(job.sender):
        return _not_yours(request, session, request.path_params["job_id"])
    if path is None:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=f"job {job.id} has no attachment (not rendered yet, refused at "
                            "intake, or purged)")
    kind = "application/pdf" if path.suffix == ".pdf" else "image/tiff"
    return FileResponse(path, media_type=kind, filename=path.name,
                        content_disposition_type="inline")


@logged_in
async def job_action(request: Request, session: Session) -> Response:
    form = await checked_form(request, session)
    if form is None:
        return refused_csrf(request, session)
    action = request.path_params["action"]
    job_id = request.path_params["job_id"]
    if action not in control.ACTIONS:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=f"unknown action {action!r}")
    try:
        if not session.admin:
            found = await run_in_threadpool(console.find_job, state_of(request).config, job_id)
            if not session.owns(found.sender):
                return _not_yours(request, session, job_id)
            job_id = found.id
        outcomes = await run_in_threadpool(control.act, state_of(request).config, action,
                                           [job_id])
    except JobNotFoundError as exc:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=str(exc))
    for outcome in outcomes:
        session.flashes.append(outcome.refused or f"{action.capitalize()}: job "
                               f"{outcome.job_id} is now "
                               f"{outcome.job.state.value if outcome.job else ''}.")
    return _see(f"/jobs/{job_id}")


@logged_in
async def send(request: Request, session: Session) -> Response:
    config = state_of(request).config
    values = {"to": "", "subject": "", "note": "", "cover": uploads.default_cover(config)}
    if request.method == "GET":
        return page(request, "send.html", session=session, title="Send a fax", nav="send",
                    values=values)
    form = await checked_form(request, session)
    if form is None:
        return refused_csrf(request, session)
    try:
        return await _send(request, session, form)
    finally:
        await form.close()


async def _send(request: Request, session: Session, form: FormData) -> Response:
    config = state_of(request).config
    request_data = uploads.FaxRequest.from_form(form, cover_field=True)
    values = {"to": request_data.to, "subject": request_data.subject,
              "note": request_data.note, "cover": bool(request_data.cover)}
    action = form.get("action")
    try:
        if action == "preview":
            found = await uploads.preview(config, request_data,
                                          pictures=previews.PAGES_SHOWN)
            stored = previews.keep(session, found.images, found.pages)
            return page(request, "send.html", session=session, title="Send a fax",
                        nav="send", values=values, report=found.report, size=size,
                        preview=stored)
        created = await uploads.submit(config, request_data, sender=session.user)
    except (FaxgwError, ValueError) as exc:
        text = uploads.message(exc)
        if isinstance(exc, ConfigError):
            text = f"configuration error: {text}"
        return page(request, "send.html", 400, session, title="Send a fax", nav="send",
                    values=values, error=text)
    if created.state is JobState.FAILED:
        session.flashes.append(f"Job {created.id} failed (code {created.code}): "
                               f"{created.error}")
    else:
        session.flashes.append(f"Job {created.id} is {created.state.value}.")
    return _see(f"/jobs/{created.id}")


@logged_in
async def preview_picture(request: Request, session: Session) -> Response:
    """A page of this session's latest preview, as a picture."""
    image = previews.picture(session, request.path_params["preview_id"],
                             request.path_params["page"])
    if image is None:
        return page(request, "error.html", 404, session, title="Not found", nav="send",
                    message="This preview is gone (a newer one replaced it, or it is older "
                            "than 15 minutes): preview the fax again.")
    return Response(image.png, media_type="image/png")


@logged_in
async def job_picture(request: Request, session: Session) -> Response:
    """A page of a job's attachment, as a picture (a fax TIFF shows in every browser so)."""
    number = request.path_params["page"]
    if not 1 <= number <= previews.PAGES_SHOWN:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=f"pages 1 to {previews.PAGES_SHOWN} are shown as pictures")
    try:
        job, image = await run_in_threadpool(console.job_page_image, state_of(request).config,
                                             request.path_params["job_id"], number - 1)
        if not session.owns(job.sender):
            return _not_yours(request, session, request.path_params["job_id"])
    except JobNotFoundError as exc:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=str(exc))
    if image is None:
        return page(request, "error.html", 404, session, title="Job status", nav="jobs",
                    message=f"job {job.id} has no page {number} to show")
    return Response(image.png, media_type="image/png")


@logged_in
async def codes_page(request: Request, session: Session) -> Response:
    return page(request, "codes.html", session=session, title="Codes", nav="codes",
                entries=codes.all_codes())


ROUTES = [
    Route("/server", server),
    Route("/server/signout", sign_out, methods=["POST"]),
    Route("/signin", sign_in, methods=["GET", "POST"]),
    Route("/jobs", jobs),
    Route("/jobs/table", job_table),
    Route("/jobs/{job_id}", job),
    Route("/jobs/{job_id}/fax", job_fax),
    Route("/jobs/{job_id}/pages/{page:int}.png", job_picture),
    Route("/jobs/{job_id}/{action}", job_action, methods=["POST"]),
    Route("/send", send, methods=["GET", "POST"]),
    Route("/send/preview/{preview_id}/{page:int}.png", preview_picture),
    Route("/codes", codes_page),
]
