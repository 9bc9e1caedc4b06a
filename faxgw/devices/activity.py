"""What the SMTP intake has done since it started, kept where ``faxgw status`` can read it.

``faxgw status`` and the web console are other processes than ``faxgw run``, so the
listener's address and counts are written to a small private file in the spool's
``state/`` folder (``smtp-intake.json``, mode 0600, replaced by rename so a reader never sees
half of it): at the start, at most once a second while something changed, and at a clean
stop. Counts start at zero with each start of the listener; they are counts, never
addresses, names or anything a message said.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Config
from ..fsutil import write_atomic

__all__ = ["ACTIVITY_FILE", "COUNTS", "Activity", "activity_path", "read_activity"]

log = logging.getLogger("faxgw.devices")

ACTIVITY_FILE = "smtp-intake.json"
#: The counts, in the order they are shown.
COUNTS = ("connections", "connections_refused", "messages_accepted", "messages_refused",
          "recipients_refused")
#: How often, at most, the file is rewritten while the listener is busy.
WRITE_SECONDS = 1.0


def activity_path(config: Config) -> Path:
    """Where the listener of ``config``'s spool keeps its activity."""
    return config.spool.dir / "state" / ACTIVITY_FILE


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Record:
    address: str
    started: str
    updated: str
    running: bool
    pid: int
    host: str
    connections: int = 0
    connections_refused: int = 0
    messages_accepted: int = 0
    messages_refused: int = 0
    recipients_refused: int = 0


class Activity:
    """The listener's counts, counted from the event loop and the taker threads alike, and
    written to :func:`activity_path` by :meth:`keep_written`."""

    def __init__(self, path: Path, address: str) -> None:
        self._path = path
        now = _now()
        self._record = _Record(address=address, started=now, updated=now, running=True,
                               pid=os.getpid(), host=socket.gethostname())
        self._lock = threading.Lock()
        self._changed = True
        self._failing = False

    def listening_on(self, address: str) -> None:
        """The address bound (the port chosen when the configuration said 0)."""
        with self._lock:
            self._record.address = address
            self._changed = True

    def count(self, name: str) -> None:
        """One more of ``name`` (one of :data:`COUNTS`)."""
        assert name in COUNTS, name
        with self._lock:
            setattr(self._record, name, getattr(self._record, name) + 1)
            self._changed = True

    def snapshot(self) -> dict[str, Any]:
        """What the file says now."""
        with self._lock:
            return asdict(self._record)

    def write(self) -> None:
        """Write the file if anything changed; a failure is logged once, never raised (the
        counts are for people; the faxes go on)."""
        if not self._path.parent.is_dir():
            return  # the spool is made by the service's first round: written after it
        with self._lock:
            if not self._changed:
                return
            self._record.updated = _now()
            data = json.dumps(asdict(self._record), indent=1).encode()
            self._changed = False
        try:
            write_atomic(self._path, data, mode=0o600)
        except OSError as exc:
            if not self._failing:
                log.error("SMTP intake: cannot write %s: %s", self._path, exc.strerror or exc)
            self._failing = True
            return
        self._failing = False

    async def keep_written(self, stop: asyncio.Event) -> None:
        """Write the file now and then until ``stop``; at the end, once more as stopped."""
        try:
            while not stop.is_set():
                await asyncio.to_thread(self.write)
                try:
                    await asyncio.wait_for(stop.wait(), WRITE_SECONDS)
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                self._record.running = False
                self._changed = True
            await asyncio.to_thread(self.write)


def read_activity(config: Config) -> dict[str, Any] | None:
    """The listener's last written activity (as :class:`Activity` wrote it), or None when
    there is none or it cannot be read."""
    try:
        raw = json.loads(activity_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None
