"""``faxgw auth``: sign in (device code), show the sign-in state, sign out, test the server.

Errors are one line on stderr (with the status code's words where one applies): exit 1 when the
operation failed, 2 for a configuration problem. No token is ever printed.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import click

from ..app import signin
from ..app.signin import PollEvent, SignInCancelled
from ..domain import codes
from ..domain.errors import ConfigError, FaxgwError
from ..domain.signin import SIGN_IN_NEEDED, AccountStatus
from .context import CliContext, pass_cli

P = ParamSpec("P")
R = TypeVar("R")


def _fail(message: str, *, code: int | None = None, exit_code: int = 1) -> None:
    click.echo(f"faxgw: {message}", err=True)
    if code is not None and code in codes.CODES:
        entry = codes.describe(code)
        click.echo(f"  code {code} ({entry.name}): {entry.status}", err=True)
        click.echo(f"  solution: {entry.solution}", err=True)
    click.get_current_context().exit(exit_code)


def _reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """faxgw errors become one line on stderr and an exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            _fail(f"configuration error: {exc}", exit_code=2)
        except SignInCancelled as exc:
            _fail(str(exc), exit_code=130)
        except FaxgwError as exc:
            _fail(str(exc), code=exc.code)
        raise AssertionError("unreachable")  # _fail always exits

    return wrapper


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"


@click.group()
def auth() -> None:
    """Sign in to the email service (OAuth2), show or remove the sign-in, test it."""


@auth.command()
@click.option("--account", metavar="ADDR", default=None,
              help="The mailbox to sign in as (default: [auth] account).")
@pass_cli
@_reports_errors
def login(cli_ctx: CliContext, account: str | None) -> None:
    """Sign in with a code shown here, on any device with a browser."""
    config = cli_ctx.config
    account = account or config.auth.account or None
    with signin.start_sign_in(config, account) as sign_in:
        flow = sign_in.flow
        until = datetime.fromtimestamp(flow.expires_at, UTC)
        who = f" as {account}" if account else ""
        click.echo(f"To sign in, open {flow.verification_uri} in a browser on any device "
                   f"and enter the code:\n\n    {flow.user_code}\n")
        click.echo(f"Then sign in{who}. With a work account, an administrator may see "
                   f"\"Permissions requested\": tick \"Consent on behalf of your "
                   f"organization\" and choose Accept.")
        click.echo(f"The code works until {_when(until)}. Waiting for the sign-in "
                   f"(Ctrl-C to cancel)…")

        def on_poll(event: PollEvent) -> None:
            if event.answer == "slow_down":
                click.echo(f"The sign-in service asked to wait longer between checks "
                           f"({event.interval:g} s).")

        username = sign_in.finish(on_poll=on_poll)
    click.echo(f"Signed in as {username}. Waiting jobs will go out by themselves.")


def _describe(status: AccountStatus) -> list[str]:
    lines = [f"{status.account}: {status.state}"]
    if status.access_token_expires:
        verb = "valid until" if status.access_token_expires > datetime.now(UTC) else "expired"
        lines.append(f"  access token {verb} {_when(status.access_token_expires)}")
    if status.last_refresh and status.state == SIGN_IN_NEEDED:
        lines.append(f"  last refresh {_when(status.last_refresh)}")
    elif status.last_refresh:
        lines.append(f"  last refresh {_when(status.last_refresh)}; without use the sign-in "
                     f"would expire on {_when(status.refresh_token_expires_by_inactivity)}")
    keepalive = status.last_keepalive
    if keepalive:
        outcome = "ok" if keepalive.get("ok") else f"failed with code {keepalive.get('code')}"
        at = datetime.fromisoformat(str(keepalive.get("at")))
        lines.append(f"  last keep-alive {_when(at)}: {outcome}")
    if status.detail:
        lines.append(f"  {status.detail}")
    if status.code is not None:
        lines.append(f"  code {status.code}: {codes.describe(status.code).status}")
    if status.solution:
        lines.append(f"  solution: {status.solution}")
    if status.state == SIGN_IN_NEEDED:
        lines.append(f"  to sign in: faxgw auth login --account {status.account}")
    return lines


@auth.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON list of accounts.")
@pass_cli
@_reports_errors
def status(cli_ctx: CliContext, as_json: bool) -> None:
    """Per account: signed in / expired / sign-in needed, and when the sign-in expires."""
    statuses = signin.statuses(cli_ctx.config)
    if as_json:
        click.echo(json.dumps([s.to_json() for s in statuses], indent=2))
        return
    if not statuses:
        click.echo("No account is signed in. Run 'faxgw auth login'.")
    for entry in statuses:
        click.echo("\n".join(_describe(entry)))
    if any(s.state == SIGN_IN_NEEDED for s in statuses):
        click.echo("Jobs for an account that needs a sign-in wait until it is done.")


@auth.command()
@click.option("--account", metavar="ADDR", default=None,
              help="The mailbox to sign out (default: every account).")
@pass_cli
@_reports_errors
def logout(cli_ctx: CliContext, account: str | None) -> None:
    """Remove the stored sign-in (tokens) of one account or of all."""
    removed = signin.sign_out(cli_ctx.config, account)
    if not removed:
        if account:
            _fail(f"{account} is not signed in")
        click.echo("No account was signed in.")
        return
    for name in removed:
        click.echo(f"Signed out {name}. Its jobs wait until someone signs in again.")


@auth.command(name="test")
@click.option("--account", metavar="ADDR", default=None,
              help="The mailbox to sign in as (default: [auth] account, else [smtp] sender).")
@pass_cli
@_reports_errors
def test_command(cli_ctx: CliContext, account: str | None) -> None:
    """Connect to the mail server and sign in, then quit: nothing is sent."""
    config = cli_ctx.config
    account = account or config.auth.account or config.smtp.sender
    smtp = config.smtp
    graph = config.transport.kind == "graph"
    where = config.graph.root if graph else f"{smtp.host}:{smtp.port}"
    try:
        check = asyncio.run(signin.probe(config, account))
    except FaxgwError as exc:
        if isinstance(exc, ConfigError):
            raise
        _fail(f"auth test against {where} failed: {exc}", code=exc.code)
        return
    if check is not None:
        # A token for Graph's scope was issued; the mailbox was asked a harmless question.
        click.echo(f"Signed in to Microsoft Graph ({where}) as {account}: a token for "
                   "sending was issued.")
        if check.verdict is signin.Verdict.DENIED:
            _fail(check.line, code=check.code)
        ready = "ready to send" if check.verdict is signin.Verdict.MAY_SEND else \
            "sending itself is not checked"
        click.echo(f"{check.line}: {ready}.")
        return
    tls = {"starttls": "STARTTLS ok", "tls": "TLS ok", "none": "no TLS"}[smtp.security]
    signed_in = {
        "oauth2": f"signed in as {account} (XOAUTH2)",
        "password": f"signed in as {config.auth.username or account} (password)",
        "none": "no sign-in configured",
    }[config.auth.method]
    click.echo(f"Connected to {smtp.host}:{smtp.port}, {tls}, {signed_in}: ready to send.")


#: What this module adds to the ``faxgw`` group.
COMMANDS = (auth,)
