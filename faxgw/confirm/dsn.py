"""Bounces: RFC 3464 delivery status notifications, Exchange Online's NDRs among them.

Recognised by structure (``multipart/report; report-type=delivery-status``), never by the
subject, which Exchange localises. The per-recipient ``Action`` decides: ``failed`` is a
bounce (code 546); ``delayed`` changes nothing yet; ``delivered``/``relayed`` reached the fax
service's mail server, which is not the fax machine, so that changes nothing either.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from ..domain import codes
from ..domain.reports import Finding, Outcome
from .mail import header, message_ids

_FAILED, _DELAYED = "failed", "delayed"


def _blocks(status_part: Message) -> list[Message]:
    """The delivery-status part's field blocks: per-message first, then per-recipient."""
    payload = status_part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # Some servers label it text: read the blocks ourselves.
    text = payload if isinstance(payload, str) else ""
    return [email.message_from_string(chunk.strip() + "\n", policy=email.policy.default)
            for chunk in text.replace("\r\n", "\n").split("\n\n") if chunk.strip()]


def _original_headers(message: Message) -> Message | None:
    """The returned original's headers (``message/rfc822`` or ``text/rfc822-headers``)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind in ("text/rfc822-headers", "message/global-headers"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return email.message_from_bytes(raw, policy=email.policy.default)
    return None


def parse_dsn(message: Message) -> Finding | None:
    """A finding for a delivery status notification; None when ``message`` is not one."""
    report_type = message.get_param("report-type", "")
    if message.get_content_type() != "multipart/report" or \
            not isinstance(report_type, str) or report_type.lower() != "delivery-status":
        return None
    status_part = next((part for part in message.walk()
                        if part.get_content_type() in ("message/delivery-status",
                                                       "message/global-delivery-status")), None)
    if status_part is None:
        return None
    blocks = _blocks(status_part)
    per_message, recipients = (blocks[0], blocks[1:]) if blocks else (None, [])
    actions = [header(block, "Action").lower() for block in recipients]
    failed = [block for block, action in zip(recipients, actions, strict=True)
              if action == _FAILED]
    ndr = bool(header(message, "X-MS-Exchange-Message-Is-Ndr")) or \
        "X-MS-Exchange-Message-Is-Ndr" in message
    kind = "ndr" if ndr else "dsn"
    original = _original_headers(message)
    ids = message_ids(header(message, "In-Reply-To")) + message_ids(
        header(message, "References"))
    job_ids: tuple[str, ...] = ()
    if original is not None:
        ids = message_ids(header(original, "Message-ID")) + ids
        job_ids = tuple(filter(None, [header(original, "X-Faxgw-Job")]))
    envelope = header(per_message, "Original-Envelope-Id") if per_message is not None else ""
    if failed:
        first = failed[0]
        status = header(first, "Status")
        diagnostic = header(first, "Diagnostic-Code")
        recipient = header(first, "Final-Recipient").rpartition(";")[2].strip()
        summary = f"bounced by the mail server: {status} {diagnostic}".strip()
        return Finding(kind, Outcome.FAILED, codes.BOUNCED, summary[:500], message_ids=ids,
                       job_ids=job_ids, envelope_id=envelope,
                       number=recipient.partition("@")[0])
    summary = ", ".join(sorted(set(filter(None, actions)))) or "no recipient status"
    return Finding(kind, Outcome.PENDING, None, f"delivery status: {summary}",
                   message_ids=ids, job_ids=job_ids, envelope_id=envelope)
