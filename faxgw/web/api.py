"""The JSON API for programs (bearer tokens from ``faxgw web token``) and the operations
endpoints: ``/healthz``, ``/readyz`` (the store, and the worker when one runs in this
process), ``/metrics`` (Prometheus text format).

Jobs look as ``faxgw jobs --json`` and ``faxgw show --json`` print them; errors are
``{"error": "...", "code": N | null}``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..app import console, control, queries, signin
from ..config import Config
from ..domain.errors import ConfigError, FaxgwError, JobNotFoundError
from ..domain.jobs import JobState
from . import credentials, uploads
from .routes import state_of

if TYPE_CHECKING:
    from ..app.service import DurationsSnapshot, Observations, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def error(status: int, text: str, code: int | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": text, "code": code}, status_code=status, headers=headers)


def with_token(handler: Callable[[Request], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
    """401 unless the request carries one of the API tokens as ``Authorization: Bearer``."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        path = state_of(request).config.web.api_token_file
        if scheme.lower() != "bearer" or not await run_in_threadpool(
                credentials.check_api_token, path, token.strip()):
            return error(401, "a bearer token is needed: create one with 'faxgw web token'",
                         headers={"WWW-Authenticate": 'Bearer realm="faxgw"'})
        try:
            return await handler(request)
        except JobNotFoundError as exc:
            return error(404, str(exc), exc.code)
        except ConfigError:
            raise
        except (FaxgwError, ValueError) as exc:
            return error(400, uploads.message(exc), getattr(exc, "code", None))

    return wrapper


@with_token
async def api_status(request: Request) -> Response:
    sheet = await run_in_threadpool(queries.status_sheet, state_of(request).config)
    return JSONResponse(sheet)


@with_token
async def api_jobs(request: Request) -> Response:
    wanted = request.query_params.getlist("state")
    bad = [s for s in wanted if s not in JobState.__members__.values()]
    if bad:
        return error(400, f"unknown state {bad[0]!r}: one of "
                          f"{', '.join(s.value for s in JobState)}")
    limit = request.query_params.get("limit")
    rows = await run_in_threadpool(queries.list_jobs, state_of(request).config,
                                   [JobState(s) for s in wanted] or None,
                                   int(limit) if limit and limit.isdigit() else None)
    return JSONResponse([job.to_json() for job in rows])


@with_token
async def api_job(request: Request) -> Response:
    detail = await run_in_threadpool(queries.job_detail, state_of(request).config,
                                     request.path_params["job_id"])
    return JSONResponse(detail.to_json())


@with_token
async def api_submit(request: Request) -> Response:
    async with request.form() as form:
        fax = uploads.FaxRequest.from_form(form)
        job = await uploads.submit(state_of(request).config, fax)
    return JSONResponse({"id": job.id, "state": job.state.value, "code": job.code},
                        status_code=201)


