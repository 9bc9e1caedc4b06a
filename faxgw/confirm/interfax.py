"""InterFAX confirmations in CSV and XML.

InterFAX mails a confirmation for each fax to the sender (``Reply-To``, else ``From``), in the
format the account chooses: text, HTML, CSV or XML. CSV and XML carry the same fields: the
transaction id, the status (0 success; below 0 still in progress; above 0 failed, with a
description), pages sent, the original subject, the destination, the duration and times.
Field names are matched loosely (case, spaces and underscores ignored), since the words
differ between the formats.
"""

from __future__ import annotations

import csv
import io
from email.message import Message

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ..domain import codes
from ..domain.reports import Finding, Outcome
from .mail import attachments, text_of
from .results import code_for

_SUCCESS_WORDS = ("ok", "success", "successful", "sent", "completed", "delivered")


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _field(fields: dict[str, str], *names: str) -> str:
    for name in names:
        if fields.get(name):
            return fields[name].strip()
    return ""


def _finding(kind: str, fields: dict[str, str]) -> Finding | None:
    status = _field(fields, "status", "faxstatus", "result", "statuscode")
    transaction = _field(fields, "transactionid", "transaction", "faxid", "id")
    if not status or not transaction:
        return None
    description = _field(fields, "statusdescription", "description", "resultdescription",
                         "errordescription", "message")
    pages_text = _field(fields, "pagessent", "pagestransmitted", "pages")
    total_text = _field(fields, "pagessubmitted", "totalpages", "pagestotal")
    pages = int(pages_text) if pages_text.isdigit() else None
    total = int(total_text) if total_text.isdigit() else None
    remote = _field(fields, "remotecsid", "csid", "remotestationid", "remoteid")
    number = _field(fields, "destination", "destinationfax", "faxnumber", "to", "number")
    try:
        value = int(status)
    except ValueError:
        value = 0 if status.lower() in _SUCCESS_WORDS else 1
    where = f"InterFAX transaction {transaction}"
    if value == 0:
        sent = f", {pages} pages" if pages is not None else ""
        station = f", remote station {remote}" if remote else ""
        return Finding(kind, Outcome.DELIVERED, codes.CONFIRMED,
                       f"{where}: delivered{sent}{station}", pages=pages, remote_id=remote,
                       number=number)
    if value < 0:
        return Finding(kind, Outcome.PENDING, None, f"{where}: in progress ({status})",
                       number=number)
    code = code_for(f"{status} {description}")
    if code == codes.REMOTE_REJECTED and pages and total and pages < total:
        code = codes.REMOTE_PARTIAL
    said = f" {description}" if description else ""
    return Finding(kind, Outcome.FAILED, code, f"{where}: failed, status {status}{said}"[:500],
                   pages=pages, remote_id=remote, number=number)


def _csv_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    # The header is the first line that names a status and a transaction.
    for start, line in enumerate(lines):
        keys = {_key(k) for k in next(csv.reader([line]), [])}
        if "status" in keys and any(k.startswith("transaction") for k in keys):
            reader = csv.DictReader(io.StringIO("\n".join(lines[start:])))
            return [{_key(k or ""): (v or "") for k, v in row.items() if isinstance(v, str)}
                    for row in reader]
    return []


def parse_csv(message: Message) -> Finding | None:
    """An InterFAX CSV confirmation (a ``.csv`` attachment or CSV in the text)."""
    sources = [text for _, text in attachments(message, "text/csv", ".csv")]
    sources.append(text_of(message))
    for text in sources:
        for row in _csv_rows(text):
            finding = _finding("interfax-csv", row)
            if finding is not None:
                return finding
    return None


def parse_xml(message: Message) -> Finding | None:
    """An InterFAX XML confirmation (an ``.xml`` attachment or XML as the text)."""
    sources = [text for _, text in attachments(message, "text/xml", "application/xml", ".xml")]
    body = text_of(message).strip()
    if body.startswith("<"):
        sources.append(body)
    for text in sources:
        try:
            root = ElementTree.fromstring(text.strip().encode("utf-8"))
        except (ElementTree.ParseError, DefusedXmlException, ValueError):
            continue
        fields: dict[str, str] = {}
        for element in root.iter():
            name = _key(str(element.tag).rpartition("}")[2])
            if element.text and element.text.strip() and name not in fields:
                fields[name] = element.text.strip()
        finding = _finding("interfax-xml", fields)
        if finding is not None:
            return finding
    return None
