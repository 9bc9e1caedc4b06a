"""The one table from identity-provider errors to faxgw status codes.

Entra ID answers a failed token request with an OAuth ``error`` (``invalid_grant``,
``invalid_client``, …) and a list of ``error_codes`` (the AADSTS numbers). The AADSTS number is
the precise reason, so it is looked up first; the OAuth ``error`` is the fallback; anything
unknown is 370 ("sign in again"), the safe default: the account pauses and its jobs wait.

Everything that leaves this module is an :class:`OAuth2Error` (an :class:`AuthError`) whose
message names the account, the AADSTS code and the first sentence of the provider's
description. Token text and secrets never appear: the provider's description is cut to one
sentence and any long token-like run of characters is replaced by ``…``.

Network failures (refused, DNS, TLS handshake, timeout, HTTP 5xx) are not in this table: they
become :class:`faxgw.domain.errors.ConnectError` (360) in :func:`connect_error`, with the
short cause :func:`network_reason` finds in the exception chain.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from ..domain import codes
from ..domain.errors import AuthError, ConnectError


@dataclass(frozen=True, slots=True)
class Reason:
    """What an identity-provider error means, in faxgw's words."""

    code: int
    reason: str


#: AADSTS number → status code and plain reason. Sources: the Entra ID error code reference
#: (learn.microsoft.com/entra/identity-platform/reference-error-codes) and the answers
#: Entra ID was seen to give.
BY_AADSTS: Mapping[int, Reason] = {
    # The refresh token chain is dead: only a new sign-in helps (361, "connection expired").
    700082: Reason(codes.CONNECTION_EXPIRED, "the sign-in expired after 90 days without use"),
    70008: Reason(codes.CONNECTION_EXPIRED, "the sign-in expired after a long time without use"),
    50173: Reason(codes.CONNECTION_EXPIRED, "the sign-in was revoked (password changed or reset)"),
    70043: Reason(
        codes.CONNECTION_EXPIRED, "the sign-in expired under a sign-in frequency policy"
    ),
    # A person must act in Entra ID or sign in again with more proof (370 or a specific code).
    65001: Reason(codes.CONSENT_MISSING, "the app has no consent to send mail for this account"),
    50076: Reason(codes.SIGN_IN_AGAIN, "multi-factor authentication is required"),
    50079: Reason(codes.SIGN_IN_AGAIN, "the account must enrol in multi-factor authentication"),
    53003: Reason(codes.SIGN_IN_AGAIN, "blocked by a conditional access policy"),
    530035: Reason(codes.SIGN_IN_AGAIN, "blocked by the tenant's security defaults"),
    # The app registration itself is wrong (374) or its secret is (376).
    7000218: Reason(codes.APP_REGISTRATION, "public client flows are off for the app"),
    700016: Reason(codes.APP_REGISTRATION, "the app (client_id) was not found in the tenant"),
    9002332: Reason(
        codes.APP_REGISTRATION, "the app is for work accounts only (do not use /consumers)"
    ),
    90002: Reason(codes.APP_REGISTRATION, "the tenant was not found"),
    7000215: Reason(codes.CLIENT_SECRET, "the client secret is wrong"),
    7000222: Reason(codes.CLIENT_SECRET, "the client secret has expired"),
    700027: Reason(codes.CLIENT_SECRET, "the client certificate is not registered for the "
                   "app, or its signature does not match"),
    700024: Reason(codes.CLIENT_SECRET, "the client assertion is outside its valid time "
                   "(check this machine's clock)"),
    # Device code sign-in outcomes (also given by their OAuth error below).
    70019: Reason(codes.SIGN_IN_AGAIN, "the sign-in code expired before it was used"),
}

#: OAuth ``error`` → status code and reason, used when no AADSTS number is known.
BY_ERROR: Mapping[str, Reason] = {
    "invalid_grant": Reason(codes.SIGN_IN_AGAIN, "the identity provider refused the sign-in"),
    "interaction_required": Reason(codes.SIGN_IN_AGAIN, "the account must sign in again"),
    "consent_required": Reason(codes.CONSENT_MISSING, "consent is required"),
    "invalid_client": Reason(codes.APP_REGISTRATION, "the app registration refused the request"),
    "unauthorized_client": Reason(codes.APP_REGISTRATION, "the app may not use this sign-in"),
    "invalid_scope": Reason(codes.APP_REGISTRATION, "the app may not ask for this scope"),
    "access_denied": Reason(codes.SIGN_IN_AGAIN, "access was denied"),
    "expired_token": Reason(codes.SIGN_IN_AGAIN, "the sign-in code expired before it was used"),
    "authorization_declined": Reason(codes.SIGN_IN_AGAIN, "the sign-in was declined"),
    "bad_verification_code": Reason(codes.SIGN_IN_AGAIN, "the sign-in code was not recognised"),
}