@with_token
async def api_action(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in control.ACTIONS:
        return error(404, f"unknown action {action!r}: retry, cancel, hold or release")
    outcomes = await run_in_threadpool(control.act, state_of(request).config, action,
                                       [request.path_params["job_id"]])
    outcome = outcomes[0]
    if outcome.job is None:
        return error(409, outcome.refused or "refused")
    return JSONResponse(outcome.job.to_json())


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


#: A worker in this process whose last round finished longer ago than this is not ready
#: (rounds start every second; one that sends many faxes takes minutes).
ROUND_LATE_SECONDS = 600.0


def worker_readiness(last_round: Callable[[], datetime | None] | None,
                     now: datetime | None = None) -> tuple[str, datetime | None]:
    """``ok``, ``late`` (no round finished for :data:`ROUND_LATE_SECONDS`), ``starting``
    (none yet) or ``not checked`` (no worker in this process: ``faxgw web``); and when the
    last round finished."""
    if last_round is None:
        return "not checked", None
    moment = last_round()
    if moment is None:
        return "starting", None
    age = ((now or datetime.now(UTC)) - moment).total_seconds()
    return ("ok" if age <= ROUND_LATE_SECONDS else "late"), moment


async def readyz(request: Request) -> Response:
    state = state_of(request)
    store = await run_in_threadpool(console.store_ready, state.config)
    worker, moment = worker_readiness(state.last_round)
    ready = store and worker in ("ok", "not checked")
    return JSONResponse({"ready": ready, "store": "ok" if store else "unreachable",
                         "worker": worker,
                         "last_round": moment.isoformat(timespec="seconds") if moment else None},
                        status_code=200 if ready else 503)


def _histogram(name: str, documentation: str,
               figures: DurationsSnapshot) -> HistogramMetricFamily:
    """A Prometheus histogram from an engine durations snapshot (cumulative buckets)."""
    family = HistogramMetricFamily(name, documentation)
    buckets = [(_bound(bound), float(count)) for bound, count in figures.buckets]
    family.add_metric([], [*buckets, ("+Inf", float(figures.count))],
                      sum_value=figures.total_seconds)
    return family


def _bound(seconds: float) -> str:
    return repr(float(seconds))


def worker_families(snapshot: Snapshot) -> list[Any]:
    """The worker's own figures: render and send durations, sessions per mailbox."""
    sessions = GaugeMetricFamily("faxgw_mailbox_sessions", "Sessions open to the mail "
                                 "service, per sending mailbox", labels=["mailbox"])
    for mailbox, count in sorted(snapshot.sessions.items()):
        sessions.add_metric([mailbox], count)
    families = [
        _histogram("faxgw_render_duration_seconds", "Time to render a job's attachment "
                   "(and build its email), in seconds", snapshot.render),
        _histogram("faxgw_send_duration_seconds", "Time the mail service took to take one "
                   "fax email (successful or not), in seconds", snapshot.send),
        sessions,
    ]
    if snapshot.claim is not None:
        families.append(_histogram("faxgw_claim_duration_seconds", "Time to claim due jobs "
                                   "(one job store transaction), in seconds", snapshot.claim))
    return families


class GatewayCollector(Collector):
    """Read at each scrape: jobs by state, whether the store answers, sessions open; with a
    worker in this process, its durations and sessions per mailbox."""

    def __init__(self, config: Config, sessions: Callable[[], int],
                 observations: Observations | None = None) -> None:
        self._config = config
        self._sessions = sessions
        self._observations = observations

    def _token_expiry(self) -> GaugeMetricFamily | None:
        """Seconds until each account's access token expires (negative: expired, refreshed
        at the next send); None unless the method is oauth2 and the token cache reads."""
        if self._config.auth.method != "oauth2":
            return None
        try:
            accounts = signin.statuses(self._config)
        except Exception:  # noqa: BLE001 - a scrape never fails; Email server says why
            return None
        expiry = GaugeMetricFamily("faxgw_token_expiry_seconds", "Seconds until the access "
                                   "token of each signed-in account expires", labels=["account"])
        now = datetime.now(UTC)
        for status in accounts:
            if status.access_token_expires is not None:
                expiry.add_metric([status.account],
                                  (status.access_token_expires - now).total_seconds())
        return expiry

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily("faxgw_jobs", "Jobs in the job store, by state",
                                 labels=["state"])
        up = GaugeMetricFamily("faxgw_store_up", "1 when the job store could be read")
        finished = GaugeMetricFamily(
            "faxgw_jobs_finished", "Jobs kept in the store (until the retention purge) that "
            "ended sent or failed, by state and code", labels=["state", "code"])
        oldest = GaugeMetricFamily("faxgw_oldest_waiting_seconds",
                                   "Age of the oldest queued or deferred job")
        try:
            figures = console.job_figures(self._config)
        except Exception:  # noqa: BLE001 - a scrape reports the store as down, never fails
            figures = None
        for state in JobState:
            jobs.add_metric([state.value], figures.by_state.get(state, 0) if figures else 0)
        up.add_metric([], 1 if figures else 0)
        if figures is not None:
            for (state_name, code), count in sorted(figures.finished_by_code.items()):
                finished.add_metric([state_name, str(code)], count)
            oldest.add_metric([], figures.oldest_waiting_seconds)
        if figures is not None and figures.jobs_dead_tuples is not None:
            dead = GaugeMetricFamily("faxgw_store_jobs_dead_tuples", "Dead row versions in the "
                                     "PostgreSQL jobs table (vacuum not keeping up: slower claims)")
            dead.add_metric([], figures.jobs_dead_tuples)
            yield dead
        sessions = GaugeMetricFamily("faxgw_web_sessions", "Console log-in sessions open")
        sessions.add_metric([], self._sessions())
        yield from (jobs, up, finished, oldest, sessions)
        if self._observations is not None:
            yield from worker_families(self._observations.snapshot())
        expiry = self._token_expiry()
        if expiry is not None:
            yield expiry


async def metrics(request: Request) -> Response:
    state = state_of(request)
    registry = CollectorRegistry()
    registry.register(GatewayCollector(state.config, lambda: len(state.sessions),
                                       state.observations))
    body = await run_in_threadpool(generate_latest, registry)
    return PlainTextResponse(body, media_type=CONTENT_TYPE)


ROUTES = [
    Route("/api/status", api_status),
    Route("/api/jobs", api_jobs),
    Route("/api/jobs", api_submit, methods=["POST"]),
    Route("/api/jobs/{job_id}", api_job),
    Route("/api/jobs/{job_id}/{action}", api_action, methods=["POST"]),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]
