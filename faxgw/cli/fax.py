"""Commands about the fax itself: ``faxgw profiles`` and ``faxgw preview``.

``preview`` renders what a job would send, with the same code the worker uses
(:func:`~faxgw.render.attachment.build_attachment`, :mod:`faxgw.preflight`,
:mod:`faxgw.policy`), and sends nothing. Exit codes: 0 the fax would pass, 1 it would break
a limit or a document is bad (one line on stderr), 2 the command or configuration is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from .. import codes, preflight
from ..config import Config
from ..errors import ConfigError, DocumentError, JobError
from ..intake import default_sender
from ..numbers import FaxNumber
from ..policy import parse_and_check
from ..profiles import PROFILES, Profile, ServiceRules, describe_limits, format_bytes, rules_for
from ..render.attachment import CoverInfo, attachment_paths, build_attachment
from ..render.pdf import Rendered
from ..render.tiff import pdf_to_tiff
from .context import CliContext, pass_cli

_OUT_SUFFIXES = (".pdf", ".tif", ".tiff")
#: The job id preview renders under (file names only; nothing is queued).
PREVIEW_ID = "preview"


@click.command(name="profiles")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
@pass_cli
def profiles(cli_ctx: CliContext, as_json: bool) -> None:
    """The built-in service profiles, their rules and where the rules come from."""
    rules: ServiceRules | None = None
    try:
        rules = rules_for(cli_ctx.config.service)
    except ConfigError as exc:
        # Listing the profiles needs no configuration; say why none is marked active.
        click.echo(f"faxgw: note: configuration not used ({exc}); no profile is marked "
                   "active", err=True)
    active = rules.profile if rules is not None else None
    if as_json:
        listing = [{**dataclasses.asdict(profile), "active": profile.name == active}
                   for profile in PROFILES.values()]
        click.echo(json.dumps(listing, indent=2, ensure_ascii=False))
        return
    for profile in PROFILES.values():
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
    if out is not None and out.suffix.lower() not in _OUT_SUFFIXES:
        raise click.BadParameter("must end in .pdf, .tif or .tiff", param_hint="--out")
    config = cli_ctx.config
    rules = rules_for(config.service)
    problems: list[JobError] = []
    number: FaxNumber | None = None
    if number_text is not None:
        try:
            number = parse_and_check(number_text, config.numbers, config.service.region)
        except JobError as exc:
            problems.append(exc)
    address = rules.address_for(number) if number is not None else None
    subject_text = subject or rules.subject_for(number.e164 if number else "<number>")
    use_cover = rules.cover if cover is None else cover
    cover_info = None
    if use_cover:
        cover_info = CoverInfo(
            to_number=number.e164 if number else (number_text or ""),
            to_address=address or "",
            sender=default_sender(config),
            date=datetime.now().astimezone(),
            subject=subject_text,
            note=note,
        )
    with tempfile.TemporaryDirectory(prefix="faxgw-preview-") as folder:
        try:
            rendered = build_attachment(list(files), Path(folder), PREVIEW_ID, rules,
                                        cover=cover_info)
            if out is not None:
                _write_out(out, rendered, Path(folder), rules)
        except DocumentError as exc:
            click.echo(f"faxgw: {exc}", err=True)
            click.get_current_context().exit(1)
    problems.extend(preflight.violations(rendered, subject_text, rules,
                                         smtp_max_message_bytes=_smtp_limit(config)))
    report = _report(rules, rendered, number, address, subject_text, use_cover, problems, out)
    if note and not rules.body and not use_cover:
        report["warnings"].append(
            "the note is not sent: this service gets no email body; add a cover page "
            "(--cover, or [service] cover = true) to carry it")
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_report(report, rules)
    if problems:
        click.get_current_context().exit(1)


def _smtp_limit(config: Config) -> int | None:
    # [smtp] max_message_bytes is not a configuration key yet; read it once it exists.
    limit = getattr(config.smtp, "max_message_bytes", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def _write_out(out: Path, rendered: Rendered, folder: Path, rules: ServiceRules) -> None:
    """Copy the PDF or the TIFF rendition to ``out``, by its suffix."""
    pdf_path, tiff_path = attachment_paths(folder, PREVIEW_ID)
    if out.suffix.lower() == ".pdf":
        shutil.copyfile(pdf_path, out)
    elif rendered.path == tiff_path:
        shutil.copyfile(tiff_path, out)
    else:
        # A PDF service, but the user wants to see the fax as it would look on paper.
        pdf_to_tiff(pdf_path, out, compression=rules.tiff_compression)


def _report(rules: ServiceRules, rendered: Rendered, number: FaxNumber | None,
            address: str | None, subject: str, cover: bool, problems: list[JobError],
            out: Path | None) -> dict[str, Any]:
    return {
        "ok": not problems,
        "profile": rules.profile,
        "attachment": {
            "type": rules.attach_as,
            "compression": rules.tiff_compression if rules.attach_as == "tiff" else None,
            "pages": rendered.pages,
            "bytes": rendered.bytes,
            "encoded_bytes": preflight.encoded_size(rendered.bytes),
            "cover": cover,
        },
        "to": None if number is None else {"number": number.e164, "address": address},
        "subject": subject,
        "body": rules.body,
        "limits": {
            "max_pages": rules.max_pages,
            "max_attachment_bytes": rules.max_attachment_bytes,
            "max_subject_chars": rules.max_subject_chars,
        },
        "problems": [{"code": problem.code, "name": _code_name(problem.code),
                      "message": problem.message} for problem in problems],
        "out": str(out) if out is not None else None,
        "warnings": [],
    }


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


def _code_name(code: int | None) -> str:
    entry = codes.CODES.get(code) if code is not None else None
    return entry.name if entry else ""
