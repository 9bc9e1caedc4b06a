"""``faxgw web``: the web console alone (sign-in, status, jobs, sending a fax from the
browser; no worker), ``faxgw web password`` and ``faxgw web token``."""

from __future__ import annotations

import sys

import click

from ..web import credentials
from .context import CliContext, pass_cli


@click.group(invoke_without_command=True)
@click.option("--listen", metavar="HOST:PORT", default=None,
              help="Serve here (default: [web] listen, else 127.0.0.1:8025).")
@pass_cli
@click.pass_context
def web(ctx: click.Context, cli_ctx: CliContext, listen: str | None) -> None:
    """Serve the web console until Ctrl-C / SIGTERM (the worker is 'faxgw run')."""
    if ctx.invoked_subcommand is None:
        from ..web.server import run  # uvicorn and Starlette only when serving

        run(cli_ctx.config, listen)


@web.command()
@pass_cli
def password(cli_ctx: CliContext) -> None:
    """Set the console's admin password (asked twice on a terminal; otherwise one line is
    read from standard input). Only its argon2 hash is kept, in [web] admin_password_file."""
    path = cli_ctx.config.web.admin_password_file
    if sys.stdin.isatty():
        secret = click.prompt("New admin password", hide_input=True,
                              confirmation_prompt="Repeat the password")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise click.UsageError("the admin password may not be empty")
    credentials.set_password(path, secret)
    click.echo(f"Admin password set ({path}).")


@web.command()
@click.option("--name", default="", help="A label for the token (who or what uses it).")
@pass_cli
def token(cli_ctx: CliContext, name: str) -> None:
    """Create a bearer token for /api and print it once; only its hash is kept."""
    path = cli_ctx.config.web.api_token_file
    click.echo(credentials.add_api_token(path, name))
    click.echo(f"Only its hash is kept ({path}): copy it now.", err=True)


#: What this module adds to the ``faxgw`` group.
COMMANDS = (web,)
