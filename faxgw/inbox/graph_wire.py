"""The HTTPS side of :mod:`faxgw.inbox.graph`: httpx made into requests that either succeed or
raise faxgw's errors, classified once by :data:`ANSWERS`.

Each request carries a Graph token for reading mail (:attr:`Resource.GRAPH_MAIL`:
``Mail.ReadWrite``) in its ``Authorization`` header; a 401 takes a new token once, a second 401
needs a person. A connection that broke under a request (a kept connection the server closed
while the reader slept between polls) is opened again once: every request the reader makes may
be repeated (reading changes nothing, a moved message is not found a second time). TLS trusts the
system's CAs plus ``[graph] ca_file``, TLS 1.2 at least, like the Graph transport; it is built
here because the inbox does not reach into the transports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from ..config import GraphConfig
from ..domain import codes
from ..domain.errors import AuthError, ConfigError, ConnectError, FaxgwError, TransientError
from ..domain.retry import retry_after_seconds
from ..ports import CredentialProvider, Resource
from ..tlsutil import shared_context

log = logging.getLogger(__name__)

#: The wait when a 429 or 503 names none: Graph's usual throttling window.
DEFAULT_RETRY_AFTER = 30.0
#: What a delta link that Graph no longer knows answers: start a new sync.
SYNC_GONE_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})
_READ_WRITE = ("grant the app Mail.ReadWrite (delegated: consent, 'faxgw auth login' with "
               "[inbox] method = \"graph\"; application: the Mail.ReadWrite application "
               "permission with admin consent)")


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of :data:`ANSWERS`: which answer (HTTP status, Graph's ``error.code``, a piece of
    its message) becomes which error and code, and why, in words for the log."""

    kind: Literal["auth", "transient", "config"]
    code: int
    why: str
    status: int | None = None
    error: str | None = None
    text: str | None = None
    status_class: int | None = None


#: Graph's answers to the reader's requests, first match wins (as the transport's table).
ANSWERS: tuple[Rule, ...] = (
    Rule("auth", codes.APP_ACCESS_POLICY, status=403, text="access to odata is disabled",
         why="an application access policy or RBAC for Applications scope keeps the app out "
             "of this mailbox: include the mailbox in the app's management scope"),
    Rule("auth", codes.MAILBOX_NOT_ON_GRAPH, error="mailboxnotenabledforrestapi",
         why="the mailbox cannot be read through Graph (not an Exchange Online mailbox, "
             "inactive or on-premises): use [inbox] method = \"imap\""),
    Rule("auth", codes.CONSENT_MISSING, status=403,
         why=f"the app may not read this mailbox: {_READ_WRITE}"),
    Rule("auth", codes.SIGN_IN_AGAIN, status=401,
         why="Graph refused the token twice (a fresh one too): sign in again ('faxgw auth "
             "login'), or check that the token is for this cloud's Graph"),
    Rule("config", codes.REJECTED, status=404, error="errorinvaliduser",
         why="no such mailbox: check [auth] account and [smtp] sender"),
    Rule("transient", codes.TRY_LATER, status=429, why="Graph is throttling this mailbox"),
    Rule("transient", codes.TRY_LATER, status=503, why="Graph is unavailable for now"),
    Rule("transient", codes.TRY_LATER, status_class=5, why="a fault at Graph"),
    Rule("transient", codes.TRY_LATER, status_class=4,
         why="Graph refused the request; it is tried again at the next poll"),
)


