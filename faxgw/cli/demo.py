"""``faxgw demo``: the whole path on this machine, offline.

Starts a local SMTP server with STARTTLS (its own test CA) and password authentication,
feeds the sample documents in by each of the three intake paths, runs the worker once,
prints the job log, and shows where the received emails lie.
"""

from __future__ import annotations

import email
import email.policy
import io
import secrets
import shutil
from importlib import resources
from pathlib import Path

import click

from ..config import Config
from ..fsutil import write_atomic
from .context import CliContext, pass_cli
from .output import print_jobs

MARKER = ".faxgw-demo"
SAMPLES = ("letter.pdf", "note.txt", "scan.jpg", "logo.png", "fax-g4.tif")


def _sample(name: str) -> bytes:
    return resources.files("faxgw.samples").joinpath(name).read_bytes()


def _prepare_dir(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists():
            raise click.UsageError(f"{out} exists and is not a demo folder; choose --dir")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by faxgw demo; safe to delete\n")


def demo_config(base: Config, out: Path, *, host: str, port: int, ca_file: Path,
                password_file: Path) -> Config:
    """The user's configuration, pointed at the demo's spool and local mail server."""
    return base.model_copy(update={
        "spool": base.spool.model_copy(update={"dir": out / "spool", "settle_seconds": 0.0}),
        "smtp": base.smtp.model_copy(update={
            "host": host, "port": port, "security": "starttls", "verify_certificate": True,
            "ca_file": ca_file, "timeout_seconds": 30.0}),
        "auth": base.auth.model_copy(update={
            "method": "password", "username": "demo", "password_file": password_file}),
    })


def _describe(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    parts = []
    for attachment in message.iter_attachments():  # type: ignore[attr-defined]
        data = attachment.get_content()
        from pypdf import PdfReader

        pages = len(PdfReader(io.BytesIO(data)).pages)
        unit = "page" if pages == 1 else "pages"
        parts.append(f"{attachment.get_filename()} ({pages} {unit}, {len(data)} bytes)")
    return f"{path.name}: To {message['To']}, Subject {message['Subject']!r}, " + ", ".join(parts)


@click.command()
@click.option("--dir", "out", type=click.Path(path_type=Path), default=Path("demo-out"),
              show_default=True, help="Folder for the demo's spool and received emails.")
@pass_cli
def demo(cli_ctx: CliContext, out: Path) -> None:
    """Send the sample documents through a local SMTP server with STARTTLS."""
    from ..app import demo as demo_run  # the rendering libraries: only when asked

    try:
        from ..testing.smtp_server import FaxSMTPServer
    except ImportError as exc:
        raise click.ClickException(
            f"the demo needs the demo extras (pip install 'faxgw[demo]'): {exc}") from None
    out = out.resolve()
    _prepare_dir(out)
    samples = out / "samples"
    samples.mkdir()
    for name in SAMPLES:
        (samples / name).write_bytes(_sample(name))
    received = out / "received"
    received.mkdir()
    config = cli_ctx.config
    password = secrets.token_urlsafe(24)
    password_file = out / "smtp-password"
    write_atomic(password_file, password.encode(), mode=0o600)
    with FaxSMTPServer(tls="starttls", users={"demo": password}, maildir=received) as server:
        config = demo_config(config, out, host=server.host, port=server.port,
                             ca_file=server.ca_file, password_file=password_file)
        click.echo(f"Local SMTP server with STARTTLS on {server.host}:{server.port} "
                   f"(test CA {server.ca_file})")
        demo_run.feed(config, samples)
        click.echo("Submitted: letter.pdf + note.txt with 'faxgw submit'; scan.jpg dropped "
                   "into outgoing/+4989765432/; logo.png + fax-g4.tif with outgoing/order.fax")
        summary, rows = demo_run.run(config)
    click.echo(f"\nRun: {summary.taken} taken from the drop folders, {summary.sent} sent, "
               f"{summary.deferred} deferred, {summary.failed} failed.\n\nJob log:")
    print_jobs(rows)
    click.echo(f"\nReceived emails in {received}:")
    for path in sorted(received.glob("*.eml")):
        click.echo(f"  {_describe(path)}")
    click.echo(f"\nThe demo's spool (job folders, job store) is in {config.spool.dir}.")


#: What this module adds to the ``faxgw`` group.
COMMANDS = (demo,)
