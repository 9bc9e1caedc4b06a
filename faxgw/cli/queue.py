"""Commands that put jobs in and read the job log: submit, jobs, show, codes, status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .. import codes
from ..errors import ConfigError, JobError
from ..intake import default_sender, register
from ..jobs import Job, JobState
from ..policy import parse_and_check
from ..prepare import prepare
from ..profiles import rules_for
from ..spool import Spool
from ..store import JobStore, open_store
from .context import CliContext, pass_cli

STATE_CHOICE = click.Choice([state.value for state in JobState])


def console() -> Console:
    """A console for tables; wide enough that job ids are never cut."""
    return Console(width=max(120, Console().width), soft_wrap=False, highlight=False)


def with_store(cli_ctx: CliContext, action: Callable[[JobStore], Any]) -> Any:
    """Run ``action`` with the job store open, and close it."""
    store = open_store(cli_ctx.config)
    try:
        return action(store)
    finally:
        store.close()


def _when(job_time: Any) -> str:
    return job_time.strftime("%Y-%m-%d %H:%M:%S") if job_time else "-"


def _code_text(code: int | None) -> str:
    if code is None:
        return "-"
    entry = codes.CODES.get(code)
    return f"{code} {entry.name}" if entry else str(code)


@click.command()
@click.option("--to", "number", required=True, help="Fax number, e.g. +4930123456.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subject", default="", help="Subject of the fax email.")
@click.option("--note", default="", help="Text for the email body.")
@click.option("--sender", default="", help="Send as this mailbox (default: the configured one).")
@click.option("--cover/--no-cover", default=None,
              help="Add a cover page, or not (default: the service profile's choice).")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": "..."}.')
@pass_cli
def submit(cli_ctx: CliContext, number: str, files: tuple[Path, ...], subject: str, note: str,
           sender: str, cover: bool | None, as_json: bool) -> None:
    """Put FILES into the spool as one fax job to NUMBER and print its id.

    The job is rendered and checked against the service's limits now: a job that cannot be
    sent fails at once (exit code 1) with its code and the limit it breaks.
    """
    config = cli_ctx.config
    # The person is here: an invalid or refused number is refused now, no job is made.
    try:
        parse_and_check(number, config.numbers, config.service.region)
    except JobError as exc:
        raise click.UsageError(f"{exc} (code {exc.code})") from None
    spool = Spool(config.spool.dir, settle_seconds=config.spool.settle_seconds)
    spool.ensure()
    intake = spool.submit(number, list(files), subject=subject, note=note, sender=sender,
                          cover=cover)

    def accept(store: JobStore) -> Job:
        job = register(intake, config=config, store=store, spool=spool)
        return prepare(store, spool, config, job) if job.state is JobState.QUEUED else job

    job = with_store(cli_ctx, accept)
    if as_json:
        click.echo(json.dumps({"id": job.id}))
    else:
        click.echo(job.id)
    if job.state is JobState.FAILED:
        click.echo(f"faxgw: job {job.id} failed (code {job.code}): {job.error}", err=True)
        click.get_current_context().exit(1)


@click.command()
@click.option("--state", "states", multiple=True, type=STATE_CHOICE,
              help="Only jobs in this state (may be repeated).")
@click.option("--limit", type=int, default=None, help="At most this many jobs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_cli
def jobs(cli_ctx: CliContext, states: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """The job log: every job with its state, code and last error."""
    wanted = [JobState(s) for s in states] or None
    rows: list[Job] = with_store(cli_ctx, lambda store: store.list_jobs(wanted, limit))
    if as_json:
        click.echo(json.dumps([job.to_json() for job in rows], indent=2, ensure_ascii=False))
        return
    print_jobs(rows)


def print_jobs(rows: list[Job]) -> None:
    """The job log as a table."""
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "STATE", "CODE", "NUMBER", "PAGES", "TRIES", "NEXT TRY", "UPDATED",
                   "LAST ERROR / REPLY"):
        table.add_column(column, no_wrap=column != "LAST ERROR / REPLY")
    for job in rows:
        table.add_row(job.id, job.state.value, _code_text(job.code), job.number,
                      str(job.pages if job.pages is not None else "-"), str(job.attempts),
                      _when(job.next_attempt_at) if job.state is JobState.DEFERRED else "-",
                      _when(job.updated), job.error or job.last_reply or "")
    console().print(table)
    if not rows:
        click.echo("No jobs.")


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job and its history as JSON.")
@pass_cli
def show(cli_ctx: CliContext, job_id: str, as_json: bool) -> None:
    """One job with its whole history."""
    def read(store: JobStore) -> tuple[Job, list[Any]]:
        job = store.get(job_id)
        return job, store.history(job.id)

    job, history = with_store(cli_ctx, read)
    if as_json:
        data = job.to_json()
        data["history"] = [event.to_json() for event in history]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for key, value in job.to_json().items():
        if value not in (None, "", []):
            click.echo(f"{key:>16}: {value}")
    if job.code is not None and job.code in codes.CODES:
        entry = codes.CODES[job.code]
        click.echo(f"{'status':>16}: {entry.status}")
        if job.state is not JobState.SENT:
            click.echo(f"{'solution':>16}: {entry.solution}")
    click.echo("\nhistory:")
    for event in history:
        state = f" → {event.state.value}" if event.state else ""
        code = f" [{event.code}]" if event.code is not None else ""
        detail = f": {event.detail}" if event.detail else ""
        click.echo(f"  {_when(event.at)}  {event.event}{state}{code}{detail}")


@click.command(name="codes")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def codes_command(as_json: bool) -> None:
    """Every job status code with its meaning and solution."""
    entries = codes.all_codes()
    if as_json:
        click.echo(json.dumps([{"code": e.code, "name": e.name, "status": e.status,
                                "solution": e.solution, "failure": e.failure}
                               for e in entries], indent=2))
        return
    for entry in entries:
        click.echo(f"{entry.code}  {entry.name}\n     {entry.status}\n     Solution: "
                   f"{entry.solution}\n")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status sheet as JSON.")
@pass_cli
def status(cli_ctx: CliContext, as_json: bool) -> None:
    """The status sheet: service, mail server, sign-in and queue counts."""
    config = cli_ctx.config
    counts = with_store(cli_ctx, lambda store: store.counts())
    sheet: dict[str, Any] = {
        "config": str(config.source) if config.source else None,
        "spool": str(config.spool.dir),
        "profile": config.service.profile,
        "service_address": rules_for(config.service).address,
        "region": config.service.region,
        "paper": config.service.paper,
        "smtp_host": config.smtp.host,
        "smtp_port": config.smtp.port,
        "security": config.smtp.security,
        "certificate_validation": config.smtp.verify_certificate,
        "auth_method": config.auth.method,
        "account": default_sender(config),
        "sign_in": sign_in_state(cli_ctx),
        "queue": {state.value: count for state, count in counts.items()},
    }
    if as_json:
        click.echo(json.dumps(sheet, indent=2))
        return
    labels = [("Configuration", "config"), ("Spool", "spool"),
              ("Fax service profile", "profile"), ("Fax service address", "service_address"),
              ("Region", "region"),
              ("Paper", "paper"), ("SMTP host", "smtp_host"), ("SMTP port", "smtp_port"),
              ("Security", "security"), ("Certificate validation", "certificate_validation"),
              ("Authentication", "auth_method"), ("Account", "account"),
              ("Sign-in", "sign_in")]
    for label, key in labels:
        value = sheet[key]
        if key == "certificate_validation":
            value = "on" if value else "OFF (insecure)"
        click.echo(f"{label:>24}: {value}")
    queue_line = ", ".join(f"{state} {count}" for state, count in sheet["queue"].items())
    click.echo(f"{'Queue':>24}: {queue_line}")


def sign_in_state(cli_ctx: CliContext) -> str:
    """A one-line sign-in state for the status sheet."""
    config = cli_ctx.config
    if config.auth.method == "none":
        return "not needed (no authentication)"
    if config.auth.method == "password":
        return f"password for {config.auth.username or config.smtp.sender}"
    try:
        from ..auth.oauth2 import OAuth2Provider
    except ImportError:
        return "OAuth2 support is not installed"
    try:
        provider = OAuth2Provider(config)
    except ConfigError as exc:
        return f"not configured: {exc}"
    try:
        return provider.sign_in_summary()
    finally:
        close = getattr(provider, "close", None)
        if close is not None:
            close()


COMMANDS = (submit, jobs, show, codes_command, status)
