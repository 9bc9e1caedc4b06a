"""``faxgw intake user NAME``: a user that devices authenticate as to the SMTP intake."""

from __future__ import annotations

import sys

import click

from ..devices.users import set_user
from .context import CliContext, pass_cli


@click.group()
def intake() -> None:
    """The intake for devices ([intake.smtp])."""


@intake.command()
@click.argument("name")
@pass_cli
def user(cli_ctx: CliContext, name: str) -> None:
    """Add user NAME to [intake.smtp] users_file, or change its password (asked twice on a
    terminal; otherwise one line is read from standard input). Only its argon2 hash is kept.

    A NAME that is a mail address sends as that mailbox when it is signed in with "Send as
    me" or listed in [intake] allowed_senders; any other user as the gateway's mailbox."""
    path = cli_ctx.config.intake.smtp.users_file
    if path is None:
        raise click.UsageError("[intake.smtp] users_file is not set")
    if sys.stdin.isatty():
        secret = click.prompt(f"Password for {name}", hide_input=True,
                              confirmation_prompt="Repeat the password")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise click.UsageError("the password may not be empty")
    set_user(path, name, secret)
    click.echo(f"User {name} set ({path}).")


#: What this module adds to the ``faxgw`` group.
COMMANDS = (intake,)
