"""The ``faxgw`` command line: a face over the use cases in :mod:`faxgw.app`.

Exit codes: 0 success; 1 the operation failed (a job or server error, a job in the wrong
state, a file or the job store that cannot be read or written); 2 the command was wrong
(usage, configuration). Errors are one line on stderr with their status code where one
applies, whatever their type; never a traceback (``-vv`` logs it).
"""

from __future__ import annotations

import importlib
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
    # msal and the HTTP stack log request details at DEBUG, fontTools every font table it
    # subsets at INFO; keep them quiet unless asked.
    for noisy in ("msal", "urllib3", "aiosmtplib", "mail.log", "apscheduler", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 3 else logging.DEBUG)


#: Each command and the module that defines it: a command's module (and what it imports:
#: msal, the web console, the rendering libraries) is loaded only when that command runs, so
#: a cron-style ``faxgw run --once`` does not pay for every other command's imports.
_COMMAND_MODULES: dict[str, str] = {
    "submit": "send", "preview": "send", "profiles": "send",
    "jobs": "queue", "show": "queue", "cancel": "queue", "retry": "queue", "hold": "queue",
    "release": "queue",
    "status": "status", "codes": "status",
    "run": "run", "demo": "demo", "web": "web", "reports": "reports", "store": "store",
    "intake": "intake", "auth": "auth",
}


class _LazyGroup(click.Group):
    """The ``faxgw`` group, whose commands are imported when asked for by name."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = _COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"{__name__}.{module_name}")
        for command in module.COMMANDS:
            if command.name == cmd_name:
                return command  # type: ignore[no-any-return]
        raise LookupError(f"faxgw.cli.{module_name} has no command {cmd_name!r}")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Configuration file (default: $FAXGW_CONFIG, else config/faxgw.toml).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="faxgw")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """faxgw: send faxes through an Internet fax service by email (SMTP, OAuth2)."""
    setup_logging(verbose)
    ctx.obj = CliContext(config_path=config_path)


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
