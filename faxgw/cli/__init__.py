"""The ``faxgw`` command line.

Exit codes: 0 success; 1 the operation failed (a job or server error, a job in the wrong
state); 2 the command was wrong (usage, configuration). Errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..errors import ConfigError, FaxgwError
from ..redact import SecretFilter
from .context import CliContext


def setup_logging(verbose: int) -> None:
    """Job events to stderr, one line each: ``time level message``."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # Libraries may log secrets at DEBUG (msal logs the device code): scrub every line.
    for handler in logging.getLogger().handlers:
        handler.addFilter(SecretFilter())
    # msal and the HTTP stack log request details at DEBUG; keep them quiet unless asked.
    for noisy in ("msal", "urllib3", "aiosmtplib", "mail.log", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 3 else logging.DEBUG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Configuration file (default: $FAXGW_CONFIG, else config/faxgw.toml).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="faxgw")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """faxgw: send faxes through an Internet fax service by email (SMTP, OAuth2)."""
    setup_logging(verbose)
    ctx.obj = CliContext(config_path=config_path)


def _register() -> None:
    from . import control, demo, fax, queue, run

    for command in (*queue.COMMANDS, *control.COMMANDS, run.run, demo.demo, fax.profiles,
                    fax.preview):
        cli.add_command(command)
    try:
        from .auth import auth
    except ImportError:  # pragma: no cover - the auth commands ship with the package
        return
    cli.add_command(auth)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``faxgw`` console script and ``python -m faxgw``."""
    try:
        result = cli.main(args=argv, prog_name="faxgw", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"faxgw: configuration error: {exc}", err=True)
        sys.exit(2)
    except FaxgwError as exc:
        click.echo(f"faxgw: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    # click returns the code of a ctx.exit(N) when standalone mode is off.
    sys.exit(result if isinstance(result, int) else 0)
