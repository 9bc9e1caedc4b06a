"""A local Microsoft Graph over real HTTPS, for tests, demos and the benchmark: ``sendMail``.

It answers the way ``graph.microsoft.com`` does for what the Graph transport uses::

    POST /v1.0/users/{mailbox}/sendMail    Content-Type: text/plain, base64 of the MIME, or
                                           application/json {"message", "saveToSentItems"}
                                           → 202 Accepted (with a request-id header)
    GET  /v1.0/users/{mailbox}/mailboxSettings  → 200, or 403 without the permission
    POST /v1.0/users/{mailbox}/messages    a draft from base64 MIME or JSON → 201 {"id"}
    POST …/messages/{id}/attachments       a small fileAttachment (JSON)
    POST …/messages/{id}/attachments/createUploadSession → 201 {"uploadUrl"}
    PUT  /upload/{session}                 chunks in order (Content-Range), no Authorization
    POST …/messages/{id}/send              → 202; DELETE …/messages/{id} → 204
    mailFolders, …/messages/delta, …/$value, …/move: reading the mailbox, in
                                           :mod:`faxgw.testing.graph_mail` (:attr:`mail`)

Bearer tokens are checked against the local identity provider that issued them
(:meth:`~faxgw.testing.idp.LocalIdentityProvider.token_record`): unknown or expired → 401
``InvalidAuthenticationToken``; a token without the Graph scope (delegated ``Mail.Send``,
app-only ``.default``; for reading mail delegated ``Mail.ReadWrite``, app-only
:attr:`read_write`) → 403 ``ErrorAccessDenied``; a delegated token of another user → 403
``ErrorSendAsDenied`` (reading: ``ErrorAccessDenied``). :meth:`deliver` puts mail in a
mailbox's Inbox. Errors have Graph's shape (``{"error": {"code", "message"}}``).

Switches (thread-safe; the server runs in its own threads):

- :meth:`fail` ``(status, code, message, headers=…, times=1)``: the next sending requests get
  that answer (``429`` with or without ``Retry-After``, ``403`` …).
- :meth:`drop` ``(times=1)``: read the whole request, then close the connection unanswered.
- :attr:`mailboxes`: when set, other mailboxes answer 404 ``ErrorInvalidUser``.
- :attr:`delay` (or ``reply_delay_ms``): the slow mode, every reply is this late.
- :meth:`refuse` ``(mailbox, status, code, message)``: every request for that mailbox gets
  this answer (an application access policy, Send As taken away, a mailbox not on Graph).
- :attr:`settings_readable`: False: the app lacks ``MailboxSettings.Read`` / ``Mail.Read``,
  and ``mailboxSettings`` answers 403 ``ErrorAccessDenied``.
- :meth:`expire_uploads` ``(times, after_chunks, status)``: the next upload sessions expire
  after so many chunks (their URL then answers 404 or 410, as Graph's do).
- :attr:`read_write`: False: drafts are refused (403 ``ErrorAccessDenied``: no Mail.ReadWrite).
- :attr:`chunks`: every upload chunk (its Content-Range, size, whether it had Authorization).
- :attr:`messages`: every accepted message (:class:`GraphReceived`: the email, as MIME or
  built from the JSON, and whether a copy was saved to Sent Items; :attr:`sent_items` lists
  those); :attr:`requests`: every request line with its ``Authorization`` header (scheme
  only), for "no token on the upload URL" checks; :attr:`upload_sessions`: how many were made.

JSON is checked as Graph checks it and built into the email Exchange would deliver by
:mod:`faxgw.testing.graph_records`, which also holds the records.

TLS uses a trustme CA (``server.ca_file``); ``server.base_url`` is ``https://localhost:PORT``
(configure it as ``[graph] endpoint``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

from faxgw.testing.graph_http import Drop, error, handler_for
from faxgw.testing.graph_mail import MailStore, is_mail_request
from faxgw.testing.graph_records import (
    BadRequest,
    Draft,
    Fault,
    GraphReceived,
    Upload,
    assemble,
    email_from_json,
    read_message,
)
from faxgw.testing.https_peer import HttpsPeer

__all__ = ["GRAPH_RESOURCE", "MAX_REQUEST_BYTES", "Draft", "GraphReceived", "LocalGraph",
           "TokenRecord", "Upload"]

log = logging.getLogger("faxgw.testing.graph")

#: Graph's request size limit (4 MB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
GRAPH_RESOURCE = "https://graph.microsoft.com"
#: How long Graph keeps an unused upload session (what ``expirationDateTime`` says).
UPLOAD_LIFETIME_SECONDS = 15 * 60
_ACCESS_DENIED = "Access is denied. Check credentials and try again."
Answer = tuple[int, dict[str, Any] | None]


class TokenRecord(Protocol):
    """What the identity provider knows of a token (an ``IssuedToken``)."""

    account: str | None
    scopes: tuple[str, ...]


def _expiry() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + UPLOAD_LIFETIME_SECONDS))


class LocalGraph(HttpsPeer):
    """An HTTPS Graph on 127.0.0.1 that checks tokens with ``token_record``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``reply_delay_ms``
    starts it in the slow mode (:attr:`delay`).
    """

    def __init__(self, token_record: Callable[[str], TokenRecord | None], *,
                 resource: str = GRAPH_RESOURCE, directory: Path | None = None,
                 reply_delay_ms: float = 0) -> None:
        self._token_record = token_record
        self.resource = resource
        self._lock = threading.RLock()
        self._init_https("graph", directory)
        self.mailboxes: set[str] | None = None
        #: Seconds every reply waits (the slow mode, for the benchmark).
        self.delay = reply_delay_ms / 1000
        self.messages: list[GraphReceived] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, auth scheme
        self._faults: list[Fault] = []
        #: Whether the app may make drafts (the Mail.ReadWrite permission).
        self.read_write = True
        #: Whether the app may read mailbox settings (MailboxSettings.Read or Mail.Read).
        self.settings_readable = True
        self._refusals: dict[str, tuple[int, str, str]] = {}
        self._expiring: list[Upload] = []  # templates: how the next upload sessions expire
        self.drafts: dict[str, Draft] = {}
        self._uploads: dict[str, Upload] = {}
        #: Requests being answered now, and the most at once (Graph allows 4 per mailbox).
        self.in_flight = 0
        self.max_in_flight = 0
        #: Every upload chunk: (Content-Range, size, Authorization header present).
        self.chunks: list[tuple[str, int, bool]] = []
        #: Upload sessions made (createUploadSession answered).
        self.upload_sessions = 0
        #: The mailboxes' folders and messages (delivered by tests, read by the inbox reader).
        self.mail = MailStore(lambda: self.base_url)

    # -- life cycle -----------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return handler_for(self)

    @property
    def sent_items(self) -> list[GraphReceived]:
        """The accepted messages a copy of which was saved to the mailbox's Sent Items."""
        with self._lock:
            return [message for message in self.messages if message.saved_to_sent_items]

    # -- switches -------------------------------------------------------------------------

    def deliver(self, mailbox: str, raw: bytes) -> str:
        """Deliver ``raw`` (MIME) into ``mailbox``'s Inbox; the message's Graph id."""
        return self.mail.deliver(mailbox, raw)

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

    def refuse(self, mailbox: str, status: int, code: str, message: str) -> None:
        """Every request for ``mailbox`` is answered with this error from now on (after the
        token's checks), as Graph answers for a mailbox an application access policy leaves
        out (403 "Access to OData is disabled"), or one that is not on Exchange Online."""
        with self._lock:
            self._refusals[mailbox.lower()] = (status, code, message)

    def expire_uploads(self, times: int = 1, *, after_chunks: int = 1,
                       status: int = 404) -> None:
        """The next ``times`` upload sessions expire once ``after_chunks`` chunks have
        arrived: their URL then answers ``status`` (404 ``ErrorItemNotFound`` or 410)."""
        with self._lock:
            self._expiring += [Upload("", "", "", 0, expires_after_chunks=after_chunks,
                                      expired_status=status) for _ in range(times)]

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

    def _authorize(self, header: str, mailbox: str,
                   reading: bool = False) -> tuple[int, dict[str, Any]] | TokenRecord:
        scheme, _, token = header.partition(" ")
        record = self._token_record(token) if scheme.lower() == "bearer" and token else None
        if record is None:
            return 401, error("InvalidAuthenticationToken",
                               "Access token is empty, expired or not valid.")
        permission = "Mail.ReadWrite" if reading else "Mail.Send"
        wanted = (f"{self.resource}/.default" if record.account is None
                  else f"{self.resource}/{permission}")
        if wanted not in record.scopes or (reading and record.account is None
                                           and not self.read_write):
            return 403, error("ErrorAccessDenied", _ACCESS_DENIED)
        if reading and record.account is not None and record.account.lower() != mailbox.lower():
            return 403, error("ErrorAccessDenied", _ACCESS_DENIED)
        if record.account is not None and record.account.lower() != mailbox.lower():
            return 403, error("ErrorSendAsDenied", "The user account which was used to "
                               "submit this request does not have the right to send mail on "
                               "behalf of the specified sending account.")
        return record

    def api(self, method: str, parts: list[str], authorization: str, content_type: str,
            body: bytes, *, query: str = "",
            ) -> tuple[int, dict[str, Any] | bytes | None, dict[str, str]]:
        """One request under ``/v1.0/users/{mailbox}/``: status, JSON body (None: empty),
        headers. Raises :class:`~faxgw.testing.graph_http.Drop` to close the connection
        unanswered."""
        request_id = str(uuid.uuid4())
        headers = {"request-id": request_id, "client-request-id": request_id}
        mailbox, rest = parts[0], parts[1:]
        reading = is_mail_request(method, rest)
        fault = self._take_fault() if method == "POST" and not reading else None
        if fault is not None and fault.drop:
            raise Drop
        if len(body) > MAX_REQUEST_BYTES:
            return 413, error("RequestEntityTooLarge", "The request is too large."), headers
        checked = self._authorize(authorization, mailbox, reading)
        if isinstance(checked, tuple):
            return checked[0], checked[1], headers
        refusal = self._refusals.get(mailbox.lower())
        if refusal is not None:
            return refusal[0], error(refusal[1], refusal[2]), headers
        if self.mailboxes is not None and mailbox.lower() not in self.mailboxes:
            return 404, error("ErrorInvalidUser", f"The requested user '{mailbox}' is "
                                                   "invalid."), headers
        if fault is not None:
            return fault.status, error(fault.code, fault.message) if fault.code else None, \
                {**headers, **fault.headers}
        if reading:
            status, data, extra = self.mail.answer(method, mailbox, rest, query, body)
            return status, data, {**headers, **extra}
        try:
            return (*self._route(method, mailbox, rest, checked, content_type, body,
                                 request_id), headers)
        except BadRequest as exc:
            return 400, exc.body, headers

    def _route(self, method: str, mailbox: str, rest: list[str], token: TokenRecord,
               content_type: str, body: bytes, request_id: str) -> Answer:
        if rest == ["mailboxSettings"] and method == "GET":
            if not self.settings_readable:
                return 403, error("ErrorAccessDenied", _ACCESS_DENIED)
            return 200, {"timeZone": "W. Europe Standard Time", "language": {"locale": "de-DE"},
                         "userPurpose": "user"}
        if rest == ["sendMail"] and method == "POST":
            return self._send_mail(mailbox, token, content_type, body, request_id)
        if not self.read_write:
            return 403, error("ErrorAccessDenied", _ACCESS_DENIED)
        return self._drafts(method, mailbox, rest, token, content_type, body, request_id)

    def _read(self, content_type: str, body: bytes, *,
              draft: bool = False) -> tuple[bytes | dict[str, Any], str, bool]:
        """The email a request carries (MIME, or the checked JSON ``message``), its form, and
        whether a copy is to be saved to Sent Items (Graph's default: yes)."""
        kind = content_type.split(";")[0].strip().lower()
        if kind == "text/plain":
            try:
                return base64.b64decode(body, validate=True), "mime", True
            except (binascii.Error, ValueError):
                raise BadRequest("ErrorMimeContentInvalidBase64String",
                                 "Invalid base64 string for MIME content.") from None
        if kind != "application/json":
            raise BadRequest("RequestBodyRead", f"Unsupported Content-Type {content_type!r}.")
        try:
            data = json.loads(body)
        except ValueError:
            raise BadRequest("RequestBodyRead", "The body is not JSON.") from None
        if draft:
            return read_message(data, draft=True), "json", True
        if not isinstance(data, dict) or set(data) - {"message", "saveToSentItems"}:
            raise BadRequest("RequestBodyRead", "sendMail takes message and saveToSentItems.")
        save = data.get("saveToSentItems", True)
        if not isinstance(save, bool):
            raise BadRequest("RequestBodyRead", "saveToSentItems must be true or false.")
        return read_message(data.get("message")), "json", save

    def _send_mail(self, mailbox: str, token: TokenRecord, content_type: str, body: bytes,
                   request_id: str) -> Answer:
        raw, form, save = self._read(content_type, body)
        with self._lock:
            self.messages.append(GraphReceived(mailbox, raw, token.account,
                                               tuple(token.scopes), request_id, form, save))
        return 202, None

    def _drafts(self, method: str, mailbox: str, rest: list[str], token: TokenRecord,
                content_type: str, body: bytes, request_id: str) -> Answer:
        if rest == ["messages"] and method == "POST":
            raw, form, _ = self._read(content_type, body, draft=True)
            mime = raw if isinstance(raw, bytes) else email_from_json(raw, mailbox).as_bytes()
            draft_id = "AAMk" + uuid.uuid4().hex
            with self._lock:
                self.drafts[draft_id] = Draft(mailbox, mime, token.account, tuple(token.scopes),
                                              form)
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
            return self._upload_session(rest[1], json.loads(body)["AttachmentItem"])
        if action == ["send"]:
            # A draft's send always keeps a copy in Sent Items: saveToSentItems is a
            # parameter of sendMail only.
            with self._lock:
                self.drafts.pop(rest[1], None)
                self.messages.append(GraphReceived(mailbox, assemble(draft), token.account,
                                                   draft.scopes, request_id, f"draft+{draft.form}",
                                                   True))
            return 202, None
        return 400, error("ErrorInvalidRequest", "Unknown request.")

    def _upload_session(self, draft_id: str, item: dict[str, Any]) -> Answer:
        token_id = uuid.uuid4().hex
        with self._lock:
            upload = Upload(draft_id, item["name"], item["contentType"], int(item["size"]))
            if self._expiring:
                template = self._expiring.pop(0)
                upload.expires_after_chunks = template.expires_after_chunks
                upload.expired_status = template.expired_status
            self._uploads[token_id] = upload
            self.upload_sessions += 1
        return 201, {"uploadUrl": f"{self.base_url}/upload/{token_id}",
                     "expirationDateTime": _expiry(), "nextExpectedRanges": ["0-"]}

    def upload(self, token_id: str, content_range: str, authorized: bool,
               body: bytes) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """``PUT /upload/{token}``: a chunk, in order, never with an Authorization header."""
        with self._lock:
            self.chunks.append((content_range, len(body), authorized))
            upload = self._uploads.get(token_id)
            if upload is None:
                return 404, error("ErrorItemNotFound", "No such upload session."), {}
            if (upload.expires_after_chunks is not None
                    and upload.chunks >= upload.expires_after_chunks):
                # Expired: Graph has forgotten the session and what it received.
                del self._uploads[token_id]
                return upload.expired_status, error("ErrorItemNotFound", "The upload session "
                                                    "has expired."), {}
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
            upload.chunks += 1
            if len(upload.data) < upload.size:
                return 200, {"expirationDateTime": _expiry(),
                             "nextExpectedRanges": [f"{len(upload.data)}-"]}, {}
            del self._uploads[token_id]
            self.drafts[upload.draft_id].attachments.append(
                (upload.name, upload.content_type, bytes(upload.data)))
            return 201, None, {}
