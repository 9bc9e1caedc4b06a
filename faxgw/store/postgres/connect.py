"""Connections to PostgreSQL, and how they are named in messages without their secret.

The password never travels in the connection string faxgw is given: it is handed to libpq
separately (or libpq finds it in ``~/.pgpass``), and every message about the database names
it by :func:`describe` (user, host, port, database) and is scrubbed of the password, whatever
a driver message might quote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from ...domain.errors import StoreError

#: Seconds to wait for the server before the store counts as unreachable.
CONNECT_TIMEOUT = 10


def describe(conninfo: str) -> str:
    """The database as messages name it: ``postgresql://user@host:port/database``, never a
    password nor any other parameter."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "postgresql (a connection string that cannot be read)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = str(params.get("host") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    database = f"/{params['dbname']}" if params.get("dbname") else ""
    return f"postgresql://{user}{host}{port}{database}"


def scrub(text: str, password: str | None) -> str:
    """``text`` without the password in it."""
    return text.replace(password, "***") if password else text


def connect(conninfo: str, *, password: str | None = None,
            ca_file: Path | None = None) -> psycopg.Connection[dict[str, Any]]:
    """A connection in autocommit mode (every write is an explicit transaction), rows as dicts.

    ``ca_file`` makes the server prove who it is: ``sslmode=verify-full`` against that CA.
    """
    try:
        return psycopg.connect(conninfo, **connection_kwargs(password, ca_file))
    except psycopg.Error as exc:
        raise StoreError(f"job store {describe(conninfo)}: cannot connect: "
                         f"{scrub(error_text(exc), password)}") from None


async def connect_async(conninfo: str, *, password: str | None = None,
                        ca_file: Path | None = None) -> psycopg.AsyncConnection[Any]:
    """As :func:`connect`, for the event loop (the host's ``LISTEN`` connection)."""
    try:
        return await psycopg.AsyncConnection.connect(conninfo, autocommit=True,
                                                     **_parameters(password, ca_file))
    except psycopg.Error as exc:
        raise StoreError(f"job store {describe(conninfo)}: cannot connect: "
                         f"{scrub(error_text(exc), password)}") from None


def connection_kwargs(password: str | None, ca_file: Path | None) -> dict[str, Any]:
    """What :func:`connect` opens a connection with, besides the connection string (the
    pool of :mod:`~faxgw.store.postgres.pool` opens its connections the same way)."""
    return {"autocommit": True, "row_factory": dict_row, **_parameters(password, ca_file)}


def _parameters(password: str | None, ca_file: Path | None) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT, "application_name": "faxgw",
        # A connection a firewall dropped silently while idle is noticed within two minutes
        # and opened again, instead of a call hanging until the system's TCP timeout.
        "keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 10,
        "keepalives_count": 6,
    }
    if password is not None:
        extra["password"] = password
    if ca_file is not None:
        extra.update(sslmode="verify-full", sslrootcert=str(ca_file))
    return extra


def error_text(exc: psycopg.Error) -> str:
    """A driver error in one line (libpq spreads some over several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
