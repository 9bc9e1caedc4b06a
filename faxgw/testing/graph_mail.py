"""The mailbox half of the local Graph: mail that tests deliver, read and moved the way the
Graph inbox reader asks for it (``/v1.0/users/{mailbox}/…``)::

    GET  mailFolders[?$filter=displayName eq 'name']   → {"value": [{"id", "displayName"}]}
    POST mailFolders {"displayName"}                   → 201 the folder; 409 ErrorFolderExists
    GET  mailFolders/{id or inbox}/messages/delta      → pages of {"id", "receivedDateTime"}
         (newest first, :attr:`MailStore.page_size` a page) linked by ``@odata.nextLink``; the
         last page ends with ``@odata.deltaLink``, which encodes the position: from it, what
         was added since, and ``{"id", "@removed"}`` for what left the folder
    GET  messages/{id}/$value                          → the MIME as delivered
    POST messages/{id}/move {"destinationId"}          → 201 the message, with its new id (a
         moved message gets a new id, as Graph's do without immutable ids)

Tests put mail in with :meth:`MailStore.deliver` (``LocalGraph.deliver``) and look with
:meth:`MailStore.folder`. Switches: :meth:`MailStore.expire_delta_links` (every delta link
given so far answers 410 ``SyncStateNotFound``), :meth:`MailStore.fail` (the next mail
requests get an error, such as 429 with ``Retry-After``). Each delivery is stamped at least a
second after the one before: Graph's ``receivedDateTime`` has whole seconds, and the reader
orders by it. Who may read (``Mail.ReadWrite``) is checked by the server before a request gets
here (:func:`is_mail_request`).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from faxgw.testing.graph_http import error
from faxgw.testing.graph_records import Fault

#: What a mail request is answered with: status, JSON (or the MIME of ``$value``), headers.
MailAnswer = tuple[int, dict[str, Any] | bytes | None, dict[str, str]]
_FILTER = re.compile(r"^displayName eq '((?:[^']|'')*)'$")
_NOT_FOUND = "The specified object was not found in the store."


def is_mail_request(method: str, rest: list[str]) -> bool:
    """Whether a request (the path after ``users/{mailbox}``) reads or moves mail: those need
    ``Mail.ReadWrite`` rather than ``Mail.Send``."""
    if rest[:1] == ["mailFolders"]:
        return True
    return (len(rest) == 3 and rest[0] == "messages"
            and (method, rest[2]) in {("GET", "$value"), ("POST", "move")})


@dataclass
class MailItem:
    """A message in a mailbox: its id (new after each move), folder, MIME and arrival."""

    id: str
    folder: str
    raw: bytes
    received: str


@dataclass(frozen=True)
class _Event:
    seq: int
    mailbox: str
    folder: str
    message_id: str
    added: bool


def _token(*numbers: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(numbers).encode()).decode().rstrip("=")


def _numbers(token: str, count: int) -> list[int] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    ok = isinstance(data, list) and len(data) == count and all(isinstance(n, int) for n in data)
    return data if ok else None


class MailStore:
    """The mailboxes' folders and messages (thread-safe). ``base_url`` gives the server's
    ``https://localhost:PORT`` for the links it hands out."""

    def __init__(self, base_url: Callable[[], str]) -> None:
        self._base_url = base_url
        self._lock = threading.RLock()
        self.page_size = 10
        self._epoch = 0  # delta links of an older epoch have expired
        self._seq = 0
        self._events: list[_Event] = []
        self._items: dict[str, MailItem] = {}
        self._folders: dict[str, dict[str, str]] = {}  # mailbox → folder id → name
        self._last_received = 0
        self._faults: list[Fault] = []

    # -- what tests do ----------------------------------------------------------------------

    def deliver(self, mailbox: str, raw: bytes) -> str:
        """Put ``raw`` (MIME) into ``mailbox``'s Inbox, as Exchange delivers; its Graph id."""
        with self._lock:
            inbox = self._folder_id(mailbox, "inbox")
            stamp = self._last_received = max(int(time.time()), self._last_received + 1)
            received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
            item = MailItem("AAMkAGI" + uuid.uuid4().hex, inbox, bytes(raw), received)
            self._add(mailbox, item)
            return item.id

    def folder(self, mailbox: str, name: str) -> list[bytes] | None:
        """The MIME of the messages in ``mailbox``'s folder ``name`` (``inbox`` or a display
        name), oldest first; None when there is no such folder."""
        with self._lock:
            folders = self._folders.get(mailbox.lower(), {})
            found = [fid for fid, fname in folders.items() if fname.lower() == name.lower()]
            if not found:
                return None
            items = [i for i in self._items.values() if i.folder == found[0]]
            return [item.raw for item in sorted(items, key=lambda item: item.received)]

    def folder_names(self, mailbox: str) -> list[str]:
        """The display names of ``mailbox``'s folders."""
        with self._lock:
            return sorted(self._folders.get(mailbox.lower(), {}).values())

    def expire_delta_links(self) -> None:
        """Every delta link (and next link) given so far answers 410 ``SyncStateNotFound``."""
        with self._lock:
            self._epoch += 1

    def fail(self, status: int, code: str = "", message: str = "", *,
             headers: dict[str, str] | None = None, times: int = 1) -> None:
        """The next ``times`` mail requests are answered with this error."""
        with self._lock:
            self._faults.append(Fault(status, code, message, dict(headers or {}), times))

    # -- the API ------------------------------------------------------------------------------

    def answer(self, method: str, mailbox: str, rest: list[str], query: str,
               body: bytes) -> MailAnswer:
        """One request :func:`is_mail_request` accepted, its token already checked."""
        with self._lock:
            if self._faults:
                fault = self._faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.pop(0)
                return (fault.status, error(fault.code, fault.message) if fault.code else None,
                        fault.headers)
            params = {key: values[0] for key, values in parse_qs(query).items()}
            if rest == ["mailFolders"]:
                return self._folders_answer(method, mailbox, params, body)
            if (method, rest[2:]) == ("GET", ["messages", "delta"]) and len(rest) == 4:
                return self._delta(mailbox, rest[1], params)
            if rest[0] == "messages":
                return self._message(method, mailbox, rest[1], rest[2], body)
            return 400, error("ErrorInvalidRequest", "Unknown request."), {}

    def _folders_answer(self, method: str, mailbox: str, params: dict[str, str],
                        body: bytes) -> MailAnswer:
        folders = self._folders.setdefault(mailbox.lower(), {})
        self._folder_id(mailbox, "inbox")
        if method == "GET":
            wanted = None
            if "$filter" in params:
                match = _FILTER.match(params["$filter"])
                if match is None:
                    return 400, error("ErrorInvalidUrlQueryFilter", "Unsupported filter."), {}
                wanted = match.group(1).replace("''", "'")
            return 200, {"value": [{"id": fid, "displayName": name}
                                   for fid, name in folders.items()
                                   if wanted is None or name.lower() == wanted.lower()]}, {}
        if method != "POST":
            return 405, error("ErrorInvalidRequest", "Method not allowed."), {}
        name = str(json.loads(body or b"{}").get("displayName") or "")
        if not name:
            return 400, error("ErrorInvalidRequest", "displayName is required."), {}
        if any(existing.lower() == name.lower() for existing in folders.values()):
            return 409, error("ErrorFolderExists", "A folder with the specified name already "
                                                   "exists."), {}
        folder_id = "AAMkAGF" + uuid.uuid4().hex
        folders[folder_id] = name
        return 201, {"id": folder_id, "displayName": name}, {}

    def _message(self, method: str, mailbox: str, message_id: str, action: str,
                 body: bytes) -> MailAnswer:
        item = self._items.get(message_id)
        if item is None or self._owner(item) != mailbox.lower():
            return 404, error("ErrorItemNotFound", _NOT_FOUND), {}
        if method == "GET":
            return 200, item.raw, {}
        destination = str(json.loads(body or b"{}").get("destinationId") or "")
        target = self._resolve(mailbox, destination)
        if target is None:
            return 404, error("ErrorItemNotFound", _NOT_FOUND), {}
        self._remove(mailbox, item)
        moved = MailItem("AAMkAGI" + uuid.uuid4().hex, target, item.raw, item.received)
        self._add(mailbox, moved)
        return 201, {"id": moved.id, "parentFolderId": target,
                     "receivedDateTime": moved.received}, {}

    def _delta(self, mailbox: str, folder: str, params: dict[str, str]) -> MailAnswer:
        folder_id = self._resolve(mailbox, folder)
        if folder_id is None:
            return 404, error("ErrorItemNotFound", _NOT_FOUND), {}
        if "$skiptoken" in params:
            state = _numbers(params["$skiptoken"], 4)
        elif "$deltatoken" in params:
            found = _numbers(params["$deltatoken"], 2)
            state = None if found is None else [*found, self._seq, 0]
        else:
            state = [self._epoch, 0, self._seq, 0]
        if state is None or state[0] != self._epoch:
            return 410, error("SyncStateNotFound", "The sync state generation is not found. "
                                                   "Please start a new sync."), {}
        _, since, upto, offset = state
        latest: dict[str, _Event] = {}
        for event in self._events:
            if (event.mailbox == mailbox.lower() and event.folder == folder_id
                    and since < event.seq <= upto):
                latest[event.message_id] = event
        rows: list[tuple[str, dict[str, Any]]] = []
        for event in latest.values():
            item = self._items.get(event.message_id)
            if event.added and item is not None:
                rows.append((item.received, {"id": item.id, "receivedDateTime": item.received}))
            elif not event.added and since:  # a first sync tells only what is there
                rows.append(("", {"id": event.message_id, "@removed": {"reason": "deleted"}}))
        rows.sort(key=lambda row: row[0], reverse=True)  # Graph gives no order: newest first
        page = [row for _, row in rows[offset:offset + self.page_size]]
        link = (f"{self._base_url()}/v1.0/users/{quote(mailbox, safe='@')}/mailFolders/"
                f"{quote(folder, safe='')}/messages/delta")
        data: dict[str, Any] = {"value": page}
        if offset + self.page_size < len(rows):
            data["@odata.nextLink"] = (f"{link}?$skiptoken="
                                       f"{_token(self._epoch, since, upto, offset + len(page))}")
        else:
            data["@odata.deltaLink"] = f"{link}?$deltatoken={_token(self._epoch, upto)}"
        return 200, data, {}

    # -- the store's bookkeeping ------------------------------------------------------------

    def _folder_id(self, mailbox: str, name: str) -> str:
        folders = self._folders.setdefault(mailbox.lower(), {})
        for folder_id, folder_name in folders.items():
            if folder_name.lower() == name.lower():
                return folder_id
        folder_id = "AAMkAGF" + uuid.uuid4().hex
        folders[folder_id] = "Inbox" if name.lower() == "inbox" else name
        return folder_id

    def _resolve(self, mailbox: str, folder: str) -> str | None:
        """A folder id, or the well-known name ``inbox``, → the folder's id."""
        if folder.lower() == "inbox":
            return self._folder_id(mailbox, "inbox")
        return folder if folder in self._folders.get(mailbox.lower(), {}) else None

    def _owner(self, item: MailItem) -> str:
        return next((mailbox for mailbox, folders in self._folders.items()
                     if item.folder in folders), "")

    def _add(self, mailbox: str, item: MailItem) -> None:
        self._items[item.id] = item
        self._seq += 1
        self._events.append(_Event(self._seq, mailbox.lower(), item.folder, item.id, True))

    def _remove(self, mailbox: str, item: MailItem) -> None:
        del self._items[item.id]
        self._seq += 1
        self._events.append(_Event(self._seq, mailbox.lower(), item.folder, item.id, False))
