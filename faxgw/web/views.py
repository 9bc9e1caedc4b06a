"""What the pages show, in words: the Email server sheet's rows (the names a printer's Web
Config uses), times, sizes. Pure functions over what the use cases return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..config import Config
from ..domain import codes
from ..domain.signin import APP_ONLY, EXPIRED, SIGN_IN_NEEDED, AccountStatus

__all__ = ["AccountBlock", "server_rows", "size", "when", "when_seconds"]

METHODS = {"oauth2": "OAuth2", "password": "Password (SMTP AUTH)", "none": "None"}
SERVICES = {"exchange-online": "Microsoft Exchange Online", "outlook": "Outlook.com",
            "custom": "Custom identity provider"}
SECURITY = {"starttls": "STARTTLS", "tls": "SSL/TLS", "none": "None"}
CERTIFICATE_WARNING = ("Certificate validation is off: the connection can be intercepted "
                       "without notice. Turn it on ([smtp] verify_certificate = true) unless "
                       "you are testing.")


def when(moment: datetime | str | None) -> str:
    """A time as people read it in an admin tool: ``2026-11-30 06:15 UTC``."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def when_seconds(moment: datetime) -> str:
    """A time to the second, for what changes by itself: ``2026-11-30 06:15:42 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(count: int | None) -> str:
    """Bytes in words: 812 bytes, 14.2 KB, 3.1 MB."""
    if count is None:
        return ""
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / (1024 * 1024):.1f} MB"


@dataclass
class AccountBlock:
    """One signed-in (or expected) account on the Email server page."""

    account: str
    status: str
    ok: bool
    rows: list[tuple[str, str]] = field(default_factory=list)
    code: int | None = None
    solution: str = ""


def current_status(status: AccountStatus) -> str:
    """``Signed in``, ``Sign-in needed`` or ``Sign-in expired``."""
    if status.state == SIGN_IN_NEEDED:
        return "Sign-in expired" if status.code == codes.CONNECTION_EXPIRED else \
            "Sign-in needed"
    if status.state == APP_ONLY:
        return "Signed in (app-only, no sign-in needed)"
    return "Signed in"


def account_block(status: AccountStatus) -> AccountBlock:
    """The ``Current status`` and the token forecast of one account."""
    text = current_status(status)
    block = AccountBlock(status.account, text, text.startswith("Signed in"), code=status.code,
                         solution=status.solution or "")
    if status.code is not None and not block.solution:
        block.solution = codes.describe(status.code).solution
    if status.access_token_expires:
        verb = "refreshed by itself" if status.state == EXPIRED else "valid until"
        block.rows.append(("Access token", f"{verb} {when(status.access_token_expires)}"
                           if status.state != EXPIRED else verb))
    if status.refresh_token_expires_by_inactivity and status.state != SIGN_IN_NEEDED:
        block.rows.append(("Sign-in expires without use on",
                           when(status.refresh_token_expires_by_inactivity)))
    if status.last_refresh:
        block.rows.append(("Last refresh", when(status.last_refresh)))
    keepalive = status.last_keepalive
    if keepalive:
        outcome = "ok" if keepalive.get("ok") else f"failed (code {keepalive.get('code')})"
        block.rows.append(("Last keep-alive", f"{when(str(keepalive.get('at')))}: {outcome}"))
    if status.detail:
        block.rows.append(("Detail", status.detail))
    return block


def server_rows(config: Config, sheet: dict[str, Any],
                accounts: list[AccountStatus]) -> list[tuple[str, str]]:
    """The sheet's rows, named as in the printer manual's *Email Server > Basic*."""
    method = config.auth.method
    if method == "oauth2":
        current = ", ".join(sorted({current_status(a) for a in accounts})) or "Sign-in needed"
        signed = [a.account for a in accounts if current_status(a).startswith("Signed in")]
        account = ", ".join(signed) or "(none)"
        service = SERVICES[config.auth.provider]
    else:
        current = "Signed in" if method == "none" else str(sheet["sign_in"])
        account = config.auth.username or config.smtp.sender if method == "password" else \
            "(no sign-in)"
        service = "SMTP server"
    return [
        ("Authentication method", METHODS[method]),
        ("Email service", service),
        ("Current status", current),
        ("Authenticated account", account),
        ("Sender's email address", str(sheet["account"])),
        ("SMTP server address", str(sheet["smtp_host"])),
        ("SMTP server port number", str(sheet["smtp_port"])),
        ("Secure connection", SECURITY[str(sheet["security"])]),
        ("Certificate validation", "On" if sheet["certificate_validation"] else "Off"),
        ("Fax service address", str(sheet["service_address"])),
    ]
