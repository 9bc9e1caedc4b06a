"""The SMTP reply table: every server reply → a disposition and a status code, once.

The rows are checked in order; the first that matches wins. Each row names the reply code,
the enhanced status code prefix and/or a piece of the server's text it matches, as Exchange
Online and other servers send them (Microsoft's "Fix email delivery issues" pages for the
5.7.x codes, RFC 3463 for the rest). Anything not listed falls back by its first digit: 4xx
retries, 5xx fails for good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...domain import codes
from ...domain.disposition import Disposition


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table."""

    disposition: Disposition
    code: int
    smtp: int | None = None          # exact reply code, or None for any
    enhanced: str | None = None      # enhanced status code prefix, e.g. "5.7.139"
    text: str | None = None          # case-insensitive regular expression on the reply text
    first_digit: int | None = None   # 4 or 5, for the fallbacks
    retry_after: float | None = None  # seconds, where the reply implies a longer wait
    why: str = ""


RULES: tuple[Rule, ...] = (
    # Exchange: SMTP AUTH switched off for the tenant or mailbox, or security defaults on.
    Rule(Disposition.AUTH, codes.SMTP_AUTH_DISABLED, enhanced="5.7.139",
         why="SMTP AUTH disabled for the tenant or mailbox"),
    Rule(Disposition.AUTH, codes.SMTP_AUTH_DISABLED, text=r"SmtpClientAuthentication is disabled",
         why="SMTP AUTH disabled"),
    Rule(Disposition.AUTH, codes.AUTH_REJECTED, enhanced="5.7.30",
         why="basic authentication is not supported"),
    Rule(Disposition.AUTH, codes.SIGN_IN_AGAIN, smtp=535, why="authentication unsuccessful"),
    Rule(Disposition.AUTH, codes.SIGN_IN_AGAIN, enhanced="5.7.57",
         why="client not authenticated"),
    Rule(Disposition.PERMANENT, codes.SEND_AS_DENIED, enhanced="5.7.60", why="send-as denied"),
    Rule(Disposition.PERMANENT, codes.SEND_AS_DENIED, enhanced="5.2.252", why="send-as denied"),
    Rule(Disposition.PERMANENT, codes.SEND_AS_DENIED, text=r"SendAsDenied", why="send-as denied"),
    # Exchange per-mailbox limits.
    Rule(Disposition.THROTTLE, codes.TRY_LATER, enhanced="4.3.2",
         text=r"concurrent connections|sender thread limit", why="too many connections"),
    Rule(Disposition.THROTTLE, codes.TRY_LATER, smtp=432, why="too many connections"),
    Rule(Disposition.PAUSE, codes.DAILY_QUOTA, text=r"SubmissionQuotaExceeded",
         retry_after=3 * 3600.0, why="daily sending quota reached"),
    Rule(Disposition.PAUSE, codes.MAILBOX_FULL, enhanced="5.2.2", retry_after=3600.0,
         why="the sending mailbox is full (Sent Items)"),
    # Size.
    Rule(Disposition.PERMANENT, codes.TOO_LARGE, smtp=552, why="message too large"),
    Rule(Disposition.PERMANENT, codes.TOO_LARGE, enhanced="5.3.4", why="message too large"),
    # Fallbacks by class.
    Rule(Disposition.RETRY, codes.TRY_LATER, first_digit=4, why="temporary failure"),
    Rule(Disposition.PERMANENT, codes.REJECTED, first_digit=5, why="rejected"),
)

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_code(message: str) -> str | None:
    """The enhanced status code (RFC 3463) at the start of a reply text, if any."""
    match = _ENHANCED.match(message)
    return match.group(1) if match else None


def classify_reply(smtp_code: int, message: str) -> Rule:
    """The table row for a server reply. 2xx replies are :data:`Disposition.SENT`."""
    if 200 <= smtp_code < 300:
        return Rule(Disposition.SENT, codes.SENT, smtp=smtp_code, why="accepted")
    enhanced = enhanced_code(message) or ""
    for rule in RULES:
        if rule.smtp is not None and rule.smtp != smtp_code:
            continue
        if rule.first_digit is not None and smtp_code // 100 != rule.first_digit:
            continue
        if rule.enhanced is not None and not (
            enhanced == rule.enhanced or enhanced.startswith(rule.enhanced + ".")
        ):
            continue
        if rule.text is not None and not re.search(rule.text, message, re.IGNORECASE):
            continue
        return rule
    # A reply outside 2xx/4xx/5xx is a protocol error: treat as temporary.
    return Rule(Disposition.RETRY, codes.TRY_LATER, why="unexpected reply")
