"""Reading the sending mailbox through Microsoft Graph: :class:`GraphInbox`, the Graph adapter
of the :class:`~faxgw.ports.Inbox` port (httpx, :mod:`faxgw.inbox.graph_wire`).

The cursor is Graph's delta link for ``[inbox] folder``: the first read asks
``…/mailFolders/{folder}/messages/delta`` (``INBOX`` is Graph's well-known ``inbox``, another
name is looked up among the mailbox's top-level folders), follows ``@odata.nextLink`` to the
``@odata.deltaLink``, which becomes the cursor; later reads start from it and see what arrived
since, whether the reader was running or not. Entries that left the folder (``@removed``) are
skipped; the new messages are taken oldest first (``receivedDateTime``) and their MIME read
with ``…/messages/{id}/$value``. When more arrived than a batch takes, the cursor also lists the
ids still to be read (a JSON object, ``{"delta": link, "pending": [ids]}``), so that the next
read goes on where this one stopped: the cursor stays opaque to the caller, and reading from the
same cursor again gives the same messages.

A delta link Graph no longer knows (410 Gone, ``SyncStateNotFound``) or a cursor that is no
Graph delta link (the reader was IMAP before) starts a new sync from the folder's start: what
was used has been moved to the done folder, and what is read again the report store already
knows. Links are followed only under ``[graph] endpoint``: the token goes with them.

Processed messages are moved (``…/messages/{id}/move``) into ``[inbox] done_folder``, a
top-level folder found by its display name or created; nothing is ever deleted. Failures cross
the port classified (:data:`~faxgw.inbox.graph_wire.ANSWERS`): ``ConnectError`` (360),
``AuthError`` (370 a refused token, 373 no ``Mail.ReadWrite``, 377 an application access policy,
378 a mailbox not on Graph), ``TransientError`` (380, throttled: with Graph's Retry-After),
``ConfigError`` for a folder that does not exist.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ..config import Config
from ..domain import codes
from ..domain.errors import ConfigError, TransientError
from ..ports import CredentialProvider, InboxBatch, InboxMessage
from .graph_wire import SYNC_GONE_CODES, GraphMailClient, error_of

log = logging.getLogger(__name__)

#: Seconds to connect and to wait for each answer.
TIMEOUT_SECONDS = 60.0
#: Graph's well-known name of the Inbox, whatever its display name in the mailbox's language.
WELL_KNOWN_INBOX = "inbox"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the reader is: the delta link to read on from (None: a new sync), and the ids of
    messages found before it that are still to be read, oldest first."""

    delta: str | None
    pending: list[str] = field(default_factory=list)

    def dump(self) -> str:
        """The cursor as stored: the delta link alone, or JSON when ids are pending."""
        if not self.pending and self.delta:
            return self.delta
        return json.dumps({"delta": self.delta, "pending": self.pending})


def parse_cursor(cursor: str | None, root: str) -> Cursor:
    """The stored cursor read back; one that is not this Graph's (another ``[inbox] method``
    or ``[graph] endpoint`` wrote it, or it is damaged) is logged and read as a new sync."""
    if cursor is None:
        return Cursor(None)
    if cursor.startswith("{"):
        try:
            data = json.loads(cursor)
            delta, pending = data.get("delta"), data.get("pending")
            if (delta is None or isinstance(delta, str)) and isinstance(pending, list) \
                    and all(isinstance(item, str) for item in pending):
                return _checked(Cursor(delta, list(pending)), root)
        except (ValueError, AttributeError):
            pass
    elif cursor.startswith(f"{root}/"):
        return Cursor(cursor)
    log.warning("[inbox] the stored cursor is not a Graph delta link of %s; reading the "
                "folder from its start (what was processed was moved away)", root)
    return Cursor(None)


def _checked(cursor: Cursor, root: str) -> Cursor:
    if cursor.delta is not None and not cursor.delta.startswith(f"{root}/"):
        return Cursor(None, cursor.pending)
    return cursor


