"""Reading the sending mailbox by IMAP: :class:`ImapInbox`, the IMAP adapter of the
:class:`~faxgw.ports.Inbox` port (aioimaplib, implicit TLS).

The cursor is ``"<UIDVALIDITY>:<last UID>"``: UIDs only grow within one UIDVALIDITY, so
"the messages with a UID above the last one read" is exactly what arrived since, whether the
reader was running or not. When the folder's UIDVALIDITY changes (the mailbox was restored or
moved; every UID is void) the folder is read from its start: what was processed has been moved
to the done folder, so what is read again was not processed yet. Message ids are
``"<UIDVALIDITY>:<UID>"`` too, so that :meth:`ImapInbox.mark_done` never moves a message that
merely has the same UID in a new UIDVALIDITY.

Processed messages are moved (``UID MOVE``, or COPY, ``\\Deleted`` and ``UID EXPUNGE`` of just
those UIDs where the server lacks MOVE) to ``[inbox] done_folder``, created when missing;
nothing is ever deleted otherwise. One connection is kept between polls and opened again
lazily when it was lost. Failures cross the port classified: :class:`ConnectError` (360) for
no connection or an untrusted certificate, :class:`AuthError` (370 for a refused token, 375 for
a refused password), :class:`ConfigError` for a folder that does not exist.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aioimaplib

from ..config import InboxConfig
from ..domain import codes
from ..domain.errors import AuthError, ConfigError, ConnectError, TransientError
from ..ports import CredentialProvider, Credentials, InboxBatch, InboxMessage, Resource
from ..tlsutil import shared_context
from .imap_wire import (
    ImapClient,
    mailbox_name,
    messages_of_fetch,
    text_of,
    uid_set,
    uids_of_search,
    uidvalidity_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
#: What a broken or silent connection raises from aioimaplib and asyncio.
_CONNECTION_FAULTS = (aioimaplib.AioImapException, OSError, TimeoutError)


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """``"<UIDVALIDITY>:<UID>"`` → the two numbers; None for None (read from the start)."""
    return None if cursor is None else _pair(cursor, "cursor")


def _pair(text: str, what: str) -> tuple[int, int]:
    validity, sep, uid = text.partition(":")
    if not (sep and validity.isdigit() and uid.isdigit()):
        raise ValueError(f"not an IMAP inbox {what}: {text!r}")
    return int(validity), int(uid)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs plus ``[inbox] ca_file``, host names checked, TLS 1.2 at least
    (one context per file, shared)."""
    return shared_context("inbox", ca_file)


