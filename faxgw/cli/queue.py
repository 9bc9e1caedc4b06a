"""The queue: ``faxgw jobs``, ``show``, and the controls ``cancel``, ``retry``, ``hold``,
``release`` (by job or by state)."""

from __future__ import annotations

import json

import click

from ..app import queries
from ..app.control import ACTION_STATES, act
from ..domain.jobs import JobState
from .context import CliContext, pass_cli
from .output import print_jobs, when

STATE_CHOICE = click.Choice([state.value for state in JobState])


@click.command()
@click.option("--state", "states", multiple=True, type=STATE_CHOICE,
              help="Only jobs in this state (may be repeated).")
@click.option("--limit", type=int, default=None, help="At most this many jobs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_cli
def jobs(cli_ctx: CliContext, states: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """The job log: every job with its state, code and last error."""
    rows = queries.list_jobs(cli_ctx.config, [JobState(s) for s in states] or None, limit)
    if as_json:
        click.echo(json.dumps([job.to_json() for job in rows], indent=2, ensure_ascii=False))
        return
    print_jobs(rows)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job and its history as JSON.")
@pass_cli
def show(cli_ctx: CliContext, job_id: str, as_json: bool) -> None:
    """One job with its whole history."""
    detail = queries.job_detail(cli_ctx.config, job_id)
    if as_json:
        click.echo(json.dumps(detail.to_json(), indent=2, ensure_ascii=False))
        return
    job = detail.job
    for key, value in job.to_json().items():
        if value not in (None, "", []):
            click.echo(f"{key:>16}: {value}")
    if detail.code is not None:
        click.echo(f"{'status':>16}: {detail.code.status}")
        if job.state not in (JobState.SENT, JobState.CONFIRMED):
            click.echo(f"{'solution':>16}: {detail.code.solution}")
    click.echo("\nhistory:")
    for event in detail.history:
        state = f" → {event.state.value}" if event.state else ""
        code = f" [{event.code}]" if event.code is not None else ""
        text = f": {event.detail}" if event.detail else ""
        click.echo(f"  {when(event.at)}  {event.event}{state}{code}{text}")
    if detail.reports:
        click.echo("\nreports:")
        for report in detail.reports:
            code = f" [{report.code}]" if report.code is not None else ""
            click.echo(f"  {when(report.received)}  {report.kind} {report.outcome.value}{code}"
                       f" (by {report.matched_by.value}): {report.summary}")
            click.echo(f"  {'':>19}from {report.sender or '-'}: {report.subject or '-'}")


_HELP = {
    "cancel": "Stop jobs for good (code 510).",
    "retry": "Send jobs now, with attempts and age reset (like postsuper -r).",
    "hold": "Keep jobs from being sent until released.",
    "release": "Let held jobs be sent again.",
}


def _control(action: str) -> click.Command:
    states = sorted(state.value for state in ACTION_STATES[action])

    @click.command(name=action, help=f"{_HELP[action]} JOB is an id or a unique prefix.")
    @click.argument("job_ids", metavar="[JOB]...", nargs=-1)
    @click.option("--state", "state", type=click.Choice(states), default=None,
                  help="Act on every job in this state.")
    @pass_cli
    def command(cli_ctx: CliContext, job_ids: tuple[str, ...], state: str | None) -> None:
        if bool(job_ids) == bool(state):
            raise click.UsageError("give job ids or --state, not both and not neither")
        outcomes = act(cli_ctx.config, action, job_ids, JobState(state) if state else None)
        if not outcomes:
            click.echo(f"No {state} jobs.")
            return
        for outcome in outcomes:
            if outcome.job is not None:
                click.echo(f"{outcome.job.id}: {outcome.job.state.value}")
            else:
                click.echo(f"faxgw: {outcome.refused}", err=True)
        if any(outcome.refused for outcome in outcomes):
            click.get_current_context().exit(1)

    return command


COMMANDS = (jobs, show, *(_control(action) for action in ("cancel", "retry", "hold",
                                                            "release")))
