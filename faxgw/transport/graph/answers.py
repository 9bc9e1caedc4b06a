"""The Graph answer table: every Microsoft Graph answer → a disposition and a status code, once.

Like the SMTP reply table (:mod:`faxgw.transport.smtp.replies`): the rows are checked in order
and the first that matches wins. A row names the HTTP status, Graph's error code
(``error.code`` in the JSON body) and/or a piece of its message, as Graph sends them for
``sendMail`` (Microsoft's "Microsoft Graph error responses and resource types", "Microsoft
Graph throttling guidance" and the Exchange error codes). Anything not listed falls back by
class: 5xx retries, 4xx fails for good.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from ...domain import codes
from ...domain.disposition import Disposition
from ...domain.retry import retry_after_seconds

#: The wait when a 429 or 503 names none (or 0): Graph's usual throttling window.
DEFAULT_RETRY_AFTER = 30.0

_PERMISSION = ("the app may not send as this mailbox: grant Mail.Send (delegated: consent for "
               "the app; application: the Mail.Send application permission with admin consent, "
               "or an RBAC for Applications role assignment whose management scope includes "
               "this mailbox), then 'faxgw auth test'")


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table."""

    disposition: Disposition
    code: int
    status: int | None = None        # exact HTTP status, or None for any
    error: str | None = None         # Graph's error.code, compared without case
    text: str | None = None          # case-insensitive regular expression on error.message
    status_class: int | None = None  # 4 or 5, for the fallbacks
    retry_after: float | None = None  # seconds, when the answer names no Retry-After
    why: str = ""
    #: A bug on faxgw's side: logged loudly.
    bug: bool = False


RULES: tuple[Rule, ...] = (
    Rule(Disposition.PERMANENT, codes.SEND_AS_DENIED, error="ErrorSendAsDenied",
         why="the mailbox may not send as this sender: grant it 'Send As' on the sender's "
             "mailbox"),
    Rule(Disposition.PERMANENT, codes.MAILBOX_NOT_ON_GRAPH, error="MailboxNotEnabledForRESTAPI",
         why="the mailbox cannot be used through Graph (not an Exchange Online mailbox, "
             "inactive, soft-deleted or on-premises)"),
    Rule(Disposition.PAUSE, codes.MAILBOX_FULL, error="ErrorQuotaExceeded", retry_after=3600.0,
         why="the sending mailbox is full: sent mail cannot be stored"),
    Rule(Disposition.PERMANENT, codes.TOO_LARGE, error="ErrorMessageSizeExceeded",
         why="the message is larger than the mailbox or Graph accepts"),
    Rule(Disposition.PERMANENT, codes.TOO_LARGE, status=413,
         why="the request is larger than Graph accepts"),
    Rule(Disposition.PERMANENT, codes.REJECTED, error="ErrorMimeContentInvalidBase64String",
         why="a bug in faxgw: Graph could not decode the MIME it was sent", bug=True),
    Rule(Disposition.PERMANENT, codes.REJECTED, error="ErrorMimeContentInvalid",
         why="a bug in faxgw: Graph could not read the MIME it was sent", bug=True),
    Rule(Disposition.AUTH, codes.APP_ACCESS_POLICY, status=403,
         text=r"Access to OData is disabled",
         why="an application access policy or RBAC for Applications scope keeps the app out of "
             "this mailbox: include the mailbox in the app's management scope"),
    Rule(Disposition.AUTH, codes.CONSENT_MISSING, status=403, error="ErrorAccessDenied",
         why=_PERMISSION),
    Rule(Disposition.AUTH, codes.CONSENT_MISSING, status=403,
         error="Authorization_RequestDenied", why=_PERMISSION),
    Rule(Disposition.AUTH, codes.CONSENT_MISSING, status=403, why=_PERMISSION),
    Rule(Disposition.AUTH, codes.SIGN_IN_AGAIN, status=401,
         why="Graph refused the token twice (a fresh one too): sign in again "
             "('faxgw auth login'), or check that the token is for this cloud's Graph"),
    Rule(Disposition.PERMANENT, codes.REJECTED, status=404,
         why="no such mailbox: check the job's sender ([smtp] sender, [auth] account)"),
    Rule(Disposition.WAIT, codes.TRY_LATER, status=429, retry_after=DEFAULT_RETRY_AFTER,
         why="Graph is throttling this mailbox or app"),
    Rule(Disposition.WAIT, codes.TRY_LATER, status=503, retry_after=DEFAULT_RETRY_AFTER,
         why="Graph is unavailable for now"),
    Rule(Disposition.WAIT, codes.TRY_LATER, status=504, retry_after=DEFAULT_RETRY_AFTER,
         why="Graph's gateway timed out"),
    Rule(Disposition.RETRY, codes.TRY_LATER, status_class=5, why="a fault at Graph"),
    Rule(Disposition.PERMANENT, codes.REJECTED, status_class=4, why="Graph refused the request"),
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What Graph answered, as far as the table looks at it."""

    status: int
    error: str = ""
    message: str = ""
    retry_after: float | None = None
    request_id: str | None = None

    @property
    def reply(self) -> str:
        """The answer as it was given: ``403 ErrorAccessDenied: Access is denied.``"""
        head = f"{self.status} {self.error}".strip()
        return f"{head}: {self.message}" if self.message else head


def parse_answer(status: int, body: bytes, headers: dict[str, str],
                 *, now: datetime | None = None) -> Answer:
    """The answer's error code and message (Graph's ``{"error": {"code", "message"}}``) and
    its ``Retry-After`` (seconds or an HTTP date) and ``request-id`` headers."""
    error = message = ""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = str(data["error"].get("code") or "")
        message = str(data["error"].get("message") or "")
    elif body:
        message = body[:300].decode("utf-8", "replace").strip()
    lowered = {key.lower(): value for key, value in headers.items()}
    return Answer(status, error, " ".join(message.split())[:500],
                  retry_after_seconds(lowered.get("retry-after"), now),
                  lowered.get("request-id") or lowered.get("client-request-id"))



def classify_answer(answer: Answer) -> Rule:
    """The table row for a Graph answer. 2xx answers are :data:`Disposition.SENT`."""
    if 200 <= answer.status < 300:
        return Rule(Disposition.SENT, codes.SENT, status=answer.status, why="accepted")
    for rule in RULES:
        if rule.status is not None and rule.status != answer.status:
            continue
        if rule.status_class is not None and answer.status // 100 != rule.status_class:
            continue
        if rule.error is not None and rule.error.lower() != answer.error.lower():
            continue
        if rule.text is not None and not re.search(rule.text, answer.message, re.IGNORECASE):
            continue
        return rule
    return Rule(Disposition.RETRY, codes.TRY_LATER, why="an unexpected answer")