class ImapInbox:
    """The sending mailbox ``account``'s ``[inbox] folder``, read over IMAP.

    ``credentials`` gives the sign-in for :attr:`Resource.IMAP`: a bearer token (XOAUTH2)
    or a user name and password (LOGIN). ``timeout`` bounds each step (connecting, each
    command). One operation at a time: calls wait for each other.
    """

    def __init__(self, config: InboxConfig, credentials: CredentialProvider, account: str,
                 *, timeout: float = 30.0) -> None:
        self._config = config
        self._credentials = credentials
        self.account = account
        self._timeout = timeout
        self._where = f"{config.host}:{config.port}"
        self._client: ImapClient | None = None
        #: Whether the connection in use was opened by this operation (not kept from before).
        self._fresh = True
        self._context: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()

    # -- the port ------------------------------------------------------------------------

    async def fetch(self, cursor: str | None, *, limit: int = 100) -> InboxBatch:
        """Up to ``limit`` messages after ``cursor``, oldest first, and the cursor after them.

        Messages are read with ``BODY.PEEK[]``: reading does not mark them seen."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        after = parse_cursor(cursor)
        async with self._lock:
            return await self._guarded(lambda: self._fetch(after, limit))

    async def mark_done(self, message_ids: Sequence[str]) -> None:
        """Move these messages (ids from :meth:`fetch`) to ``[inbox] done_folder``."""
        wanted = [_pair(message_id, "message id") for message_id in message_ids]
        if not wanted:
            return
        async with self._lock:
            await self._guarded(lambda: self._mark_done(wanted))

    async def close(self) -> None:
        """Log out and close the connection; never raises."""
        async with self._lock:
            await self._drop(logout=True)

    # -- reading ---------------------------------------------------------------------------

    async def _fetch(self, after: tuple[int, int] | None, limit: int) -> InboxBatch:
        client = await self._connection()
        validity = await self._select(client)
        last = 0
        if after is not None:
            if after[0] == validity:
                last = after[1]
            else:
                log.warning("[inbox] %s in %s: UIDVALIDITY changed from %s to %s; reading the "
                            "folder again from its start (processed messages were moved "
                            "away)", self._config.folder, self.account, after[0], validity)
        # "N:*" always includes the highest UID, even when it is below N: filter again.
        found = await self._checked(client.uid_search(f"UID {last + 1}:*", charset=None),
                                    "UID SEARCH")
        uids = sorted(uid for uid in uids_of_search(found) if uid > last)[:limit]
        if not uids:
            return InboxBatch([], f"{validity}:{last}")
        answer = await self._checked(client.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])"),
                                     "UID FETCH")
        bodies = messages_of_fetch(answer)
        # A UID missing from the answer was moved away by someone else meanwhile: skipped.
        messages = [InboxMessage(f"{validity}:{uid}", bodies[uid]) for uid in uids
                    if uid in bodies]
        return InboxBatch(messages, f"{validity}:{uids[-1]}")

    async def _select(self, client: ImapClient) -> int:
        """SELECT the folder (again: new messages become visible); its UIDVALIDITY."""
        folder = self._config.folder
        response = await self._call(client.select(mailbox_name(folder)))
        if response.result != "OK":
            raise ConfigError(f"[inbox] folder: {self.account} has no folder {folder!r} on "
                              f"{self._where} ({text_of(response)})")
        return uidvalidity_of(response)

    # -- moving processed messages -------------------------------------------------------

    async def _mark_done(self, wanted: list[tuple[int, int]]) -> None:
        client = await self._connection()
        validity = await self._select(client)
        uids = [uid for message_validity, uid in wanted if message_validity == validity]
        if len(uids) < len(wanted):
            log.warning("[inbox] %d message(s) of %s were read under an older UIDVALIDITY; "
                        "left where they are", len(wanted) - len(uids), self.account)
        if not uids:
            return
        target, which = mailbox_name(self._config.done_folder), uid_set(uids)
        if client.has_capability("MOVE"):
            await self._into_done_folder(client, client.uid, "move", which, target)
            return
        # Without MOVE: copy, then flag and expunge only these UIDs.
        await self._into_done_folder(client, client.uid, "copy", which, target)
        await self._checked(client.uid("store", which, "+FLAGS.SILENT", r"(\Deleted)"),
                            "UID STORE")
        if client.has_capability("UIDPLUS"):
            await self._checked(client.uid("expunge", which), "UID EXPUNGE")
        else:
            # A plain EXPUNGE would also remove what others marked deleted: never.
            log.warning("[inbox] %s has neither MOVE nor UIDPLUS: processed messages stay in "
                        "%s, marked deleted", self._where, self._config.folder)

    async def _into_done_folder(self, client: ImapClient, command: Any, *args: str) -> None:
        response = await self._call(command(*args))
        if response.result != "OK" and "[TRYCREATE]" in text_of(response):
            await self._create_done_folder(client)
            response = await self._call(command(*args))
        if response.result != "OK":
            raise TransientError(f"[inbox] moving processed messages to "
                                 f"{self._config.done_folder!r} failed on {self._where}: "
                                 f"{text_of(response)}", code=codes.TRY_LATER,
                                 reply=text_of(response))

    async def _create_done_folder(self, client: ImapClient) -> None:
        folder = mailbox_name(self._config.done_folder)
        response = await self._call(client.create(folder))
        if response.result != "OK" and "[ALREADYEXISTS]" not in text_of(response):
            raise ConfigError(f"[inbox] done_folder: cannot create "
                              f"{self._config.done_folder!r} on {self._where} "
                              f"({text_of(response)})")
        # Subscribed, so that mail programs show where the reports went.
        await self._call(client.subscribe(folder))
        log.info("[inbox] created the folder %r for processed messages of %s",
                 self._config.done_folder, self.account)

    # -- the connection ------------------------------------------------------------------

    async def _connection(self) -> ImapClient:
        """The open, signed-in connection; a new one when there is none or it was lost."""
        if self._client is not None and self._client.alive:
            self._fresh = False
            return self._client
        await self._drop(logout=False)
        self._fresh = True
        client = await self._connect()
        try:
            client = await self._sign_in(client)
            await self._call(client.refresh_capabilities())
        except BaseException:
            _abandon(client)
            raise
        self._client = client
        return client

    async def _connect(self) -> ImapClient:
        if self._context is None:
            # Loading the system's CAs takes tens of milliseconds: not on the event loop.
            self._context = await asyncio.to_thread(tls_context, self._config.ca_file)
        client = ImapClient(self._config.host, self._config.port, timeout=self._timeout,
                            ssl_context=self._context)
        try:
            await client.wait_hello_from_server()
        except ssl.SSLCertVerificationError as exc:
            _abandon(client)
            raise ConnectError(f"[inbox] the certificate of {self._where} is not trusted "
                               f"({exc.verify_message}); check [inbox] host and ca_file",
                               code=codes.NO_CONNECTION) from None
        except _CONNECTION_FAULTS as exc:
            _abandon(client)
            raise ConnectError(f"[inbox] no connection to the IMAP server {self._where}: "
                               f"{_reason(exc)}", code=codes.NO_CONNECTION) from None
        return client

    async def _sign_in(self, client: ImapClient) -> ImapClient:
        """Sign ``client`` in; the connection to go on with (a new one when the server hung
        up after refusing a token). Raises with every connection but that one closed."""
        credentials = await self._credentials.credentials(self.account, resource=Resource.IMAP)
        if credentials.kind == "password":
            response = await self._call(client.login(_quoted(credentials.username),
                                                     credentials.secret))
            if response.result != "OK":
                raise AuthError(f"[inbox] {self._where} refused the user name or password of "
                                f"{credentials.username} "
                                f"({_scrub(text_of(response), credentials)})",
                                code=codes.AUTH_REJECTED, reply=text_of(response))
            return client
        if credentials.kind != "bearer":
            raise ConfigError('[inbox] method = "imap" needs [auth] method "password" or '
                              '"oauth2": an IMAP server does not read mail without a sign-in')
        if not client.has_capability("AUTH=XOAUTH2"):
            raise ConfigError(f"[inbox] the IMAP server {self._where} does not offer OAuth2 "
                              "sign-in (XOAUTH2); check [inbox] host")
        response = await self._xoauth2(client, credentials)
        if response.result == "OK":
            return client
        # A token the server refuses (revoked, or expired earlier than msal thought): once a
        # new one from the identity provider; a second refusal needs a person.
        log.info("[inbox] %s refused the token of %s; getting a new one", self._where,
                 self.account)
        credentials = await self._credentials.credentials(self.account, resource=Resource.IMAP,
                                                          force_refresh=True)
        if not client.alive:
            # Some servers hang up after a refusal: the new token gets a new connection.
            _abandon(client)
            client = await self._connect()
        try:
            response = await self._xoauth2(client, credentials)
        except BaseException:
            _abandon(client)
            raise
        if response.result == "OK":
            return client
        _abandon(client)
        raise AuthError(f"[inbox] {self._where} refused the sign-in of {self.account} for IMAP "
                        f"({_scrub(text_of(response), credentials)}); sign in again ('faxgw "
                        f"auth login --account {self.account}') and check that the app may "
                        "read the mailbox by IMAP (IMAP.AccessAsUser.All)",
                        code=codes.SIGN_IN_AGAIN)

    async def _xoauth2(self, client: ImapClient, credentials: Credentials) -> Any:
        return await client.xoauth2(credentials.username or self.account, credentials.secret)

    async def _drop(self, *, logout: bool) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if logout and client.alive:
            try:
                await asyncio.wait_for(client.logout(), min(self._timeout, 5.0))
            except _CONNECTION_FAULTS:
                pass  # the server is gone or slow: the socket is closed below all the same
        _abandon(client)

    # -- calls ---------------------------------------------------------------------------

    async def _call(self, call: Awaitable[T]) -> T:
        # aioimaplib bounds some commands by its timeout and not others (UID MOVE, STORE).
        return await asyncio.wait_for(call, self._timeout)

    async def _checked(self, call: Awaitable[Any], what: str) -> Any:
        response = await self._call(call)
        if response.result != "OK":
            raise TransientError(f"[inbox] {what} refused by {self._where}: "
                                 f"{text_of(response)}", code=codes.TRY_LATER,
                                 reply=text_of(response))
        return response

    async def _guarded(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation``; a connection that broke under it is dropped and the failure
        raised as :class:`ConnectError`, except that a kept connection found broken (the
        server restarted or closed it while idle) is replaced once at once: both operations
        may be repeated (reading changes nothing, moving a moved UID is a no-op)."""
        for attempt in (1, 2):
            try:
                return await operation()
            except ConnectError:  # already classified (it is an OSError too)
                await self._drop(logout=False)
                raise
            except _CONNECTION_FAULTS as exc:
                kept = not self._fresh
                await self._drop(logout=False)
                if attempt == 1 and kept:
                    log.info("[inbox] the connection to %s was lost (%s); opening a new one",
                             self._where, _reason(exc))
                    continue
                raise ConnectError(f"[inbox] the connection to {self._where} failed: "
                                   f"{_reason(exc)}", code=codes.NO_CONNECTION) from None
            except asyncio.CancelledError:
                # Cancelled in the middle of a command: the connection's state is unknown.
                await self._drop(logout=False)
                raise
        raise AssertionError("unreachable")


def _abandon(client: ImapClient) -> None:
    """Close the socket without a word (the connection is broken, unwanted, or logged out).

    ``abort``, not ``close``: closing a TLS transport waits for the server's close_notify
    (up to half a minute), and a socket still open when the event loop ends is leaked."""
    transport = client.protocol.transport
    if transport is not None:
        transport.abort()
    elif not client._client_task.done():
        client._client_task.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aioimaplib.CommandTimeout):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scrub(text: str, credentials: Credentials) -> str:
    """A server's words, without the secret should a server ever echo it."""
    return text.replace(credentials.secret, "***") if credentials.secret else text
