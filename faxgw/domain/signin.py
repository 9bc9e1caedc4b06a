"""The sign-in state of a sending account, as every credential provider reports it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SIGNED_IN = "signed in"
EXPIRED = "expired"
SIGN_IN_NEEDED = "sign-in needed"
APP_ONLY = "app-only, no sign-in needed"


def utc_iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with seconds, or None."""
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None



@dataclass(frozen=True)
class AccountStatus:
    """The sign-in state of one account, as ``faxgw auth status`` shows it."""

    account: str
    state: str
    access_token_expires: datetime | None = None
    last_refresh: datetime | None = None
    refresh_token_expires_by_inactivity: datetime | None = None
    code: int | None = None
    solution: str | None = None
    #: The last keep-alive: ``{"at": ISO, "ok": bool, "code": int | None}``.
    last_keepalive: dict[str, Any] | None = None
    #: The last sign-in problem in words (names the AADSTS code), if the state comes from it.
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The ``auth status --json`` object (times as ISO 8601 UTC)."""
        return {
            "account": self.account,
            "state": self.state,
            "access_token_expires": utc_iso(self.access_token_expires),
            "last_refresh": utc_iso(self.last_refresh),
            "refresh_token_expires_by_inactivity": utc_iso(
                self.refresh_token_expires_by_inactivity
            ),
            "code": self.code,
            "solution": self.solution,
            "last_keepalive": self.last_keepalive,
            "detail": self.detail or None,
        }


@dataclass(frozen=True)
class KeepaliveResult:
    """The outcome of one keep-alive refresh."""

    account: str
    ok: bool
    at: datetime
    code: int | None = None
    message: str = ""
