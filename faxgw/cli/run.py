"""``faxgw run``: the worker, as a service or as one cron-style run."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import click

from ..outcomes import RunSummary
from ..renderpool import service_processes
from ..scheduler import Service
from ..worker import Worker
from .context import CliContext, pass_cli

log = logging.getLogger("faxgw.worker")


async def _serve(worker: Worker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Stop between sends: a send under way is finished and recorded first.
        loop.add_signal_handler(signum, stop.set)
    log.warning("faxgw running: spool %s, mail server %s:%d; stop with Ctrl-C",
                worker.config.spool.dir, worker.config.smtp.host, worker.config.smtp.port)
    await Service(worker).run(stop)
    log.warning("faxgw stopped")


@click.command()
@click.option("--once", is_flag=True,
              help="Take the intake, send everything that is due now, then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the run's summary.")
@pass_cli
def run(cli_ctx: CliContext, once: bool, as_json: bool) -> None:
    """Run the worker: take dropped files, send due jobs, retry on schedule."""
    # The service renders in processes of its own (started once, now); a single run
    # would spend longer starting them than it gains.
    worker = Worker(cli_ctx.config, render_processes=0 if once else service_processes())
    try:
        if once:
            summary: RunSummary = asyncio.run(worker.run_once())
            if as_json:
                click.echo(json.dumps(summary.to_json()))
            else:
                click.echo(f"{summary.taken} taken, {summary.sent} sent, {summary.deferred} "
                           f"deferred, {summary.failed} failed, {summary.waiting_for_auth} "
                           "waiting for sign-in")
        else:
            asyncio.run(_serve(worker))
    finally:
        worker.close()
