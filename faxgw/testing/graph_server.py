"""A local Microsoft Graph over real HTTPS, for tests and demos: ``sendMail`` with MIME.

It answers the way ``graph.microsoft.com`` does for what the Graph transport uses::

    POST /v1.0/users/{mailbox}/sendMail    Content-Type: text/plain, base64 of the MIME
                                           → 202 Accepted (with a request-id header)
    POST /v1.0/users/{mailbox}/messages    a draft from base64 MIME → 201 {"id"}
    POST …/messages/{id}/attachments       a small fileAttachment (JSON)
    POST …/messages/{id}/attachments/createUploadSession → 201 {"uploadUrl"}
    PUT  /upload/{session}                 chunks in order (Content-Range), no Authorization
    POST …/messages/{id}/send              → 202; DELETE …/messages/{id} → 204

Bearer tokens are checked against the local identity provider that issued them
(:meth:`~faxgw.testing.idp.LocalIdentityProvider.token_record`): unknown or expired → 401
``InvalidAuthenticationToken``; a token without the Graph scope (delegated ``Mail.Send``,
app-only ``.default``) → 403 ``ErrorAccessDenied``; a delegated token of another user → 403
``ErrorSendAsDenied``. Errors have Graph's shape (``{"error": {"code", "message"}}``).

Switches (thread-safe; the server runs in its own threads):

- :meth:`fail` ``(status, code, message, headers=…, times=1)``: the next sending requests get
  that answer (``429`` with or without ``Retry-After``, ``403`` …).
- :meth:`drop` ``(times=1)``: read the whole request, then close the connection unanswered.
- :attr:`mailboxes`: when set, other mailboxes answer 404 ``ErrorInvalidUser``.
- :attr:`delay`: seconds to wait before answering.
- :attr:`read_write`: False: drafts are refused (403 ``ErrorAccessDenied``: no Mail.ReadWrite).
- :attr:`chunks`: every upload chunk (its Content-Range, size, whether it had Authorization).
- :attr:`messages`: every accepted message (:class:`GraphReceived`); :attr:`requests`: every
  request line with its ``Authorization`` header (scheme only), for "no token on the upload
  URL" checks.

TLS uses a trustme CA (``server.ca_file``); ``server.base_url`` is ``https://localhost:PORT``
(configure it as ``[graph] endpoint``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

from faxgw.testing.graph_http import Drop, error, handler_for
from faxgw.testing.https_peer import HttpsPeer
from faxgw.testing.smtp_ledger import parse_message

log = logging.getLogger("faxgw.testing.graph")

#: Graph's request size limit (4 MB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
GRAPH_RESOURCE = "https://graph.microsoft.com"


class TokenRecord(Protocol):
    """What the identity provider knows of a token (an ``IssuedToken``)."""

    account: str | None
    scopes: tuple[str, ...]


@dataclass
class GraphReceived:
    """One message Graph accepted: whose mailbox sent it, the MIME, and the token's grant."""

    mailbox: str
    data: bytes
    account: str | None  # the token's user; None: app-only
    scopes: tuple[str, ...]
    request_id: str

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
    """A draft made from MIME, and the attachments added to it."""

    mailbox: str
    mime: bytes
    account: str | None
    scopes: tuple[str, ...]
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class Upload:
    """An upload session: which draft, what attachment, what has arrived."""

    draft_id: str
    name: str
    content_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


