"""Running the gateway: one cron-style run (``faxgw run --once``), or the service until it is
told to stop (``faxgw run``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime

from ..config import Config
from ..domain.cluster import Coordination
from ..domain.errors import FaxgwError
from ..engine.observe import DurationsSnapshot, Observations, Snapshot
from ..engine.outcomes import RunSummary
from ..engine.renderpool import service_processes
from ..engine.scheduler import Service
from .reports import check_forever
from .submit import submit
from .wiring import build_worker

log = logging.getLogger("faxgw.worker")

#: How often a service writes its heartbeat into the store's host list.
HEARTBEAT_SECONDS = 10.0

__all__ = ["Beside", "DurationsSnapshot", "LastRound", "Observations", "RunSummary",
           "Snapshot", "run_once", "serve"]


def run_once(config: Config) -> RunSummary:
    """Take the intake, send everything that is due now, and return what happened.

    Renders in render processes, started only when a job needs rendering (a run that only
    sends jobs rendered before starts none)."""
    worker = build_worker(config, render_processes=service_processes())
    try:
        return asyncio.run(worker.run_once())
    finally:
        worker.close()


#: When the worker last finished a round (None before the first): what ``/readyz`` reads.
LastRound = Callable[[], datetime | None]
#: Something a face runs in the service's loop until the stop event is set (the web console);
#: it is given the stop event, :data:`LastRound` and the worker's :class:`Observations`
#: (render and send durations, sessions per mailbox: for ``/metrics``).
Beside = Callable[[asyncio.Event, LastRound, Observations], Awaitable[None]]


def serve(config: Config, *, beside: Beside | None = None) -> None:
    """Run the service until SIGINT or SIGTERM; the send under way is finished and recorded
    first. Renders in processes of its own, started now. ``beside`` (the web console) runs
    in the same loop and stops with it."""
    worker = build_worker(config, render_processes=service_processes())
    try:
        if worker.render_pool is not None:
            worker.render_pool.warm()
        asyncio.run(_serve(worker.config, Service(worker), beside))
    finally:
        worker.close()


async def _serve(config: Config, service: Service, beside: Beside | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Stop between sends: a send under way is finished and recorded first.
        loop.add_signal_handler(signum, stop.set)
    log.warning("faxgw running: spool %s, mail server %s:%d; stop with Ctrl-C",
                config.spool.dir, config.smtp.host, config.smtp.port)
    # Beside the sending: the mailbox's reports ([inbox]) and the notifications due, with
    # the worker's own credentials (one token cache, one writer of it).
    runs: list[Awaitable[None]] = [
        service.run(stop),
        check_forever(config, stop, credentials=service.worker.credentials,
                      store=service.worker.store, turns=service.worker.coordination),
        _heartbeat(service.worker.coordination, stop),
        service.worker.coordination.listen(service.wake, stop),
    ]
    if beside is not None:
        runs.append(beside(stop, lambda: service.last_round_at, service.worker.observations))
    if config.intake.smtp.listen:
        runs.append(_devices(config, stop, service))
    try:
        await asyncio.gather(*runs)
    finally:
        stop.set()  # one part ended (or failed): the other ends too
    log.warning("faxgw stopped")


async def _heartbeat(coordination: Coordination, stop: asyncio.Event) -> None:
    """Tell the other hosts this one is alive (``faxgw status`` lists them) until ``stop``;
    a beat that cannot be written is tried again at the next."""
    while not stop.is_set():
        try:
            coordination.beat()
        except FaxgwError as exc:
            log.warning("! the heartbeat could not be written: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
    try:
        coordination.leave()
    except FaxgwError as exc:
        log.info("the host list could not be told this host stops: %s", exc)


def _devices(config: Config, stop: asyncio.Event, service: Service) -> Awaitable[None]:
    """The SMTP intake ([intake.smtp] listen): messages become jobs as by ``faxgw submit``,
    rendered in the service's warm render processes (not one started per message)."""
    from ..devices.listener import serve_smtp  # aiosmtpd: only when devices may send
    from .devices import mailbox_for

    return serve_smtp(config, stop, functools.partial(
        submit, config, renderer=service.worker.render_pool),
        mailbox_for=mailbox_for(config, service.worker.credentials))
