"""``faxgw cancel | retry | hold | release``: queue control, by job or by state."""

from __future__ import annotations

import click

from ..control import ACTION_STATES, ACTIONS
from ..errors import JobStateError
from ..jobs import JobState
from ..spool import Spool
from ..store import JobStore
from .context import CliContext, pass_cli
from .queue import with_store

_HELP = {
    "cancel": "Stop jobs for good (code 510).",
    "retry": "Send jobs now, with attempts and age reset (like postsuper -r).",
    "hold": "Keep jobs from being sent until released.",
    "release": "Let held jobs be sent again.",
}


def _make(action: str) -> click.Command:
    states = sorted(state.value for state in ACTION_STATES[action])

    @click.command(name=action, help=f"{_HELP[action]} JOB is an id or a unique prefix.")
    @click.argument("job_ids", metavar="[JOB]...", nargs=-1)
    @click.option("--state", "state", type=click.Choice(states), default=None,
                  help="Act on every job in this state.")
    @pass_cli
    def command(cli_ctx: CliContext, job_ids: tuple[str, ...], state: str | None) -> None:
        if bool(job_ids) == bool(state):
            raise click.UsageError("give job ids or --state, not both and not neither")
        config = cli_ctx.config
        spool = Spool(config.spool.dir)

        def act(store: JobStore) -> int:
            targets = list(job_ids) or [job.id for job in store.list_jobs([JobState(state or "")])]
            if not targets:
                click.echo(f"No {state} jobs.")
                return 0
            failures = 0
            for job_id in targets:
                try:
                    job = ACTIONS[action](store, spool, job_id)
                except JobStateError as exc:
                    click.echo(f"faxgw: {exc}", err=True)
                    failures += 1
                else:
                    click.echo(f"{job.id}: {job.state.value}")
            return failures

        if with_store(cli_ctx, act):
            click.get_current_context().exit(1)

    return command


COMMANDS = tuple(_make(action) for action in ("cancel", "retry", "hold", "release"))
