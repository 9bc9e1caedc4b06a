"""Running the gateway: one cron-style run (``faxgw run --once``), or the service until it is
told to stop (``faxgw run``)."""

from __future__ import annotations

import asyncio
import logging
import signal

from ..config import Config
from ..engine.outcomes import RunSummary
from ..engine.renderpool import service_processes
from ..engine.scheduler import Service
from .wiring import build_worker

log = logging.getLogger("faxgw.worker")

__all__ = ["RunSummary", "run_once", "serve"]


def run_once(config: Config) -> RunSummary:
    """Take the intake, send everything that is due now, and return what happened.

    Renders in threads: a single run would spend longer starting render processes than it
    gains from them."""
    worker = build_worker(config)
    try:
        return asyncio.run(worker.run_once())
    finally:
        worker.close()


def serve(config: Config) -> None:
    """Run the service until SIGINT or SIGTERM; the send under way is finished and recorded
    first. Renders in processes of its own, started now."""
    worker = build_worker(config, render_processes=service_processes())
    try:
        asyncio.run(_serve(worker.config, Service(worker)))
    finally:
        worker.close()


async def _serve(config: Config, service: Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Stop between sends: a send under way is finished and recorded first.
        loop.add_signal_handler(signum, stop.set)
    log.warning("faxgw running: spool %s, mail server %s:%d; stop with Ctrl-C",
                config.spool.dir, config.smtp.host, config.smtp.port)
    await service.run(stop)
    log.warning("faxgw stopped")
