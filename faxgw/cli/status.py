"""``faxgw status`` (the status sheet) and ``faxgw codes`` (every job status code)."""

from __future__ import annotations

import json

import click

from ..app import queries
from ..app.devices import listener_summary
from .context import CliContext, pass_cli
from .store_lines import store_lines

_LABELS = [("Configuration", "config"), ("Spool", "spool"),
           ("Fax service profile", "profile"), ("Fax service address", "service_address"),
           ("Region", "region"), ("Paper", "paper"), ("Transport", "transport"),
           ("Graph endpoint", "graph_endpoint"), ("SMTP host", "smtp_host"),
           ("SMTP port", "smtp_port"), ("Security", "security"),
           ("Certificate validation", "certificate_validation"),
           ("Authentication", "auth_method"), ("Account", "account"), ("Sign-in", "sign_in")]


@click.command(name="codes")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def codes_command(as_json: bool) -> None:
    """Every job status code with its meaning and solution."""
    entries = queries.all_codes()
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
    """The status sheet: service, mail server, sign-in and queue counts, and a warning for
    each secret file other accounts can read."""
    sheet = queries.status_sheet(cli_ctx.config)
    if as_json:
        click.echo(json.dumps(sheet, indent=2))
        return
    for label, key in _LABELS:
        value = sheet[key]
        if value is None and key == "graph_endpoint":
            continue  # the SMTP transport has none
        if key == "certificate_validation":
            value = "on" if value else "OFF (insecure)"
        click.echo(f"{label:>24}: {value}")
    queue_line = ", ".join(f"{state} {count}" for state, count in sheet["queue"].items())
    click.echo(f"{'Queue':>24}: {queue_line}")
    click.echo("\n".join(store_lines(sheet["store"])))
    if sheet["smtp_intake"] is not None:
        click.echo(f"{'SMTP intake':>24}: {listener_summary(sheet['smtp_intake'])}")
    for warning in sheet["warnings"]:
        click.echo(f"Warning: {warning}")


COMMANDS = (status, codes_command)