#: The safe default for anything neither table knows.
DEFAULT = Reason(codes.SIGN_IN_AGAIN, "the identity provider refused the token request")

# Runs of token-like characters this long are never part of a human description.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9._~+=-]{40,}")
_AADSTS_PREFIX = re.compile(r"^\s*AADSTS\d+:\s*")


class OAuth2Error(AuthError):
    """A token request refused by the identity provider; a person must act.

    ``aadsts`` is the Entra error number when given, ``oauth_error`` the OAuth ``error`` value,
    ``account`` the mailbox concerned (empty for app-only tokens).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        account: str = "",
        aadsts: int | None = None,
        oauth_error: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.account = account
        self.aadsts = aadsts
        self.oauth_error = oauth_error


def first_aadsts(result: Mapping[str, Any]) -> int | None:
    """The first AADSTS number of an error response, from ``error_codes`` or the text."""
    numbers = result.get("error_codes")
    if isinstance(numbers, list):
        for number in numbers:
            if isinstance(number, int) and not isinstance(number, bool):
                return number
    found = re.search(r"AADSTS(\d+)", str(result.get("error_description") or ""))
    return int(found.group(1)) if found else None


def classify(result: Mapping[str, Any]) -> Reason:
    """The status code and reason for an error response (AADSTS first, then ``error``)."""
    aadsts = first_aadsts(result)
    if aadsts is not None and aadsts in BY_AADSTS:
        return BY_AADSTS[aadsts]
    return BY_ERROR.get(str(result.get("error") or ""), DEFAULT)


def short_description(result: Mapping[str, Any], limit: int = 160) -> str:
    """The first sentence of the provider's description, without its AADSTS prefix.

    Entra descriptions continue with trace and correlation ids and a timestamp; a person needs
    only the first sentence. Token-like runs are masked as a last line of defence.
    """
    text = str(result.get("error_description") or "").strip()
    text = _AADSTS_PREFIX.sub("", text.splitlines()[0] if text else "")
    # Entra appends "Trace ID: … Correlation ID: … Timestamp: …"; none of it helps a person.
    text = text.split(" Trace ID:")[0]
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    sentence = _TOKEN_LIKE.sub("…", sentence)
    if len(sentence) > limit:
        sentence = sentence[: limit - 1].rstrip() + "…"
    return sentence


def auth_error(result: Mapping[str, Any], *, account: str, action: str) -> OAuth2Error:
    """Translate an error response of the identity provider into an :class:`OAuth2Error`.

    ``action`` says what was being done ("refreshing the token", "signing in") so that the
    message reads as one sentence: ``fax@contoso.com: refreshing the token failed: the
    sign-in expired after 90 days without use (AADSTS700082: The refresh token has expired
    due to inactivity.)``.
    """
    reason = classify(result)
    aadsts = first_aadsts(result)
    oauth_error = str(result.get("error") or "") or None
    detail = short_description(result)
    label = f"AADSTS{aadsts}" if aadsts is not None else (oauth_error or "error")
    tail = f" ({label}: {detail})" if detail else f" ({label})"
    who = f"{account}: " if account else ""
    return OAuth2Error(
        f"{who}{action} failed: {reason.reason}{tail}",
        code=reason.code,
        account=account,
        aadsts=aadsts,
        oauth_error=oauth_error,
    )


def connect_error(where: str, reason: str) -> ConnectError:
    """A :class:`ConnectError` (360): the identity provider at ``where`` cannot be reached."""
    reason = _TOKEN_LIKE.sub("…", reason)
    return ConnectError(
        f"cannot reach the identity provider {where}: {reason}", code=codes.NO_CONNECTION
    )


def network_reason(exc: BaseException, timeout: float) -> str:
    """A short cause for a failed request: refused, name unknown, TLS, timeout."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        inner = todo.pop(0)
        if not isinstance(inner, BaseException) or id(inner) in seen:
            continue
        seen.add(id(inner))
        if isinstance(inner, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({inner.verify_message}); check [auth] ca_file"
        if isinstance(inner, ssl.SSLError):
            return f"TLS handshake failed ({inner.reason or inner})"
        if isinstance(inner, socket.gaierror):
            return "host name not found"
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, (requests.exceptions.Timeout, TimeoutError)):
            return f"no answer within {timeout:g} s"
        todo.extend([getattr(inner, "reason", None), inner.__cause__, inner.__context__,
                     *inner.args])
    return type(exc).__name__
