"""The ``faxgw`` command line: a face over the use cases in :mod:`faxgw.app`.

Exit codes: 0 success; 1 the operation failed (a job or server error, a job in the wrong
state, a file or the job store that cannot be read or written); 2 the command was wrong
(usage, configuration). Errors are one line on stderr with their status code where one
applies, whatever their type; never a traceback (``-vv`` logs it).
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path
from typing import NoReturn

import click

from ..domain.codes import INTERNAL
from ..domain.errors import ConfigError, FaxgwError
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
    from . import demo, queue, reports, run, send, status, web

    for command in (*send.COMMANDS, *queue.COMMANDS, *status.COMMANDS, run.run, demo.demo, web.web,
                    reports.reports):
        cli.add_command(command)
    from .store import store  # faxgw store migrate
    cli.add_command(store)
    from .intake import intake  # faxgw intake user NAME
    cli.add_command(intake)
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
        _fail(f"configuration error: {exc}", exc, exit_code=2)
    except FaxgwError as exc:
        code = exc.code
        _fail(str(exc) if code is None or f"code {code}" in str(exc)
              else f"{exc} (code {code})", exc)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except OSError as exc:
        # A file, a folder or the network, outside any job: say which, in one line.
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        _fail(f"{exc.strerror or type(exc).__name__}{where}", exc)
    except sqlite3.Error as exc:
        _fail(f"job store: {exc}", exc)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a trace
        _fail(f"unexpected error (code {INTERNAL}): {type(exc).__name__}: {exc}; "
              "run with -vv to log the details", exc)
    # click returns the code of a ctx.exit(N) when standalone mode is off.
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, exc: BaseException, *, exit_code: int = 1) -> NoReturn:
    """One line on stderr; the traceback only in the log, at ``-vv``."""
    logging.getLogger("faxgw").debug("the error in full:", exc_info=exc)
    click.echo(f"faxgw: {' '.join(message.split())}", err=True)
    sys.exit(exit_code)