class GraphInbox:
    """The sending mailbox ``account``'s ``[inbox] folder``, read through Graph.

    ``credentials`` gives Graph tokens for reading mail (:attr:`Resource.GRAPH_MAIL`). One
    operation at a time: calls wait for each other. Connects on first use.
    """

    def __init__(self, config: Config, credentials: CredentialProvider, account: str,
                 *, timeout: float = TIMEOUT_SECONDS) -> None:
        self._config = config.inbox
        self.account = account
        self._http = GraphMailClient(config.graph, credentials, account, timeout=timeout)
        self._folder: str | None = None
        self._done: str | None = None
        self._lock = asyncio.Lock()

    # -- the port ------------------------------------------------------------------------

    async def fetch(self, cursor: str | None, *, limit: int = 100) -> InboxBatch:
        """Up to ``limit`` messages after ``cursor``, oldest first, and the cursor after them.

        Reading a message's MIME does not mark it read."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        position = parse_cursor(cursor, self._http.root)
        async with self._lock:
            if position.pending:
                delta, pending = position.delta, list(position.pending)
            else:
                delta, pending = await self._changes(position.delta)
            messages: list[InboxMessage] = []
            while pending and len(messages) < limit:
                message_id = pending.pop(0)
                raw = await self._mime(message_id)
                if raw is not None:  # moved away by someone meanwhile: skipped
                    messages.append(InboxMessage(message_id, raw))
            log.debug("[inbox] %d new message(s) in %s, %d still to read", len(messages),
                      self.account, len(pending))
            return InboxBatch(messages, Cursor(delta, pending).dump())

    async def mark_done(self, message_ids: Sequence[str]) -> None:
        """Move these messages (ids from :meth:`fetch`) to ``[inbox] done_folder``."""
        if not message_ids:
            return
        async with self._lock:
            for message_id in message_ids:
                await self._move(message_id)

    async def close(self) -> None:
        """Close the connections; never raises."""
        async with self._lock:
            await self._http.close()

    # -- reading ---------------------------------------------------------------------------

    async def _changes(self, delta: str | None) -> tuple[str, list[str]]:
        """Follow the delta from ``delta`` (a new sync when None) to its new delta link; the
        ids of the messages now in the folder that it names, oldest first."""
        url = delta or await self._first_delta()
        found: dict[str, tuple[str, int]] = {}
        order = itertools.count()  # Graph's stamps have whole seconds: ties keep Graph's order
        while True:
            response = await self._http.request("GET", url, stage="delta",
                                                passes=frozenset({400, 404, 410}))
            if response.status_code >= 400:
                code, _ = error_of(response)
                # 404 from a stored link: its folder was recreated; a new sync finds the new one.
                gone = (response.status_code == 410 or code.lower() in SYNC_GONE_CODES
                        or (response.status_code == 404 and delta is not None))
                if not gone or delta is None:
                    # Not a lost sync, or a new sync refused as well: not again.
                    raise self._http.error(response, "delta")
                log.warning("[inbox] Graph no longer knows the delta link of %s (%s %s); "
                            "reading %r from its start", self.account, response.status_code,
                            code, self._config.folder)
                delta = None
                found.clear()
                url = await self._first_delta()
                continue
            data = _json(response)
            for entry in data.get("value") or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                    continue
                if "@removed" in entry:
                    found.pop(entry["id"], None)
                else:
                    found[entry["id"]] = (str(entry.get("receivedDateTime") or ""), next(order))
            if isinstance(data.get("@odata.nextLink"), str):
                url = data["@odata.nextLink"]
                continue
            link = data.get("@odata.deltaLink")
            if not isinstance(link, str):
                raise TransientError("[inbox] delta: Graph's answer ends without a delta link",
                                     code=codes.TRY_LATER)
            return link, sorted(found, key=lambda message_id: found[message_id])

    async def _first_delta(self) -> str:
        folder = quote(await self._reading_folder(), safe="")
        return (f"{self._http.mailbox_url}/mailFolders/{folder}/messages/delta"
                "?$select=id,receivedDateTime")

    async def _reading_folder(self) -> str:
        if self._folder is None:
            name = self._config.folder
            if name.lower() == WELL_KNOWN_INBOX:
                self._folder = WELL_KNOWN_INBOX
            else:
                found = await self._find_folder(name)
                if found is None:
                    raise ConfigError(f"[inbox] folder: {self.account} has no top-level folder "
                                      f"{name!r} (Graph)")
                self._folder = found
        return self._folder

    async def _mime(self, message_id: str) -> bytes | None:
        url = f"{self._http.mailbox_url}/messages/{quote(message_id, safe='')}/$value"
        response = await self._http.request("GET", url, stage="$value",
                                            passes=frozenset({404}))
        return None if response.status_code == 404 else response.content

    # -- moving processed messages -------------------------------------------------------

    async def _move(self, message_id: str) -> None:
        url = f"{self._http.mailbox_url}/messages/{quote(message_id, safe='')}/move"
        for _ in range(2):
            target = await self._done_folder()
            response = await self._http.request("POST", url, stage="move",
                                                body={"destinationId": target},
                                                passes=frozenset({404}))
            if response.status_code != 404:
                return
            # Either the message was moved already (its id changes with a move), or the done
            # folder was deleted meanwhile: look the folder up again, once.
            self._done = None
        log.info("[inbox] message %s of %s was no longer there to be moved", message_id[-12:],
                 self.account)

    async def _done_folder(self) -> str:
        if self._done is None:
            name = self._config.done_folder
            found = await self._find_folder(name)
            if found is None:
                response = await self._http.request(
                    "POST", f"{self._http.mailbox_url}/mailFolders", stage="create folder",
                    body={"displayName": name}, passes=frozenset({409}))
                # 409: made by another reader just now; it is there to be found.
                found = (str(_json(response).get("id") or "") if response.status_code != 409
                         else await self._find_folder(name))
                if not found:
                    raise ConfigError(f"[inbox] done_folder: could not create {name!r} in "
                                      f"{self.account}")
                log.info("[inbox] created the folder %r in %s", name, self.account)
            self._done = found
        return self._done

    async def _find_folder(self, name: str) -> str | None:
        """The id of the top-level folder called ``name`` (any case), if there is one."""
        literal = name.replace("'", "''")  # OData's quoting
        url = (f"{self._http.mailbox_url}/mailFolders?$filter="
               + quote(f"displayName eq '{literal}'", safe="'"))
        data = _json(await self._http.request("GET", url, stage="find folder"))
        for folder in data.get("value") or []:
            if isinstance(folder, dict) and str(folder.get("displayName", "")).lower() == \
                    name.lower() and isinstance(folder.get("id"), str):
                return str(folder["id"])
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
