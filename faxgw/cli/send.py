"""Making a fax: ``faxgw submit``, ``preview`` (render and check, send nothing) and
``profiles`` (the built-in service profiles).

Exit codes: 0 done (or the fax would pass), 1 a job failed or would break a limit or a
document is bad (one line on stderr), 2 the command or configuration is wrong.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from ..app import queries
from ..domain import codes
from ..domain.errors import ConfigError, DocumentError, InputError, NumberError
from ..domain.jobs import JobState
from ..fax.profiles import PROFILES, Profile, ServiceRules, describe_limits, format_bytes
from .context import CliContext, pass_cli


@click.command()
@click.option("--to", "number", required=True, help="Fax number, e.g. +4930123456.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subject", default="", help="Subject of the fax email.")
@click.option("--note", default="", help="Text for the email body.")
@click.option("--sender", default="", help="Send as this mailbox (default: the configured one).")
@click.option("--cover/--no-cover", default=None,
              help="Add a cover page, or not (default: the service profile's choice).")
@click.option("--notify", default="", metavar="ADDR",
              help="Tell ADDR by email how the job ends ([notify] on).")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": "..."}.')
@pass_cli
def submit(cli_ctx: CliContext, number: str, files: tuple[Path, ...], subject: str, note: str,
           sender: str, cover: bool | None, notify: str, as_json: bool) -> None:
    """Put FILES into the spool as one fax job to NUMBER and print its id.

    The job is rendered and checked against the service's limits now: a job that cannot be
    sent fails at once (exit code 1) with its code and the limit it breaks.
    """
    from ..app.submit import submit as submit_fax  # the rendering libraries: only here

    try:
        job = submit_fax(cli_ctx.config, number, files, subject=subject, note=note,
                         sender=sender, cover=cover, notify=notify)
    except NumberError as exc:
        # The person is here: an invalid or refused number is refused now, no job is made.
        raise click.UsageError(f"{exc} (code {exc.code})") from None
    except InputError as exc:
        if exc.code not in (codes.CONTROL_CHARACTERS, codes.SENDER_NOT_ALLOWED,
                            codes.NOTIFY_ADDRESS):
            raise
        # So are a sender that is not allowed and texts that would break a header.
        raise click.UsageError(f"{exc} (code {exc.code})") from None
    if as_json:
        click.echo(json.dumps({"id": job.id}))
    else:
        click.echo(job.id)
    if job.state is JobState.FAILED:
        click.echo(f"faxgw: job {job.id} failed (code {job.code}): {job.error}", err=True)
        click.get_current_context().exit(1)


@click.command(name="profiles")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
@pass_cli
def profiles(cli_ctx: CliContext, as_json: bool) -> None:
    """The built-in service profiles, their rules and where the rules come from."""
    try:
        listing = queries.profiles(cli_ctx.config)
    except ConfigError as exc:
        listing = queries.profiles(None, str(exc))
    rules = listing.active
    if listing.problem is not None:
        # Listing the profiles needs no configuration; say why none is marked active.
        click.echo(f"faxgw: note: configuration not used ({listing.problem}); no profile is "
                   "marked active", err=True)
    active = rules.profile if rules is not None else None
    if as_json:
        rows = [{**dataclasses.asdict(profile), "active": profile.name == active}
                for profile in listing.profiles]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for profile in listing.profiles:
        _print_profile(profile, rules if profile.name == active else None)


def _print_profile(profile: Profile, rules: ServiceRules | None) -> None:
    click.echo(f"{profile.name}{'  (active)' if rules is not None else ''}")
    click.echo(f"  {profile.description}")
    attachment = "PDF" if profile.attach_as == "pdf" else f"TIFF, {profile.tiff_compression}"
    rows = [
        ("address", profile.address or "[service] address"),
        ("attachment", attachment),
        ("limits", ", ".join(describe_limits(profile)) or "none"),
        ("body", "sent (the job's note)" if profile.body
         else "left out (a job's note goes on the cover page, if there is one)"),
        ("cover page", "yes" if profile.cover else "no (--cover adds one)"),
        ("source", profile.source),
    ]
    if rules is not None and rules.overridden:
        changed = ", ".join(f"{key} = {getattr(rules, key)!r}" for key in sorted(rules.overridden))
        rows.append(("[service]", changed))
    for label, value in rows:
        click.echo(f"  {label:<11} {value}")
    click.echo("")


@click.command(name="preview")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "number_text", default=None,
              help="Fax number: shows the address and checks it against [numbers].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the fax here: OUT.pdf for the PDF, OUT.tif for the fax TIFF.")
@click.option("--subject", default=None, help="Subject (default: [service] subject).")
@click.option("--note", default="", help="Note for the cover page or the email body.")
@click.option("--cover/--no-cover", default=None,
              help="Add a cover page, or not (default: the profile's choice).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_cli
def preview(cli_ctx: CliContext, files: tuple[Path, ...], number_text: str | None,
            out: Path | None, subject: str | None, note: str, cover: bool | None,
            as_json: bool) -> None:
    """Render FILES as the fax a job would send, and check it; nothing is sent.

    Prints pages, size (as a file and as encoded in the email), the address it would go to
    (with --to) and every limit it would break. Exit code 1 when it would not pass.
    """
    from ..app.preview import OUT_SUFFIXES
    from ..app.preview import preview as preview_fax

    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise click.BadParameter("must end in .pdf, .tif or .tiff", param_hint="--out")
    try:
        result = preview_fax(cli_ctx.config, files, number_text=number_text, out=out,
                             subject=subject, note=note, cover=cover)
    except DocumentError as exc:
        click.echo(f"faxgw: {exc}", err=True)
        click.get_current_context().exit(1)
        return
    if as_json:
        click.echo(json.dumps(result.report, indent=2, ensure_ascii=False))
    else:
        _print_report(result.report, result.rules)
    if result.problems:
        click.get_current_context().exit(1)


def _print_report(report: dict[str, Any], rules: ServiceRules) -> None:
    attachment = report["attachment"]
    kind = ("PDF" if attachment["type"] == "pdf"
            else f"TIFF ({attachment['compression']}, 204 x 196 dpi, 1728 px wide)")
    pages = f"{attachment['pages']} page{'s' if attachment['pages'] != 1 else ''}"
    if attachment["cover"]:
        pages += " (cover page included)"
    rows = [
        ("profile", f"{rules.profile}: {PROFILES[rules.profile].description}"),
        ("attachment", f"{kind}, {pages}"),
        ("size", f"{format_bytes(attachment['bytes'])}, "
                 f"{format_bytes(attachment['encoded_bytes'])} encoded in the email"),
    ]
    to = report["to"]
    rows.append(("to", f"{to['number']} -> {to['address']}" if to
                 else "(give --to NUMBER to see the address)"))
    rows.append(("subject", f"{report['subject']} ({len(report['subject'])} characters)"))
    rows.append(("body", "the note is sent as the email body" if rules.body
                 else f"left out ({rules.origin('body')})"))
    rows.append(("limits", ", ".join(describe_limits(rules)) or "none"))
    if report["out"]:
        rows.append(("written", report["out"]))
    for label, value in rows:
        click.echo(f"{label:<11} {value}")
    for warning in report["warnings"]:
        click.echo(f"{'note':<11} {warning}")
    if report["problems"]:
        for problem in report["problems"]:
            click.echo(f"{'would fail':<11} {problem['message']} "
                       f"[{problem['code']} {problem['name']}]")
    else:
        click.echo(f"{'result':<11} within every limit: the service would take this fax")


COMMANDS = (submit, preview, profiles)