def rule_for(status: int, error: str, message: str) -> Rule:
    """The first row of :data:`ANSWERS` that fits the answer."""
    for rule in ANSWERS:
        if ((rule.status is None or rule.status == status)
                and (rule.status_class is None or rule.status_class == status // 100)
                and (rule.error is None or rule.error == error.lower())
                and (rule.text is None or rule.text in message.lower())):
            return rule
    return Rule("transient", codes.TRY_LATER, why="an unexpected answer")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs plus ``[graph] ca_file``, host names checked, TLS 1.2 at least
    (one context per file, shared)."""
    return shared_context("graph", ca_file)



def error_of(response: httpx.Response) -> tuple[str, str]:
    """Graph's ``error.code`` and ``error.message`` of an answer ("" when it has none)."""
    try:
        data = json.loads(response.content or b"{}")
    except (ValueError, UnicodeDecodeError):
        return "", response.content[:300].decode("utf-8", "replace").strip()
    inner = data.get("error") if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        return "", ""
    return str(inner.get("code") or ""), " ".join(str(inner.get("message") or "").split())[:500]


class GraphMailClient:
    """Requests to ``{root}/v1.0/users/{account}/…`` with a Graph token for reading mail."""

    def __init__(self, graph: GraphConfig, credentials: CredentialProvider, account: str,
                 *, timeout: float) -> None:
        self.root = graph.root
        self.mailbox_url = f"{graph.root}/v1.0/users/{quote(account, safe='@')}"
        self.account = account
        self._ca_file = graph.ca_file
        self._credentials = credentials
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._token = ""

    async def request(self, method: str, url: str, *, stage: str,
                      body: dict[str, Any] | None = None,
                      passes: frozenset[int] = frozenset()) -> httpx.Response:
        """One request; returns a success, or an answer whose status is in ``passes`` (which
        the caller handles); raises anything else classified."""
        response = await self._send(method, url, stage, body)
        if 200 <= response.status_code < 300 or response.status_code in passes:
            return response
        raise self.error(response, stage)

    def error(self, response: httpx.Response, stage: str) -> FaxgwError:
        """An answer other than success, as faxgw's error (never holding the token)."""
        code, message = error_of(response)
        rule = rule_for(response.status_code, code, message)
        reply = self._scrub(f"{response.status_code} {code}".strip()
                            + (f": {message}" if message else ""))
        text = f"[inbox] {stage}: Graph answered {reply} ({rule.why})"
        if rule.kind == "config":
            return ConfigError(text)
        wait = None
        if response.status_code in (429, 503):
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            named = f"Retry-After {wait:g} s" if wait else "no Retry-After"
            text += f"; Graph asks to wait ({named})"
            wait = wait or DEFAULT_RETRY_AFTER
        kind = AuthError if rule.kind == "auth" else TransientError
        return kind(text, code=rule.code, reply=reply, retry_after=wait)

    async def _send(self, method: str, url: str, stage: str,
                    body: dict[str, Any] | None) -> httpx.Response:
        if not url.startswith(f"{self.root}/"):
            # A link from a cursor or an answer must lead to the configured Graph: the token
            # goes with it.
            raise ConfigError(f"[inbox] {stage}: a link outside [graph] endpoint was refused")
        client = await self._open()
        refreshed = reopened = False
        while True:
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                response = await client.request(method, url, json=body, headers=headers)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if reopened:
                    raise self._network(exc, stage) from None
                # A kept connection the server closed meanwhile: once on a new one.
                log.info("[inbox] the connection to Graph was lost (%s); trying again",
                         type(exc).__name__)
                reopened = True
                continue
            except httpx.HTTPError as exc:
                raise self._network(exc, stage) from None
            if response.status_code != 401 or refreshed:
                return response
            # Expired or revoked: a new token once; a second 401 is real.
            log.info("[inbox] Graph refused the token of %s (401); getting a new one",
                     self.account)
            refreshed = True
            await self._new_token(force_refresh=True)

    async def _open(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            if not self._token:
                await self._new_token(force_refresh=False)
            # Loading the system's CAs takes tens of milliseconds: off the event loop.
            context = await asyncio.to_thread(tls_context, self._ca_file)
            self._client = httpx.AsyncClient(verify=context, timeout=self._timeout,
                                             follow_redirects=False)
        return self._client

    async def _new_token(self, *, force_refresh: bool) -> None:
        credentials = await self._credentials.credentials(
            self.account, resource=Resource.GRAPH_MAIL, force_refresh=force_refresh)
        if credentials.kind != "bearer":
            raise ConfigError('[inbox] method = "graph" needs [auth] method = "oauth2" '
                              "(Graph takes OAuth2 tokens only)")
        self._token = credentials.secret

    def _network(self, exc: httpx.HTTPError, stage: str) -> ConnectError:
        reason = self._scrub((str(exc).strip() or type(exc).__name__).splitlines()[0][:300])
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return ConnectError(f"[inbox] {stage}: the certificate of {self.root} could not be "
                                f"verified ({reason}); check [graph] endpoint and ca_file",
                                code=codes.NO_CONNECTION)
        if isinstance(exc, httpx.TimeoutException):
            reason = f"no answer in time: {reason}"
        return ConnectError(f"[inbox] {stage}: no connection to {self.root} ({reason})",
                            code=codes.NO_CONNECTION)

    def _scrub(self, text: str) -> str:
        """A server's words, without the token should one ever echo it."""
        return text.replace(self._token, "***") if self._token else text

    async def close(self) -> None:
        """Close the connections and forget the token; never raises."""
        client, self._client = self._client, None
        self._token = ""
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
