"""Sending through Microsoft Graph with httpx: one session per sending mailbox.

:class:`GraphSession` is the Graph adapter's :class:`~faxgw.ports.Session`. This module is the
one boundary where httpx's and ssl's exceptions and Graph's answers become faxgw's, classified
once by the answer table (:mod:`faxgw.transport.graph.answers`). The message is the same email
the SMTP path sends: its MIME posted as base64 to ``/v1.0/users/{mailbox}/sendMail``
(``Content-Type: text/plain``) when a copy may stay in Sent Items, else the same fields as
JSON with ``"saveToSentItems": false``; TLS is verified (system CAs plus ``[graph] ca_file``,
TLS 1.2 at least), and the bearer token is a Graph token (``Resource.GRAPH``), never the SMTP one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Sequence
from urllib.parse import quote

import httpx

from ...config import GraphConfig
from ...domain import codes
from ...domain.disposition import Disposition
from ...domain.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    DeliveryError,
    PermanentError,
    TransientError,
)
from ...ports import Accepted, CredentialProvider, Resource
from .answers import Answer, classify_answer, parse_answer
from .check import VERDICTS, MailboxCheck, Verdict
from .message import GraphMessage, file_attachment, from_mime
from .tls import tls_context
from .upload import (
    READ_WRITE_HINT,
    SMALL_ATTACHMENT,
    UPLOAD_SESSIONS,
    Attachment,
    chunks,
    split_attachments,
)

log = logging.getLogger("faxgw.transport")

#: Graph takes about 4 MB per request; the base64 of the MIME (or the JSON message) stays
#: under this, larger faxes take the upload path.
MAX_SENDMAIL_BASE64 = 3_500_000
#: What an expired upload session's URL answers (Graph: 404; some front ends: 410 Gone).
EXPIRED_UPLOAD = frozenset({404, 410})
#: Added to the accepted reply when the upload path kept a copy that was not wanted.
SENT_ITEMS_NOTE = " (a draft sent by the upload path: Graph keeps a copy in Sent Items)"
#: Seconds to connect and to wait for an answer; uploads add time for their size.
TIMEOUT_SECONDS = 60.0
_MIN_UPLOAD_BYTES_PER_SECOND = 50_000
#: Stages whose request, once sent, may have sent the fax (a lost answer is ambiguous).
_SENDING_STAGES = frozenset({"sendMail", "send"})


def translate_network(exc: Exception, *, stage: str, where: str) -> DeliveryError:
    """An httpx/ssl failure → faxgw's: no connection (360), or possibly delivered when the
    request of a sending stage went out and its answer was lost."""
    if isinstance(exc, DeliveryError):
        return exc
    reason = _short(exc)
    if stage in _SENDING_STAGES and isinstance(
        exc, httpx.ReadError | httpx.ReadTimeout | httpx.RemoteProtocolError
    ):
        return TransientError(
            f"{stage}: connection lost before Graph answered ({reason}); it may have been "
            "delivered", code=codes.NO_CONNECTION, ambiguous=True)
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return ConnectError(f"{stage}: the certificate of {where} could not be verified "
                            f"({reason}); check [graph] endpoint and ca_file",
                            code=codes.NO_CONNECTION)
    if isinstance(exc, httpx.TimeoutException):
        return ConnectError(f"{stage}: {where} did not answer in time ({reason})",
                            code=codes.NO_CONNECTION)
    return ConnectError(f"{stage}: no connection to {where} ({reason})",
                        code=codes.NO_CONNECTION)


def translate_answer(answer: Answer, *, stage: str, hint: str = "") -> DeliveryError:
    """A Graph answer other than success → faxgw's, by the one table."""
    rule = classify_answer(answer)
    # The hint is about permissions: it goes with a refusal (403) only.
    why = f"{rule.why}; {hint}" if hint and answer.status == 403 else rule.why
    text = f"{stage}: Graph answered {answer.reply} ({why})"
    if rule.bug:
        log.error("!! %s — please report this", text)
    retry_after = answer.retry_after or rule.retry_after
    kind: type[DeliveryError] = TransientError
    if rule.disposition is Disposition.AUTH:
        kind = AuthError
    elif rule.disposition is Disposition.PERMANENT:
        kind = PermanentError
    return kind(text, code=rule.code, reply=answer.reply, disposition=rule.disposition,
                retry_after=retry_after)