class LocalGraph(HttpsPeer):
    """An HTTPS Graph on 127.0.0.1 that checks tokens with ``token_record``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, token_record: Callable[[str], TokenRecord | None], *,
                 resource: str = GRAPH_RESOURCE, directory: Path | None = None) -> None:
        self._token_record = token_record
        self.resource = resource
        self._lock = threading.RLock()
        self._init_https("graph", directory)
        self.mailboxes: set[str] | None = None
        self.delay = 0.0
        self.messages: list[GraphReceived] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, auth scheme
        self._faults: list[Fault] = []
        #: Whether the app may make drafts (the Mail.ReadWrite permission).
        self.read_write = True
        self.drafts: dict[str, Draft] = {}
        self._uploads: dict[str, Upload] = {}
        #: Requests being answered now, and the most at once (Graph allows 4 per mailbox).
        self.in_flight = 0
        self.max_in_flight = 0
        #: Every upload chunk: (Content-Range, size, Authorization header present).
        self.chunks: list[tuple[str, int, bool]] = []

    # -- life cycle -----------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return handler_for(self)

    # -- switches -------------------------------------------------------------------------

    def fail(self, status: int, code: str = "", message: str = "", *,
             headers: dict[str, str] | None = None, times: int = 1) -> None:
        """The next ``times`` sending requests are answered with this error."""
        with self._lock:
            self._faults.append(Fault(status, code, message, dict(headers or {}), times))

    def drop(self, times: int = 1) -> None:
        """The next ``times`` sending requests are read whole, then the connection is closed
        without an answer (the message may or may not have been sent, for all the client
        knows; here it was not)."""
        with self._lock:
            self._faults.append(Fault(0, times=times, drop=True))

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            return fault

    # -- the API --------------------------------------------------------------------------

    def _authorize(self, header: str, mailbox: str) -> tuple[int, dict[str, Any]] | TokenRecord:
        scheme, _, token = header.partition(" ")
        record = self._token_record(token) if scheme.lower() == "bearer" and token else None
        if record is None:
            return 401, error("InvalidAuthenticationToken",
                               "Access token is empty, expired or not valid.")
        wanted = (f"{self.resource}/.default" if record.account is None
                  else f"{self.resource}/Mail.Send")
        if wanted not in record.scopes:
            return 403, error("ErrorAccessDenied", "Access is denied. Check credentials and "
                                                    "try again.")
        if record.account is not None and record.account.lower() != mailbox.lower():
            return 403, error("ErrorSendAsDenied", "The user account which was used to "
                               "submit this request does not have the right to send mail on "
                               "behalf of the specified sending account.")
        return record

    def api(self, method: str, parts: list[str], authorization: str, content_type: str,
            body: bytes) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """One request under ``/v1.0/users/{mailbox}/``: status, JSON body (None: empty),
        headers. Raises :class:`~faxgw.testing.graph_http.Drop` to close the connection
        unanswered."""
        request_id = str(uuid.uuid4())
        headers = {"request-id": request_id, "client-request-id": request_id}
        mailbox, rest = parts[0], parts[1:]
        fault = self._take_fault() if method == "POST" else None
        if fault is not None and fault.drop:
            raise Drop
        if len(body) > MAX_REQUEST_BYTES:
            return 413, error("RequestEntityTooLarge", "The request is too large."), headers
        checked = self._authorize(authorization, mailbox)
        if isinstance(checked, tuple):
            return checked[0], checked[1], headers
        if self.mailboxes is not None and mailbox.lower() not in self.mailboxes:
            return 404, error("ErrorInvalidUser", f"The requested user '{mailbox}' is "
                                                   "invalid."), headers
        if fault is not None:
            return fault.status, error(fault.code, fault.message) if fault.code else None, \
                {**headers, **fault.headers}
        if rest == ["sendMail"] and method == "POST":
            return (*self._send_mail(mailbox, checked, content_type, body, request_id),
                    headers)
        if not self.read_write:
            return 403, error("ErrorAccessDenied", "Access is denied. Check credentials and "
                                                    "try again."), headers
        return (*self._drafts(method, mailbox, rest, checked, content_type, body, request_id),
                headers)

    def _decode_mime(self, content_type: str, body: bytes) -> bytes | tuple[int, dict[str, Any]]:
        if not content_type.lower().startswith("text/plain"):
            return 400, error("ErrorInvalidRequest", "This test server takes MIME only.")
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return 400, error("ErrorMimeContentInvalidBase64String",
                               "Invalid base64 string for MIME content.")

    def _send_mail(self, mailbox: str, token: TokenRecord, content_type: str, body: bytes,
                   request_id: str) -> tuple[int, dict[str, Any] | None]:
        mime = self._decode_mime(content_type, body)
        if isinstance(mime, tuple):
            return mime
        with self._lock:
            self.messages.append(GraphReceived(mailbox, mime, token.account,
                                               tuple(token.scopes), request_id))
        return 202, None

    def _drafts(self, method: str, mailbox: str, rest: list[str], token: TokenRecord,
                content_type: str, body: bytes, request_id: str
                ) -> tuple[int, dict[str, Any] | None]:
        if rest == ["messages"] and method == "POST":
            mime = self._decode_mime(content_type, body)
            if isinstance(mime, tuple):
                return mime
            draft_id = "AAMk" + uuid.uuid4().hex
            with self._lock:
                self.drafts[draft_id] = Draft(mailbox, mime, token.account, tuple(token.scopes))
            return 201, {"id": draft_id, "isDraft": True}
        draft = self.drafts.get(rest[1]) if len(rest) >= 2 and rest[0] == "messages" else None
        if draft is None or draft.mailbox.lower() != mailbox.lower():
            return 404, error("ErrorItemNotFound", "The specified object was not found in "
                                                    "the store.")
        action = rest[2:]
        if method == "DELETE" and not action:
            with self._lock:
                self.drafts.pop(rest[1], None)
            return 204, None
        if method != "POST":
            return 405, error("ErrorInvalidRequest", "Method not allowed.")
        if action == ["attachments"]:
            item = json.loads(body)
            draft.attachments.append((item["name"], item["contentType"],
                                      base64.b64decode(item["contentBytes"])))
            return 201, {"id": uuid.uuid4().hex}
        if action == ["attachments", "createUploadSession"]:
            item = json.loads(body)["AttachmentItem"]
            token_id = uuid.uuid4().hex
            with self._lock:
                self._uploads[token_id] = Upload(rest[1], item["name"], item["contentType"],
                                                 int(item["size"]))
            return 201, {"uploadUrl": f"{self.base_url}/upload/{token_id}",
                         "expirationDateTime": "2099-01-01T00:00:00Z",
                         "nextExpectedRanges": ["0-"]}
        if action == ["send"]:
            with self._lock:
                self.drafts.pop(rest[1], None)
                self.messages.append(GraphReceived(mailbox, _assemble(draft), token.account,
                                                   draft.scopes, request_id))
            return 202, None
        return 400, error("ErrorInvalidRequest", "Unknown request.")

    def upload(self, token_id: str, content_range: str, authorized: bool,
               body: bytes) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """``PUT /upload/{token}``: a chunk, in order, never with an Authorization header."""
        with self._lock:
            self.chunks.append((content_range, len(body), authorized))
            upload = self._uploads.get(token_id)
            if upload is None:
                return 404, error("ErrorItemNotFound", "No such upload session."), {}
            if authorized:
                return 401, error("InvalidAuthenticationToken", "The upload URL takes no "
                                   "Authorization header."), {}
            if len(body) > MAX_REQUEST_BYTES:
                return 413, error("RequestEntityTooLarge", "The chunk is too large."), {}
            unit, _, spec = content_range.partition(" ")
            span, _, total = spec.partition("/")
            first, _, last = span.partition("-")
            if (unit != "bytes" or int(first) != len(upload.data) or int(total) != upload.size
                    or int(last) - int(first) + 1 != len(body)):
                return 416, error("InvalidRange", f"Expected the range from "
                                                   f"{len(upload.data)}."), {}
            upload.data += body
            if len(upload.data) < upload.size:
                return 200, {"expirationDateTime": "2099-01-01T00:00:00Z",
                             "nextExpectedRanges": [f"{len(upload.data)}-"]}, {}
            del self._uploads[token_id]
            self.drafts[upload.draft_id].attachments.append(
                (upload.name, upload.content_type, bytes(upload.data)))
            return 201, None, {}


def _assemble(draft: Draft) -> bytes:
    """The message as sent: the draft's MIME with its attachments added."""
    message = parse_message(draft.mime)
    for name, content_type, data in draft.attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()
