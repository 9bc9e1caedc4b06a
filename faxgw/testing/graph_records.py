"""What the local Graph server keeps, and how it reads Graph's JSON ``message`` resource.

The records (:class:`GraphReceived`, :class:`Draft`, :class:`Upload`, :class:`Fault`) and the
two ways a message reaches the server as an email: base64 MIME as it was sent, or the JSON
``message`` of ``sendMail`` / a draft, checked the way Graph checks it (:func:`read_message`)
and turned into the email Exchange would deliver (:func:`email_from_json`), so that tests can
compare it with what the SMTP path delivers: subject, addresses, body, Message-ID, ``X-``
headers and the attachments' bytes.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from faxgw.testing.graph_http import error
from faxgw.testing.smtp_ledger import parse_message

#: Graph's limit on custom headers per message; only ``x-`` headers are allowed.
MAX_CUSTOM_HEADERS = 5
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"


@dataclass
class GraphReceived:
    """One message Graph accepted: whose mailbox sent it, the email, the token's grant, how
    it came (``mime`` or ``json`` by sendMail, ``draft+mime`` or ``draft+json`` by a draft's
    send) and whether a copy went to Sent Items."""

    mailbox: str
    #: The MIME as it came, or the checked JSON ``message`` resource (built into an email
    #: when it is looked at, so that the slow mode's replies are not slowed further).
    raw: bytes | dict[str, Any]
    account: str | None  # the token's user; None: app-only
    scopes: tuple[str, ...]
    request_id: str
    form: str = "mime"
    saved_to_sent_items: bool = True

    @property
    def data(self) -> bytes:
        """The email as Exchange would deliver it."""
        if isinstance(self.raw, bytes):
            return self.raw
        return email_from_json(self.raw, self.mailbox).as_bytes()

    @property
    def message(self) -> EmailMessage:
        """:attr:`data` parsed with ``email.policy.default``."""
        return parse_message(self.data)


@dataclass
class Fault:
    """A scripted answer for the next sending requests."""

    status: int
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    drop: bool = False


@dataclass
class Draft:
    """A draft (made from MIME or JSON), and the attachments added to it."""

    mailbox: str
    mime: bytes
    account: str | None
    scopes: tuple[str, ...]
    form: str = "mime"
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class Upload:
    """An upload session: which draft, what attachment, what has arrived, and after how many
    chunks it expires (None: it does not)."""

    draft_id: str
    name: str
    content_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)
    expires_after_chunks: int | None = None
    expired_status: int = 404
    chunks: int = 0


class BadRequest(Exception):
    """A request Graph would refuse with 400: its error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.body = error(code, message)


def _address(value: Any, where: str) -> str:
    try:
        inner = value["emailAddress"]
        address = str(inner["address"])
        name = str(inner.get("name") or "")
    except (KeyError, TypeError):
        raise BadRequest("ErrorInvalidRecipients", f"{where}: an emailAddress with an "
                         "address is required.") from None
    if "@" not in address:
        raise BadRequest("ErrorInvalidRecipients", f"{where}: {address!r} is not an address.")
    return f"{name} <{address}>" if name else address


def read_message(data: Any, *, draft: bool = False) -> dict[str, Any]:
    """The ``message`` resource after Graph's checks; raises :class:`BadRequest`."""
    if not isinstance(data, dict):
        raise BadRequest("RequestBodyRead", "The message must be a JSON object.")
    recipients = data.get("toRecipients")
    if not draft and (not isinstance(recipients, list) or not recipients):
        raise BadRequest("ErrorInvalidRecipients", "At least one recipient is required.")
    body = data.get("body")
    if body is not None and (not isinstance(body, dict)
                             or body.get("contentType") not in ("text", "html")):
        raise BadRequest("RequestBodyRead", "body: contentType must be text or html.")
    headers = data.get("internetMessageHeaders") or []
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise BadRequest("InvalidInternetMessageHeaderCollection", "Maximum number of headers "
                         "in one message should be less than or equal to 5.")
    for header in headers:
        if not str(header.get("name", "")).lower().startswith("x-"):
            raise BadRequest("InvalidInternetMessageHeader", "The internet message header "
                             "name should start with 'x-' or 'X-'.")
    message_id = data.get("internetMessageId")
    if message_id is not None and not (str(message_id).startswith("<")
                                       and str(message_id).endswith(">")):
        raise BadRequest("ErrorInvalidInternetMessageId", "The internetMessageId must be "
                         "enclosed in angle brackets.")
    for item in data.get("attachments") or []:
        if item.get("@odata.type") != FILE_ATTACHMENT or not item.get("name"):
            raise BadRequest("RequestBodyRead", "attachments: a fileAttachment with a name "
                             "is required.")
        try:
            base64.b64decode(str(item.get("contentBytes", "")), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("ErrorInvalidBase64String", "contentBytes is not base64.") from None
    return data


def email_from_json(data: dict[str, Any], mailbox: str) -> EmailMessage:
    """The email Exchange builds from a checked ``message`` resource (its attachments too)."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = _address(data["from"], "from") if data.get("from") else mailbox
    for header, key in (("To", "toRecipients"), ("Cc", "ccRecipients")):
        if data.get(key):
            message[header] = ", ".join(_address(item, key) for item in data[key])
    message["Subject"] = str(data.get("subject") or "")
    if data.get("internetMessageId"):
        message["Message-ID"] = str(data["internetMessageId"])
    for header in data.get("internetMessageHeaders") or []:
        message[str(header["name"])] = str(header["value"])
    body = data.get("body")
    if body is not None:
        subtype = "html" if body["contentType"] == "html" else "plain"
        message.set_content(str(body.get("content") or ""), subtype=subtype, charset="utf-8")
    for item in data.get("attachments") or []:
        add_attachment(message, str(item["name"]), str(item.get("contentType") or
                                                      "application/octet-stream"),
                       base64.b64decode(str(item["contentBytes"])))
    return message


def add_attachment(message: EmailMessage, name: str, content_type: str, data: bytes) -> None:
    """Attach ``data`` under ``content_type`` (parameters such as ``application=faxbw`` kept)."""
    kind, *params = [piece.strip() for piece in content_type.split(";")]
    maintype, _, subtype = kind.partition("/")
    extra = dict(param.split("=", 1) for param in params if "=" in param)
    message.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=name, params=extra)


def assemble(draft: Draft) -> bytes:
    """The message as sent: the draft's MIME with its attachments added."""
    message = parse_message(draft.mime)
    for name, content_type, data in draft.attachments:
        add_attachment(message, name, content_type, data)
    return message.as_bytes()