def _json_mail(message: bytes) -> tuple[GraphMessage, bytes]:
    """The email as Graph's fields, and the JSON ``sendMail`` that keeps no copy."""
    mail = from_mime(message)
    return mail, mail.send_mail_body(save_to_sent_items=False)


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class GraphSession:
    """Sends one mailbox's faxes through Graph: a token for Graph and an HTTPS client."""

    def __init__(self, settings: GraphConfig, credentials: CredentialProvider,
                 account: str) -> None:
        self.settings = settings
        self.account = account
        self._provider = credentials
        self._client: httpx.AsyncClient | None = None
        self._token = ""
        self.messages_sent = 0

    @property
    def usable(self) -> bool:
        """Whether the session can take another message."""
        return self._client is not None and not self._client.is_closed

    async def __aenter__(self) -> GraphSession:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def mailbox_url(self) -> str:
        """``{root}/v1.0/users/{mailbox}``."""
        return f"{self.settings.root}/v1.0/users/{quote(self.account, safe='@')}"

    async def open(self) -> None:
        """Get a Graph token for the mailbox and the HTTPS client (connects on first use)."""
        credentials = await self._provider.credentials(self.account, resource=Resource.GRAPH)
        if credentials.kind != "bearer":
            raise ConfigError('[transport] kind = "graph" needs [auth] method = "oauth2" '
                              "(Graph takes OAuth2 tokens only)")
        self._token = credentials.secret
        self._client = httpx.AsyncClient(verify=tls_context(self.settings),
                                         timeout=TIMEOUT_SECONDS, follow_redirects=False)

    async def send(self, message: bytes, *, sender: str, recipients: Sequence[str],
                   envelope_id: str = "") -> Accepted:
        """Send the MIME message from the session's mailbox (recipients are its To header;
        Graph takes no envelope id: its bounces carry the original's headers).

        ``[graph] save_to_sent_items = true``: the MIME as it is (Graph keeps a copy in Sent
        Items). ``false``: the same email as JSON with ``"saveToSentItems": false``, the one
        form of ``sendMail`` that keeps no copy (:mod:`faxgw.transport.graph.message`).
        """
        mail: GraphMessage | None = None
        if self.settings.save_to_sent_items:
            body, content_type = base64.b64encode(message), "text/plain"
        else:
            # Reading the email back takes milliseconds: off the event loop, where the other
            # sessions wait for their answers.
            mail, body = await asyncio.to_thread(_json_mail, message)
            content_type = "application/json"
        if len(body) > MAX_SENDMAIL_BASE64:
            return await self._send_large(message, mail)
        try:
            response = await self._call("POST", f"{self.mailbox_url}/sendMail",
                                        stage="sendMail", content=body,
                                        content_type=content_type)
        except PermanentError as exc:
            if exc.code != codes.TOO_LARGE:
                raise
            # Graph found the request too large after all: the upload path, once.
            log.info("↻ %s: sendMail too large (%s), using the upload path", self.account,
                     exc.reply)
            return await self._send_large(message, mail)
        self.messages_sent += 1
        return Accepted(f"{response.status_code} Accepted by Graph",
                        response.headers.get("request-id"))

    async def _send_large(self, message: bytes, mail: GraphMessage | None) -> Accepted:
        """Draft without attachments → attachments (upload sessions) → send.

        The draft is made from the MIME (``mail`` None) or from the same JSON fields. Graph's
        ``send`` of a draft always keeps it in Sent Items: ``saveToSentItems`` exists for
        ``sendMail`` only, so the accepted reply says so when a copy was not wanted.
        """
        if mail is None:
            draft_mime, attachments = split_attachments(message)
            content, content_type = base64.b64encode(draft_mime), "text/plain"
        else:
            attachments = list(mail.attachments)
            content, content_type = mail.draft_body(), "application/json"
        response = await self._call("POST", f"{self.mailbox_url}/messages", stage="draft",
                                    content=content, content_type=content_type,
                                    hint=READ_WRITE_HINT)
        draft_id = str(_json(response).get("id") or "")
        if not draft_id:
            raise TransientError("draft: Graph gave no id for the draft", code=codes.TRY_LATER)
        draft = f"{self.mailbox_url}/messages/{quote(draft_id, safe='')}"
        try:
            for attachment in attachments:
                await self._attach(draft, attachment)
            response = await self._call("POST", f"{draft}/send", stage="send",
                                        hint=READ_WRITE_HINT)
        except DeliveryError as exc:
            if not exc.ambiguous:  # a send that may have happened leaves its draft alone
                await self._discard(draft)
            raise
        self.messages_sent += 1
        kept = "" if mail is None else SENT_ITEMS_NOTE
        return Accepted(f"{response.status_code} Accepted by Graph{kept}",
                        response.headers.get("request-id"))

    async def _attach(self, draft: str, attachment: Attachment) -> None:
        if len(attachment.data) <= SMALL_ATTACHMENT:
            body = file_attachment(attachment)
            await self._call("POST", f"{draft}/attachments", stage="attach",
                             content=json.dumps(body).encode(), hint=READ_WRITE_HINT)
            return
        item = {"AttachmentItem": {"attachmentType": "file", "name": attachment.name,
                                   "size": len(attachment.data),
                                   "contentType": attachment.content_type}}
        for _ in range(UPLOAD_SESSIONS):
            response = await self._call("POST", f"{draft}/attachments/createUploadSession",
                                        stage="createUploadSession",
                                        content=json.dumps(item).encode(),
                                        hint=READ_WRITE_HINT)
            upload_url = str(_json(response).get("uploadUrl") or "")
            if not upload_url.startswith("https://"):
                raise TransientError("createUploadSession: Graph gave no https upload URL",
                                     code=codes.TRY_LATER)
            if await self._upload(upload_url, attachment.data):
                return
            # Graph forgets an upload session after a while without use: a new one starts
            # the attachment again from its first byte.
            log.info("↻ %s: the upload session expired, starting the attachment again",
                     self.account)
        raise TransientError(f"upload: the upload session expired {UPLOAD_SESSIONS} times "
                             "before the attachment was complete (a slow or interrupted "
                             "connection to Graph); the fax is sent again later",
                             code=codes.TRY_LATER)

    async def _upload(self, url: str, data: bytes) -> bool:
        """PUT the bytes in order; False when the upload session has expired (404 or 410
        from its URL). The upload URL carries its own authorization: the bearer token is
        never sent to it."""
        client = self._client
        assert client is not None
        total = len(data)
        for first, last in chunks(total):
            chunk = data[first:last + 1]
            headers = {"Content-Range": f"bytes {first}-{last}/{total}",
                       "Content-Type": "application/octet-stream"}
            try:
                response = await client.put(
                    url, content=chunk, headers=headers,
                    timeout=TIMEOUT_SECONDS + len(chunk) / _MIN_UPLOAD_BYTES_PER_SECOND)
            except httpx.HTTPError as exc:
                raise translate_network(exc, stage="upload",
                                        where=self.settings.root) from None
            if response.status_code in EXPIRED_UPLOAD:
                return False
            if not 200 <= response.status_code < 300:
                answer = parse_answer(response.status_code, response.content,
                                      dict(response.headers))
                raise translate_answer(answer, stage="upload") from None
        return True

    async def _discard(self, draft: str) -> None:
        """Delete a draft that was not sent (best effort: a stray draft harms nobody)."""
        client = self._client
        if client is None or client.is_closed:
            return
        try:
            await client.delete(draft, headers={"Authorization": f"Bearer {self._token}"})
        except httpx.HTTPError:
            log.info("%s: could not delete the unsent draft", self.account)

    async def check_mailbox(self) -> MailboxCheck:
        """Whether the mailbox may send, by a harmless read of its settings
        (:mod:`faxgw.transport.graph.check`); nothing is sent or changed. Raises what the
        answer table says for answers that are no verdict (throttling, faults, no token)."""
        response = await self._request("GET", f"{self.mailbox_url}/mailboxSettings",
                                       stage="check")
        answer = parse_answer(response.status_code, response.content, dict(response.headers))
        rule = classify_answer(answer)
        verdict = VERDICTS.get(rule.code)
        if rule.code == codes.REJECTED and answer.status != 404:
            verdict = None  # a request Graph did not understand says nothing of the mailbox
        if verdict is None:
            raise translate_answer(answer, stage="check")
        if verdict is Verdict.MAY_SEND:
            why = ("the token is for Graph and the mailbox answered: no access policy or "
                   "scope keeps the app out")
            return MailboxCheck(self.account, verdict, rule.code, f"{answer.status} OK", why)
        return MailboxCheck(self.account, verdict, rule.code, answer.reply, rule.why)

    async def _call(self, method: str, url: str, *, stage: str, content: bytes = b"",
                    content_type: str = "application/json", hint: str = "") -> httpx.Response:
        """One request with the bearer token (:meth:`_request`). Returns a success; raises
        anything else classified."""
        response = await self._request(method, url, stage=stage, content=content,
                                       content_type=content_type)
        if 200 <= response.status_code < 300:
            return response
        answer = parse_answer(response.status_code, response.content, dict(response.headers))
        raise translate_answer(answer, stage=stage, hint=hint) from None

    async def _request(self, method: str, url: str, *, stage: str, content: bytes = b"",
                       content_type: str = "application/json") -> httpx.Response:
        """One request with the bearer token; a 401 takes a fresh token once. Returns the
        answer, whatever it is; raises a lost connection classified."""
        client = self._client
        if client is None or client.is_closed:
            raise ConnectError("the session to Graph is closed", code=codes.NO_CONNECTION)
        timeout = TIMEOUT_SECONDS + len(content) / _MIN_UPLOAD_BYTES_PER_SECOND
        for refreshed in (False, True):
            headers = {"Authorization": f"Bearer {self._token}", "Content-Type": content_type}
            try:
                response = await client.request(method, url, content=content, headers=headers,
                                                timeout=timeout)
            except httpx.HTTPError as exc:
                raise translate_network(exc, stage=stage,
                                        where=self.settings.root) from None
            if response.status_code == 401 and not refreshed:
                # An expired or revoked token: take a fresh one once; a second 401 is real.
                log.info("↻ %s: Graph refused the token (401), refreshing once", self.account)
                fresh = await self._provider.credentials(self.account, resource=Resource.GRAPH,
                                                         force_refresh=True)
                self._token = fresh.secret
                continue
            break
        return response

    async def close(self) -> None:
        """Close the HTTPS connections; never raises."""
        client, self._client = self._client, None
        self._token = ""
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - the session is over either way
                pass
