"""``faxgw reports``: what the mailbox reader saw and what it matched."""

from __future__ import annotations

import json

import click

from ..app.reports import check_once, list_reports
from .context import CliContext, pass_cli
from .output import when


@click.command("reports")
@click.option("--unmatched", is_flag=True, help="Only reports that could not be tied to a job.")
@click.option("--poll", is_flag=True,
              help="Read the mailbox now (and send due notifications) before listing.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="At most this many reports, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@pass_cli
def reports(cli_ctx: CliContext, unmatched: bool, poll: bool, limit: int,
            as_json: bool) -> None:
    """List the reports read from the sending mailbox ([inbox]): fax-service confirmations
    and bounces, the job each was tied to and how; messages that are no report are listed
    as unmatched and left in the mailbox."""
    summary = check_once(cli_ctx.config) if poll else None
    found = list_reports(cli_ctx.config, unmatched=unmatched, limit=limit)
    if as_json:
        out: dict[str, object] = {"reports": [report.to_json() for report in found]}
        if summary is not None:
            out["poll"] = summary.to_json()
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if summary is not None:
        if summary.poll is None:
            click.echo("mailbox not read ([inbox] method = \"none\", or another process "
                       "is reading it)")
        else:
            read = summary.poll
            click.echo(f"{read.seen} read, {read.matched} matched, {read.unmatched} unmatched, "
                       f"{read.unconfirmed} unconfirmed; {summary.notify.sent} notified")
    if not found:
        click.echo("no reports" + (" unmatched" if unmatched else ""))
        return
    for report in found:
        job = report.job_id or "unmatched"
        how = f" by {report.matched_by.value}" if report.matched_by.value else ""
        code = f" [{report.code}]" if report.code is not None else ""
        click.echo(f"{when(report.received)}  {job}{how}  {report.kind} "
                   f"{report.outcome.value}{code}: {report.summary}")
        click.echo(f"{'':>20}from {report.sender or '-'}: {report.subject or '-'}")


#: What this module adds to the ``faxgw`` group.
COMMANDS = (reports,)
