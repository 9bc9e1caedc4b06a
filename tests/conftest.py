"""Shared fixtures: a real SMTP server with STARTTLS, configurations pointing at it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from faxgw.config import Config, config_from_dict

if TYPE_CHECKING:
    from faxgw.testing.smtp_server import FaxSMTPServer

SAMPLES = Path(__file__).resolve().parent.parent / "faxgw" / "samples"
USER = "fax@contoso.com"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """A private copy of the sample documents (tests may move or damage them)."""
    target = tmp_path / "samples"
    shutil.copytree(SAMPLES, target, ignore=shutil.ignore_patterns("__*"))
    return target


@pytest.fixture
def smtp_server() -> Iterator[FaxSMTPServer]:
    """An SMTP server like Exchange's front door: STARTTLS required, AUTH only after it."""
    from faxgw.testing.smtp_server import FaxSMTPServer

    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}) as server:
        yield server


class FakeClock:
    """A clock the tests advance, so nothing sleeps through a backoff or settle time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeConfig = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """Build a validated Config for a server; keyword sections override the defaults."""

    def build(server: FaxSMTPServer | None = None, **sections: dict[str, Any]) -> Config:
        password_file = tmp_path / "smtp-password"
        password_file.write_text(PASSWORD + "\n")
        raw: dict[str, Any] = {
            "spool": {"dir": str(tmp_path / "spool"), "settle_seconds": 0},
            "service": {"address": "{e164}@fax.example.net", "region": "DE"},
            "smtp": {"sender": USER, "timeout_seconds": 10},
            "auth": {"method": "password", "username": USER,
                     "password_file": str(password_file)},
        }
        if server is not None:
            raw["smtp"].update(host=server.host, port=server.port, ca_file=str(server.ca_file))
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        return config_from_dict(raw, base=tmp_path)

    return build
