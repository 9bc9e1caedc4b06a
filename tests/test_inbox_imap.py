"""Reading the sending mailbox by IMAP against a real Dovecot and the real test identity provider.

Dovecot (``faxgw.testing.dovecot``) serves IMAP over implicit TLS and checks XOAUTH2 tokens
by asking the identity provider's introspection endpoint; msal gets the tokens from that
identity provider after a device sign-in. Fixtures are delivered with IMAP APPEND as
Dovecot's master user. Nothing is mocked: faults are real (an expired token, a recreated
folder, a stopped server, a certificate from another CA).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faxgw.auth import make_provider
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, config_from_dict
from faxgw.domain import codes
from faxgw.domain.errors import AuthError, ConfigError, ConnectError
from faxgw.inbox import ImapInbox, open_inbox
from faxgw.ports import CredentialProvider
from faxgw.testing.dovecot import DovecotServer
from faxgw.testing.idp import LocalIdentityProvider

ACCOUNT = "fax@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
#: What faxgw asks for reading by IMAP; Dovecot accepts no token without it.
IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
PASSWORD_USER = "scanner@contoso.com"
PASSWORD = "imap password with spaces and \"quotes\" 7"


def message(n: int) -> bytes:
    return (f"From: fax-service@fax.example.net\r\nTo: {ACCOUNT}\r\n"
            f"Subject: Fax report {n}\r\nMessage-ID: <report-{n}@fax.example.net>\r\n\r\n"
            f"Your fax {n} was delivered.\r\n").encode()


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        yield server


@pytest.fixture
def dovecot(idp: LocalIdentityProvider) -> Iterator[DovecotServer]:
    with DovecotServer(idp=idp, scope=IMAP_SCOPE, users={PASSWORD_USER: PASSWORD}) as server:
        yield server


def make_config(tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer,
                **inbox: Any) -> Config:
    raw: dict[str, Any] = {
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SMTP_SCOPE], "client_id": CLIENT_ID, "ca_file": str(idp.ca_file),
                 "token_cache": str(tmp_path / "state" / "tokens.json"), "account": ACCOUNT,
                 "http_timeout_seconds": 5},
        "inbox": {"method": "imap", "host": dovecot.host, "port": dovecot.port,
                  "ca_file": str(dovecot.ca_file), **inbox},
    }
    return config_from_dict(raw, base=tmp_path)


@pytest.fixture
def config(tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer) -> Config:
    return make_config(tmp_path, idp, dovecot)


@pytest.fixture
def provider(config: Config) -> Iterator[OAuth2Provider]:
    """The real OAuth2 provider, signed in as ACCOUNT by a device sign-in at the IdP."""
    with OAuth2Provider(config, poll_interval_override=0.01) as made:
        made.finish_device_flow(made.start_device_flow(ACCOUNT))
        yield made


def reader(config: Config, provider: CredentialProvider) -> ImapInbox:
    inbox = open_inbox(config, provider, ACCOUNT)
    assert isinstance(inbox, ImapInbox)
    return inbox


async def read_all(config: Config, provider: CredentialProvider) -> list[bytes]:
    inbox = reader(config, provider)
    try:
        return [m.raw for m in (await inbox.fetch(None)).messages]
    finally:
        await inbox.close()


def subjects(raws: list[bytes]) -> list[str]:
    return [line.split(b": ", 1)[1].decode() for raw in raws for line in raw.splitlines()
            if line.startswith(b"Subject: ")]


# -- reading -------------------------------------------------------------------------------


def test_messages_are_read_with_xoauth2_and_the_cursor_advances(
    config: Config, provider: OAuth2Provider, dovecot: DovecotServer,
    idp: LocalIdentityProvider
) -> None:
    dovecot.append(ACCOUNT, "INBOX", message(1))
    dovecot.append(ACCOUNT, "INBOX", message(2))
    validity = dovecot.uidvalidity(ACCOUNT, "INBOX")

    async def scenario() -> None:
        inbox = reader(config, provider)
        try:
            first = await inbox.fetch(None)
            assert [m.raw for m in first.messages] == [message(1), message(2)]
            assert [m.id for m in first.messages] == [f"{validity}:1", f"{validity}:2"]
            assert first.cursor == f"{validity}:2"
            again = await inbox.fetch(first.cursor)
            assert again.messages == [] and again.cursor == first.cursor
            dovecot.append(ACCOUNT, "INBOX", message(3))
            later = await inbox.fetch(first.cursor)
            assert [m.raw for m in later.messages] == [message(3)]
            assert later.cursor == f"{validity}:3"
        finally:
            await inbox.close()

    asyncio.run(scenario())
    assert "method=XOAUTH2" in dovecot.log()
    assert idp.requests["introspect"] == 1  # one connection, kept between the reads
    # Read, not taken: the messages are still there.
    assert dovecot.messages(ACCOUNT, "INBOX") == [message(1), message(2), message(3)]


def test_limit_gives_the_oldest_first_and_the_rest_after(
    config: Config, provider: OAuth2Provider, dovecot: DovecotServer
) -> None:
    for n in range(1, 6):
        dovecot.append(ACCOUNT, "INBOX", message(n))

    async def scenario() -> list[list[str]]:
        inbox, cursor, seen = reader(config, provider), None, []
        try:
            for _ in range(4):
                batch = await inbox.fetch(cursor, limit=2)
                seen.append(subjects([m.raw for m in batch.messages]))
                cursor = batch.cursor
        finally:
            await inbox.close()
        return seen

    assert asyncio.run(scenario()) == [["Fax report 1", "Fax report 2"],
                                       ["Fax report 3", "Fax report 4"],
                                       ["Fax report 5"], []]


def test_a_restarted_reader_misses_nothing_that_arrived_meanwhile(
    config: Config, provider: OAuth2Provider, dovecot: DovecotServer
) -> None:
    dovecot.append(ACCOUNT, "INBOX", message(1))

    async def read(cursor: str | None) -> tuple[list[bytes], str]:
        inbox = reader(config, provider)
        try:
            batch = await inbox.fetch(cursor)
        finally:
            await inbox.close()
        return [m.raw for m in batch.messages], batch.cursor

    raws, saved = asyncio.run(read(None))
    assert raws == [message(1)]
    # The gateway is down; the server goes on receiving, and restarts too.
    dovecot.append(ACCOUNT, "INBOX", message(2))
    dovecot.stop()
    dovecot.start()
    dovecot.append(ACCOUNT, "INBOX", message(3))
    raws, _ = asyncio.run(read(saved))
    assert raws == [message(2), message(3)]


def test_a_dropped_connection_is_opened_again_by_itself(
    config: Config, provider: OAuth2Provider, dovecot: DovecotServer,
    idp: LocalIdentityProvider
) -> None:
    async def scenario() -> None:
        inbox = reader(config, provider)
        try:
            cursor = (await inbox.fetch(None)).cursor
            dovecot.stop()  # cuts the kept connection off
            dovecot.start()
            dovecot.append(ACCOUNT, "INBOX", message(1))
            batch = await inbox.fetch(cursor)
            assert [m.raw for m in batch.messages] == [message(1)]
            assert idp.requests["introspect"] == 2  # signed in again on a new connection
            cursor = batch.cursor
            dovecot.stop()
            with pytest.raises(ConnectError) as down:
                await inbox.fetch(cursor)
            assert down.value.code == codes.NO_CONNECTION
            dovecot.start()
            dovecot.append(ACCOUNT, "INBOX", message(2))
            batch = await inbox.fetch(cursor)
            assert [m.raw for m in batch.messages] == [message(2)]
        finally:
            await inbox.close()

    asyncio.run(scenario())


# -- moving processed messages ---------------------------------------------------------------


def _read_and_mark_first_two(config: Config, provider: CredentialProvider
                             ) -> tuple[list[str], list[bytes]]:
    async def scenario() -> tuple[list[str], list[bytes]]:
        inbox = reader(config, provider)
        try:
            batch = await inbox.fetch(None)
            await inbox.mark_done([m.id for m in batch.messages[:2]])
            again = await inbox.fetch(batch.cursor)
            assert again.messages == []  # moved messages are not read again
            fresh = await inbox.fetch(None)  # from the start: only what was left
            return [m.id for m in batch.messages], [m.raw for m in fresh.messages]
        finally:
            await inbox.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("with_move", [True, False], ids=["MOVE", "COPY-STORE-EXPUNGE"])
def test_mark_done_moves_to_the_done_folder_created_when_missing(
    tmp_path: Path, idp: LocalIdentityProvider, with_move: bool
) -> None:
    # Without MOVE advertised, faxgw copies, flags and expunges exactly those UIDs.
    capabilities = None if with_move else (
        "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE UIDPLUS CHILDREN")
    with DovecotServer(idp=idp, capabilities=capabilities) as server:
        config = make_config(tmp_path, idp, server, done_folder="Fax reports/done")
        for n in (1, 2, 3):
            server.append(ACCOUNT, "INBOX", message(n))
        assert "Fax reports/done" not in server.folders(ACCOUNT)
        with OAuth2Provider(config, poll_interval_override=0.01) as provider:
            provider.finish_device_flow(provider.start_device_flow(ACCOUNT))
            ids, left = _read_and_mark_first_two(config, provider)
        assert len(ids) == 3
        assert left == [message(3)]
        assert "Fax reports/done" in server.folders(ACCOUNT)
        assert server.messages(ACCOUNT, "Fax reports/done") == [message(1), message(2)]
        assert server.messages(ACCOUNT, "INBOX") == [message(3)]  # nothing deleted


def test_ids_of_an_older_uidvalidity_are_never_moved_and_a_new_one_restarts(
    tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer,
    provider: OAuth2Provider, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, idp, dovecot, folder="Reports")
    dovecot.append(ACCOUNT, "Reports", message(1))
    dovecot.append(ACCOUNT, "Reports", message(2))
    old = dovecot.uidvalidity(ACCOUNT, "Reports")

    async def scenario() -> None:
        inbox = reader(config, provider)
        try:
            batch = await inbox.fetch(None)
            assert batch.cursor == f"{old}:2"
            # The mailbox is restored elsewhere: a new UIDVALIDITY, UIDs counted from 1.
            dovecot.recreate(ACCOUNT, "Reports")
            dovecot.append(ACCOUNT, "Reports", message(3))
            new = dovecot.uidvalidity(ACCOUNT, "Reports")
            assert new != old
            await inbox.mark_done([m.id for m in batch.messages])  # the old UID 1 is not #3
            assert dovecot.messages(ACCOUNT, "Reports") == [message(3)]
            with caplog.at_level(logging.WARNING, logger="faxgw.inbox"):
                restarted = await inbox.fetch(batch.cursor)
            assert [m.raw for m in restarted.messages] == [message(3)]
            assert [m.id for m in restarted.messages] == [f"{new}:1"]
            assert restarted.cursor == f"{new}:1"
        finally:
            await inbox.close()

    asyncio.run(scenario())
    assert any("UIDVALIDITY changed" in r.getMessage() for r in caplog.records)
    assert "faxgw" not in dovecot.folders(ACCOUNT)


# -- refusals --------------------------------------------------------------------------------


def test_a_refused_token_is_refreshed_once(
    config: Config, provider: OAuth2Provider, dovecot: DovecotServer,
    idp: LocalIdentityProvider
) -> None:
    dovecot.append(ACCOUNT, "INBOX", message(1))
    asyncio.run(read_all(config, provider))  # msal now holds an IMAP token in its cache
    before = idp.requests.copy()
    idp.advance(3700)  # the IdP (and so Dovecot) hold that token for expired; msal does not
    assert asyncio.run(read_all(config, provider)) == [message(1)]
    assert idp.requests["refresh_token"] - before["refresh_token"] == 1
    assert idp.requests["introspect"] - before["introspect"] == 2  # refused, then accepted


def test_a_token_refused_again_after_the_refresh_is_370_without_the_token(
    config: Config, provider: OAuth2Provider, dovecot: DovecotServer,
    idp: LocalIdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(read_all(config, provider))
    before = idp.requests.copy()
    idp.advance(3700)
    idp.access_token_lifetime = 0  # the refreshed token is dead on arrival as well
    # Everything logged, aioimaplib's own debug lines included, is checked for secrets.
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as refused:
        asyncio.run(read_all(config, provider))
    assert refused.value.code == codes.SIGN_IN_AGAIN
    assert idp.requests["refresh_token"] - before["refresh_token"] == 1  # once, not a loop
    assert idp.requests["introspect"] - before["introspect"] == 2
    assert "faxgw auth login --account fax@contoso.com" in str(refused.value)
    text = str(refused.value) + caplog.text
    tokens = idp.issued_tokens()
    assert len(tokens) == 3  # the sign-in's (SMTP), the first IMAP one, the refreshed one
    assert not any(token[:40] in text for token in tokens)
    assert "AUTHENTICATE" in caplog.text  # the debug lines were there to be checked


def test_a_token_without_the_imap_scope_is_refused(
    tmp_path: Path, idp: LocalIdentityProvider
) -> None:
    """Dovecot asks for IMAP.AccessAsUser.All: the token faxgw gets for IMAP holds it (one for
    SMTP would not): proven by a server that wants the SMTP scope instead."""
    with DovecotServer(idp=idp, scope=SMTP_SCOPE) as server:
        config = make_config(tmp_path, idp, server)
        with OAuth2Provider(config, poll_interval_override=0.01) as provider:
            provider.finish_device_flow(provider.start_device_flow(ACCOUNT))
            with pytest.raises(AuthError) as refused:
                asyncio.run(read_all(config, provider))
    assert refused.value.code == codes.SIGN_IN_AGAIN


def test_password_sign_in_and_a_wrong_password(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    def config_with(password: str) -> Config:
        (tmp_path / "imap-password").write_text(password + "\n")
        return config_from_dict({
            "auth": {"method": "password", "username": PASSWORD_USER,
                     "password_file": str(tmp_path / "imap-password")},
            "inbox": {"method": "imap", "host": dovecot.host, "port": dovecot.port,
                      "ca_file": str(dovecot.ca_file)},
        }, base=tmp_path)

    dovecot.append(PASSWORD_USER, "INBOX", message(1))

    async def read(config: Config) -> list[bytes]:
        inbox = open_inbox(config, make_provider(config), PASSWORD_USER)
        assert inbox is not None
        try:
            return [m.raw for m in (await inbox.fetch(None)).messages]
        finally:
            await inbox.close()

    assert asyncio.run(read(config_with(PASSWORD))) == [message(1)]
    with pytest.raises(AuthError) as refused:
        asyncio.run(read(config_with("not the password")))
    assert refused.value.code == codes.AUTH_REJECTED
    assert "not the password" not in str(refused.value)


def test_a_certificate_from_another_ca_is_360_and_says_so(
    tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer,
    provider: OAuth2Provider
) -> None:
    config = make_config(tmp_path, idp, dovecot, ca_file=str(idp.ca_file))
    with pytest.raises(ConnectError) as untrusted:
        asyncio.run(read_all(config, provider))
    assert untrusted.value.code == codes.NO_CONNECTION
    assert "not trusted" in str(untrusted.value) and "ca_file" in str(untrusted.value)


def test_a_server_that_is_not_there_is_360(
    tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer,
    provider: OAuth2Provider
) -> None:
    config = make_config(tmp_path, idp, dovecot)
    dovecot.stop()
    with pytest.raises(ConnectError) as down:
        asyncio.run(read_all(config, provider))
    assert down.value.code == codes.NO_CONNECTION
    assert f"localhost:{dovecot.port}" in str(down.value)


def test_a_folder_that_does_not_exist_is_a_config_error(
    tmp_path: Path, idp: LocalIdentityProvider, dovecot: DovecotServer,
    provider: OAuth2Provider
) -> None:
    config = make_config(tmp_path, idp, dovecot, folder="Faxberichte")
    with pytest.raises(ConfigError, match="Faxberichte"):
        asyncio.run(read_all(config, provider))


# -- choosing the reader ---------------------------------------------------------------------


def test_open_inbox_follows_the_method(tmp_path: Path) -> None:
    def config(method: str) -> Config:
        return config_from_dict({"inbox": {"method": method}}, base=tmp_path)

    provider = make_provider(config("none"))
    assert open_inbox(config("none"), provider, ACCOUNT) is None
    assert isinstance(open_inbox(config("imap"), provider, ACCOUNT), ImapInbox)
    with pytest.raises(ConfigError, match="Graph"):
        open_inbox(config("graph"), provider, ACCOUNT)
