"""One message in, one :class:`~faxgw.domain.reports.Finding` out: which parser applies.

The order is the rule: a bounce (by structure) first; then what is surely not a report (an
auto-reply, a mailing); then the service's own formats; then ``[service]``'s free-text rules.
Nothing here reads the subject to decide: subjects are localised and echo the user's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage, Message

from ..config import ServiceConfig
from ..domain.reports import Finding, Outcome
from ..fax.profiles import get_profile
from .dsn import parse_dsn
from .interfax import parse_csv, parse_xml
from .mail import attachments, header, message_ids, parse, text_of

Parser = Callable[[Message], Finding | None]

#: A job's token as :func:`faxgw.fax.profiles.subject_token` writes it.
_TOKEN = re.compile(r"\[faxgw ([0-9a-f]{8})\]")

#: A profile's ``reports`` names → the parsers that read them, tried in order.
FORMATS: dict[str, tuple[Parser, ...]] = {
    "interfax": (parse_xml, parse_csv),
}

#: Headers that mark a message as written by a machine for a person, not a report: RFC 3834
#: auto-replies (out of office), and mailing lists and newsletters (RFC 2369, RFC 2919).
_AUTO_REPLY = ("X-Autoreply", "X-Autorespond")
_BULK = ("List-Id", "List-Unsubscribe")
_BULK_PRECEDENCE = ("bulk", "list", "junk")


@dataclass(frozen=True, slots=True)
class ReportRules:
    """What the configured service reports, and how faxgw reads it."""

    #: Whether the service confirms faxes at all (else jobs stay ``sent``).
    confirms: bool
    formats: tuple[str, ...]
    success: tuple[re.Pattern[str], ...]
    failure: tuple[tuple[re.Pattern[str], int], ...]


def report_rules(service: ServiceConfig) -> ReportRules:
    """The report rules of ``[service]``: its profile's formats and its free-text rules."""
    formats = get_profile(service.profile).reports
    success = tuple(re.compile(p, re.IGNORECASE) for p in service.confirm_success)
    failure = tuple((re.compile(p, re.IGNORECASE), code)
                    for p, code in service.confirm_failure.items())
    return ReportRules(bool(formats or success or failure), formats, success, failure)


def _not_a_report(message: Message) -> str:
    """``auto-reply`` or ``bulk`` for a message that is surely no report, else ""."""
    auto = header(message, "Auto-Submitted").lower()
    if (auto and auto != "no") or any(name in message for name in _AUTO_REPLY):
        return "auto-reply"
    if any(name in message for name in _BULK) or \
            header(message, "Precedence").lower() in _BULK_PRECEDENCE:
        return "bulk"
    return ""


def _rules(message: Message, rules: ReportRules) -> Finding | None:
    if not (rules.success or rules.failure):
        return None
    text = text_of(message)
    for pattern, code in rules.failure:
        found = pattern.search(text)
        if found:
            return Finding("rules", Outcome.FAILED, code,
                           f"the service reports: {found.group(0)[:200]}")
    for pattern in rules.success:
        found = pattern.search(text)
        if found:
            return Finding("rules", Outcome.DELIVERED, None,
                           f"the service reports: {found.group(0)[:200]}")
    return None


def classify(raw: bytes, rules: ReportRules) -> tuple[EmailMessage, Finding]:
    """Read ``raw`` into its message and what it says (``Outcome.NONE``: not a report)."""
    message = parse(raw)
    finding = parse_dsn(message)
    if finding is not None:
        return message, finding
    kind = _not_a_report(message)
    if kind:
        return message, Finding(kind, Outcome.NONE, summary="not a report")
    for name in rules.formats:
        for parser in FORMATS.get(name, ()):
            finding = parser(message)
            if finding is not None:
                break
        if finding is not None:
            break
    if finding is None:
        finding = _rules(message, rules)
    if finding is None:
        return message, Finding("unrecognised", Outcome.NONE, summary="no rule matched")
    replies = message_ids(header(message, "In-Reply-To")) + message_ids(
        header(message, "References"))
    return message, Finding(finding.kind, finding.outcome, finding.code, finding.summary,
                            finding.pages, finding.remote_id, finding.message_ids + replies,
                            finding.job_ids, finding.envelope_id, finding.number,
                            tokens=_tokens(message))


def _tokens(message: Message) -> tuple[str, ...]:
    """Job tokens in the report's subject, text and text attachments (services repeat the
    fax's subject there)."""
    texts = [header(message, "Subject"), text_of(message)]
    texts += [text for _, text in attachments(message, "text/csv", "text/xml",
                                              "application/xml", ".csv", ".xml")]
    return tuple(dict.fromkeys(token for text in texts for token in _TOKEN.findall(text)))
