"""``faxgw store``: the job store itself (``faxgw store migrate``)."""

from __future__ import annotations

import json

import click

from ..app.wiring import migrate_store
from .context import CliContext, pass_cli


@click.group("store")
def store() -> None:
    """The job store: its schema (PostgreSQL with [store] url, else SQLite in the spool)."""


@store.command("migrate")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@pass_cli
def migrate(cli_ctx: CliContext, as_json: bool) -> None:
    """Create the job store's tables or upgrade them to this faxgw's schema version, in one
    transaction; nothing to do when they are up to date. Run it once per upgrade, from one
    host, before the upgraded faxgw starts (an older faxgw refuses a newer schema)."""
    where, before, after = migrate_store(cli_ctx.config)
    if as_json:
        click.echo(json.dumps({"store": where, "before": before, "version": after}))
        return
    if before == after:
        click.echo(f"{where}: schema version {after}, up to date")
    elif before == 0:
        click.echo(f"{where}: schema version {after}, created")
    else:
        click.echo(f"{where}: schema version {after}, upgraded from {before}")


#: What this module adds to the ``faxgw`` group.
COMMANDS = (store,)
