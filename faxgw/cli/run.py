"""``faxgw run``: the worker, as a service or as one cron-style run."""

from __future__ import annotations

import json

import click

from ..app.reports import check_once
from ..app.service import run_once, serve
from .context import CliContext, pass_cli


@click.command()
@click.option("--once", is_flag=True,
              help="Take the intake, send everything that is due now, then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the run's summary.")
@pass_cli
def run(cli_ctx: CliContext, once: bool, as_json: bool) -> None:
    """Run the worker: take dropped files, send due jobs, retry on schedule."""
    if not once:
        # The console (when [web] listen is set) is bound now: a wrong address or a port in
        # use stops here, before the worker starts.
        # The console's imports (Starlette, Jinja2, msal) are for the service only, not
        # for a cron-style --once run.
        from ..web.server import beside
        serve(cli_ctx.config, beside=beside(cli_ctx.config))
        return
    summary = run_once(cli_ctx.config)
    # Then what came back: the mailbox's reports ([inbox]) and the notifications due.
    # (``faxgw reports --poll --json`` prints what that did; this summary is the sending.)
    check_once(cli_ctx.config)
    if as_json:
        click.echo(json.dumps(summary.to_json()))
    else:
        click.echo(f"{summary.taken} taken, {summary.sent} sent, {summary.deferred} "
                   f"deferred, {summary.failed} failed, {summary.waiting_for_auth} "
                   "waiting for sign-in")


#: What this module adds to the ``faxgw`` group.
COMMANDS = (run,)
