"""The ``[store]`` section: where the jobs are kept (SQLite in the spool, or PostgreSQL for
several hosts).

The database password is never part of the configuration object: it comes from
``password_file``, ``FAXGW_STORE_PASSWORD`` or libpq's own ``~/.pgpass``, and is read only when
a connection is made. A URL carrying a password is refused, so that it cannot end up in a log
or on the status sheet.
"""

from __future__ import annotations

import os
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..domain.errors import ConfigError
from .base import OptionalPath, Section

STORE_PASSWORD_ENV = "FAXGW_STORE_PASSWORD"


class StoreConfig(Section):
    """``[store]``: the job store."""


    #: ``postgresql://user@host:port/database``; "" = SQLite in the spool's ``state/``.
    url: str = ""
    #: A file holding the database password (or FAXGW_STORE_PASSWORD, or ``~/.pgpass``).
    password_file: OptionalPath = None
    #: The CA that signed the database server's certificate: ``sslmode=verify-full``.
    ca_file: OptionalPath = None
    #: How long a runner's claim on a job holds without being renewed.
    lease_seconds: Annotated[float, Field(ge=10, le=3600)] = 60.0

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        # Never echo the value: it might hold the very password this check keeps out.
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError("not a valid URL") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must start with postgresql:// (or be empty: SQLite in the spool)")
        if parts.password is not None:
            raise ValueError("must not hold a password: use password_file, "
                             f"{STORE_PASSWORD_ENV} or ~/.pgpass")
        if "password=" in parts.query.lower():
            raise ValueError("must not hold a password parameter: use password_file, "
                             f"{STORE_PASSWORD_ENV} or ~/.pgpass")
        return value

    @property
    def postgres(self) -> bool:
        """Whether the jobs are kept in PostgreSQL."""
        return bool(self.url)

    def password(self) -> str | None:
        """The database password from ``FAXGW_STORE_PASSWORD`` or ``password_file``; None to
        leave it to libpq (``~/.pgpass``, or no password at all)."""
        from_env = os.environ.get(STORE_PASSWORD_ENV)
        if from_env:
            return from_env
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"[store] password_file: cannot read {self.password_file}: "
                              f"{exc.strerror}") from None
