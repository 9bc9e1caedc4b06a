"""A one-shot mailbox read (``faxgw reports --poll``, ``faxgw run --once``) on a host that
shares its database with others takes the hosts' turn: it does not read the mailbox while
another host holds it. Real PostgreSQL, a real Dovecot, the local identity provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faxgw.app.reports import check_once
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, config_from_dict
from faxgw.store.postgres.cluster import PostgresCoordination
from faxgw.testing.dovecot import DovecotServer
from faxgw.testing.idp import LocalIdentityProvider

from .test_inbox_imap import ACCOUNT, CLIENT_ID, SMTP_SCOPE, dovecot, idp, message  # noqa: F401 - fixtures
from .test_store_postgres import migrated, schema  # noqa: F401 - fixtures


def _config(tmp_path: Path, provider: LocalIdentityProvider, imap: DovecotServer,
            url: str) -> Config:
    raw: dict[str, Any] = {
        "spool": {"dir": str(tmp_path / "spool")},
        "store": {"url": url},
        "auth": {"method": "oauth2", "provider": "custom", "authority": provider.authority,
                 "scopes": [SMTP_SCOPE], "client_id": CLIENT_ID, "ca_file": str(provider.ca_file),
                 "token_cache": str(tmp_path / "state" / "tokens.json"), "account": ACCOUNT,
                 "http_timeout_seconds": 5},
        "inbox": {"method": "imap", "host": imap.host, "port": imap.port,
                  "ca_file": str(imap.ca_file)},
    }
    return config_from_dict(raw, base=tmp_path)


def test_a_one_shot_read_waits_for_the_turn_another_host_holds(
    tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer,  # noqa: F811
    migrated: str,  # noqa: F811
) -> None:
    config = _config(tmp_path, idp, dovecot, migrated)
    with OAuth2Provider(config, poll_interval_override=0.01) as provider:
        provider.finish_device_flow(provider.start_device_flow(ACCOUNT))
    dovecot.append(ACCOUNT, "INBOX", message(1))

    service = PostgresCoordination(migrated, owner="service-on-another-host",
                                   window_seconds=61.0)
    try:
        assert service.take_turn(f"inbox:{ACCOUNT.lower()}")
        held = check_once(config)
        assert held.poll is None  # the other host reads this mailbox now
    finally:
        service.close()  # that host stops: its turn ends with its connection

    read = check_once(config)
    assert read.poll is not None and read.poll.seen == 1
