"""Wake-ups: a host hears at once when a job becomes due anywhere (``LISTEN faxgw_jobs``).

A trigger on ``jobs`` (schema step 2) notifies the channel when a job is added or queued
again (a retry, a release, a requeue), at the commit of that change. Each host listens on one
connection of its own, on the event loop: ``psycopg``'s ``notifies()`` holds its connection,
so nothing else may use it. Notifications sent while a host is disconnected are lost: the
service's regular sweep still finds the jobs, and the host wakes once after every reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ...domain.errors import StoreError
from .connect import connect_async, describe, error_text, scrub

log = logging.getLogger("faxgw.store")

#: The channel the trigger notifies, followed by the schema's name (63 bytes at most).
CHANNEL = "faxgw_jobs:"
#: How long one wait for notifications lasts before the loop looks at ``stop`` again.
LISTEN_SECONDS = 5.0
#: How long to wait before connecting again after the connection failed.
RECONNECT_SECONDS = 5.0


async def listen(conninfo: str, wake: Callable[[], None], stop: asyncio.Event, *,
                 password: str | None = None, ca_file: Path | None = None,
                 reconnect_seconds: float = RECONNECT_SECONDS) -> None:
    """Call ``wake`` for every notification on the schema's :data:`CHANNEL` (and once after
    each (re)connect) until ``stop`` is set; a lost connection is opened again."""
    where = describe(conninfo)
    failing = False
    while not stop.is_set():
        try:
            db = await connect_async(conninfo, password=password, ca_file=ca_file)
            try:
                await db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(
                    await _channel(db))))
                if failing:
                    log.warning("listening for new jobs in %s again", where)
                failing = False
                wake()  # whatever was notified while this host was not listening
                while not stop.is_set():
                    async for _ in db.notifies(timeout=LISTEN_SECONDS):
                        wake()
                    if db.broken:
                        break
            finally:
                await db.close()
        except (StoreError, psycopg.Error) as exc:
            text = str(exc) if isinstance(exc, StoreError) else scrub(error_text(exc), password)
            if not failing:
                log.warning("! not listening for new jobs in %s (the sweep still finds "
                            "them): %s", where, text)
            failing = True
        if not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), reconnect_seconds)
            except TimeoutError:
                pass


async def _channel(db: psycopg.AsyncConnection[Any]) -> str:
    """The schema's channel, as the trigger names it."""
    cursor = await db.execute("SELECT left(%s || current_schema(), 63)", (CHANNEL,))
    row = await cursor.fetchone()
    if row is None or row[0] is None:
        raise StoreError("no schema to listen in (search_path)")
    return str(row[0])
