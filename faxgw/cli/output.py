"""How the command line shows things: tables wide enough for job ids, times, code names."""

from __future__ import annotations

from datetime import datetime

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..domain import codes
from ..domain.jobs import Job, JobState


def console() -> Console:
    """A console for tables; wide enough that job ids are never cut."""
    return Console(width=max(120, Console().width), soft_wrap=False, highlight=False)


def when(moment: datetime | None) -> str:
    """A time as the job log shows it, or ``-``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def code_text(code: int | None) -> str:
    """``370 sign-in-again``, or ``-``."""
    if code is None:
        return "-"
    entry = codes.CODES.get(code)
    return f"{code} {entry.name}" if entry else str(code)


def print_jobs(rows: list[Job]) -> None:
    """The job log as a table."""
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "STATE", "CODE", "NUMBER", "PAGES", "TRIES", "NEXT TRY", "UPDATED",
                   "LAST ERROR / REPLY"):
        table.add_column(column, no_wrap=column != "LAST ERROR / REPLY")
    for job in rows:
        cells = (job.id, job.state.value, code_text(job.code), job.number,
                 str(job.pages if job.pages is not None else "-"), str(job.attempts),
                 when(job.next_attempt_at) if job.state is JobState.DEFERRED else "-",
                 when(job.updated), job.error or job.last_reply or "")
        # Rich reads "[...]" as markup: a number or a server's reply is shown as it is.
        table.add_row(*(escape(cell) for cell in cells))
    console().print(table)
    if not rows:
        click.echo("No jobs.")
