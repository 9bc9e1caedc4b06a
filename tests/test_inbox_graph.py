"""Reading the sending mailbox through Microsoft Graph against the real test Graph server and
the real test identity provider.

msal gets the tokens from the identity provider (a device sign-in, or app-only with a
certificate); the Graph server checks each bearer token with the identity provider and wants
``Mail.ReadWrite`` for reading mail. Tests deliver mail into the mailbox's Inbox with
``LocalGraph.deliver``; the reader follows real delta links over real HTTPS. Nothing is
mocked: faults are real answers of the server (throttling, an access policy, an expired delta
link) or real conditions (a certificate from another CA).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faxgw.app.reports import Checker
from faxgw.app.submit import submit
from faxgw.app.wiring import build_worker, open_store
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, config_from_dict
from faxgw.domain import codes
from faxgw.domain.errors import AuthError, ConfigError, ConnectError, TransientError
from faxgw.domain.jobs import JobState
from faxgw.inbox import GraphInbox, open_inbox
from faxgw.ports import CredentialProvider, Credentials, Resource
from faxgw.testing.graph_server import LocalGraph
from faxgw.testing.idp import LocalIdentityProvider
from tests import report_fixtures as fx

from .certificates import app_certificate

ACCOUNT = "fax@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
READ_WRITE = "https://graph.microsoft.com/Mail.ReadWrite"
SEND = "https://graph.microsoft.com/Mail.Send"


def message(n: int) -> bytes:
    # CRLF and a trailing space: the bytes must come back exactly as delivered.
    return (f"From: fax-service@fax.example.net\r\nTo: {ACCOUNT}\r\n"
            f"Subject: Fax report {n} \r\nMessage-ID: <report-{n}@fax.example.net>\r\n\r\n"
            f"Your fax {n} was delivered.\r\n").encode()


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        yield server


@pytest.fixture
def graph(idp: LocalIdentityProvider, tmp_path: Path) -> Iterator[LocalGraph]:
    with LocalGraph(idp.token_record, directory=tmp_path) as server:
        yield server


def make_config(tmp_path: Path, idp: LocalIdentityProvider, server: LocalGraph,
                **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "spool": {"dir": str(tmp_path / "spool"), "settle_seconds": 0},
        "service": {"address": "{e164}@fax.example.net", "region": "DE"},
        # Switched off: nothing listens on port 9; everything goes through Graph.
        "smtp": {"host": "127.0.0.1", "port": 9, "sender": ACCOUNT, "timeout_seconds": 2},
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": ["https://outlook.office.com/SMTP.Send"], "client_id": CLIENT_ID,
                 "account": ACCOUNT, "ca_file": str(idp.ca_file), "http_timeout_seconds": 5,
                 "token_cache": str(tmp_path / "spool" / "state" / "tokens.json")},
        "transport": {"kind": "graph"},
        "graph": {"endpoint": server.base_url, "ca_file": str(server.ca_file)},
        "inbox": {"method": "graph"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw, base=tmp_path)


@pytest.fixture
def config(tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph) -> Config:
    return make_config(tmp_path, idp, graph)


@pytest.fixture
def provider(config: Config) -> Iterator[OAuth2Provider]:
    """The real OAuth2 provider, signed in as ACCOUNT by a device sign-in at the IdP."""
    with OAuth2Provider(config, poll_interval_override=0.01) as made:
        made.finish_device_flow(made.start_device_flow(ACCOUNT))
        yield made


def reader(config: Config, provider: CredentialProvider) -> GraphInbox:
    inbox = open_inbox(config, provider, ACCOUNT)
    assert isinstance(inbox, GraphInbox)
    return inbox


async def read(config: Config, provider: CredentialProvider, cursor: str | None = None,
               limit: int = 100) -> tuple[list[bytes], str]:
    inbox = reader(config, provider)
    try:
        batch = await inbox.fetch(cursor, limit=limit)
    finally:
        await inbox.close()
    return [m.raw for m in batch.messages], batch.cursor


# -- signing in ------------------------------------------------------------------------------


def test_login_asks_consent_for_reading_too_when_the_inbox_is_graph(
    tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph, provider: OAuth2Provider
) -> None:
    [signed_in] = idp.issued_tokens()
    record = idp.token_record(signed_in)
    assert record is not None and set(record.scopes) == {SEND, READ_WRITE}
    # Without the Graph inbox, the sign-in asks for sending only.
    other = make_config(tmp_path / "other", idp, graph, inbox={"method": "none"})
    with OAuth2Provider(other) as plain:
        assert plain.sign_in_scopes() == (SEND,)


# -- reading ---------------------------------------------------------------------------------


def test_messages_are_read_oldest_first_with_their_bytes_and_the_cursor_advances(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    graph.mail.page_size = 2  # three messages: two pages joined by a nextLink
    ids = [graph.deliver(ACCOUNT, message(n)) for n in (1, 2, 3)]

    async def scenario() -> None:
        inbox = reader(config, provider)
        try:
            first = await inbox.fetch(None)
            assert [m.raw for m in first.messages] == [message(1), message(2), message(3)]
            assert [m.id for m in first.messages] == ids
            assert first.cursor.startswith(f"{graph.base_url}/v1.0/users/{ACCOUNT}/")
            assert "$deltatoken=" in first.cursor
            again = await inbox.fetch(first.cursor)
            assert again.messages == [] and again.cursor.startswith(graph.base_url)
            graph.deliver(ACCOUNT, message(4))
            later = await inbox.fetch(first.cursor)
            assert [m.raw for m in later.messages] == [message(4)]
            assert (await inbox.fetch(later.cursor)).messages == []
        finally:
            await inbox.close()

    asyncio.run(scenario())
    # Read, not taken: the messages are still in the Inbox.
    assert graph.mail.folder(ACCOUNT, "inbox") == [message(n) for n in (1, 2, 3, 4)]
    assert {scheme for _, _, scheme in graph.requests} == {"Bearer"}


def test_a_new_reader_from_the_saved_cursor_misses_nothing_delivered_meanwhile(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    graph.deliver(ACCOUNT, message(1))
    raws, saved = asyncio.run(read(config, provider))
    assert raws == [message(1)]
    # The gateway is down; the mailbox goes on receiving.
    graph.deliver(ACCOUNT, message(2))
    graph.deliver(ACCOUNT, message(3))
    raws, after = asyncio.run(read(config, provider, saved))
    assert raws == [message(2), message(3)]
    assert asyncio.run(read(config, provider, after))[0] == []


def test_limit_gives_the_oldest_first_and_the_rest_after(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    for n in range(1, 6):
        graph.deliver(ACCOUNT, message(n))
    seen, cursor = [], None
    for _ in range(4):
        raws, next_cursor = asyncio.run(read(config, provider, cursor, limit=2))
        # Reading from the same cursor again gives the same messages.
        assert asyncio.run(read(config, provider, cursor, limit=2))[0] == raws
        seen.append(raws)
        cursor = next_cursor
    assert seen == [[message(1), message(2)], [message(3), message(4)], [message(5)], []]
    assert cursor is not None and cursor.startswith(graph.base_url)  # a plain delta link again


def test_mark_done_moves_into_the_done_folder_made_once(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    for n in (1, 2, 3):
        graph.deliver(ACCOUNT, message(n))

    async def scenario() -> None:
        inbox = reader(config, provider)
        try:
            first = await inbox.fetch(None)
            await inbox.mark_done([m.id for m in first.messages[:2]])
            assert graph.mail.folder(ACCOUNT, "faxgw") == [message(1), message(2)]
            assert graph.mail.folder(ACCOUNT, "inbox") == [message(3)]
            graph.deliver(ACCOUNT, message(4))
            # The moves show in the delta as removals: skipped, only the new one is read.
            later = await inbox.fetch(first.cursor)
            assert [m.raw for m in later.messages] == [message(4)]
            # A message moved already (by an earlier round) is no error.
            await inbox.mark_done([first.messages[0].id, first.messages[2].id,
                                   later.messages[0].id])
        finally:
            await inbox.close()

    asyncio.run(scenario())
    assert graph.mail.folder(ACCOUNT, "faxgw") == [message(n) for n in (1, 2, 3, 4)]
    assert graph.mail.folder(ACCOUNT, "inbox") == []
    assert graph.mail.folder_names(ACCOUNT) == ["Inbox", "faxgw"]
    made = [path for method, path, _ in graph.requests
            if method == "POST" and path.endswith("/mailFolders")]
    assert len(made) == 1


def test_an_existing_done_folder_is_used(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    graph.deliver(ACCOUNT, message(1))

    async def scenario() -> None:
        first = reader(config, provider)
        try:
            batch = await first.fetch(None)
            await first.mark_done([m.id for m in batch.messages])
        finally:
            await first.close()
        graph.deliver(ACCOUNT, message(2))
        second = reader(config, provider)  # knows nothing of the folder made before
        try:
            batch = await second.fetch(batch.cursor)
            await second.mark_done([m.id for m in batch.messages])
        finally:
            await second.close()

    asyncio.run(scenario())
    assert graph.mail.folder(ACCOUNT, "faxgw") == [message(1), message(2)]
    assert graph.mail.folder_names(ACCOUNT) == ["Inbox", "faxgw"]


def test_an_expired_delta_link_starts_a_new_sync(
    config: Config, provider: OAuth2Provider, graph: LocalGraph,
    caplog: pytest.LogCaptureFixture
) -> None:
    graph.deliver(ACCOUNT, message(1))
    graph.deliver(ACCOUNT, message(2))

    async def scenario() -> list[bytes]:
        inbox = reader(config, provider)
        try:
            first = await inbox.fetch(None)
            await inbox.mark_done([first.messages[0].id])  # 1 was used, 2 was not
            graph.deliver(ACCOUNT, message(3))
            graph.mail.expire_delta_links()
            with caplog.at_level(logging.WARNING, logger="faxgw.inbox"):
                again = await inbox.fetch(first.cursor)
            assert (await inbox.fetch(again.cursor)).messages == []
            return [m.raw for m in again.messages]
        finally:
            await inbox.close()

    # What is still in the Inbox is read again (the report store knows it); the used one is
    # in the done folder and is not.
    assert asyncio.run(scenario()) == [message(2), message(3)]
    assert any("no longer knows the delta link" in r.getMessage() for r in caplog.records)


def test_a_cursor_of_another_reader_starts_a_new_sync(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    graph.deliver(ACCOUNT, message(1))
    # An IMAP cursor (the method was imap before), and a link to another host: never followed.
    for cursor in ("1700000000:42", "https://graph.example.org/v1.0/users/x/delta?$deltatoken=1"):
        assert asyncio.run(read(config, provider, cursor))[0] == [message(1)]


def test_another_folder_is_found_by_name_or_refused(
    tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph, provider: OAuth2Provider
) -> None:
    config = make_config(tmp_path, idp, graph, inbox={"method": "graph", "folder": "Reports"})
    with pytest.raises(ConfigError, match="no top-level folder 'Reports'"):
        asyncio.run(read(config, provider))


# -- refusals and faults -----------------------------------------------------------------------


def test_an_expired_token_is_replaced_once(
    config: Config, provider: OAuth2Provider, graph: LocalGraph, idp: LocalIdentityProvider
) -> None:
    graph.deliver(ACCOUNT, message(1))
    asyncio.run(read(config, provider))
    before = idp.requests.copy()
    idp.advance(3700)  # the IdP (and so Graph) hold the token for expired; msal does not
    assert asyncio.run(read(config, provider))[0] == [message(1)]
    assert idp.requests["refresh_token"] - before["refresh_token"] == 1


def test_a_token_refused_after_the_refresh_is_370_without_the_token(
    config: Config, provider: OAuth2Provider, idp: LocalIdentityProvider,
    caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(read(config, provider))
    idp.advance(3700)
    idp.access_token_lifetime = 0  # the refreshed token is dead on arrival as well
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as refused:
        asyncio.run(read(config, provider))
    assert refused.value.code == codes.SIGN_IN_AGAIN
    text = str(refused.value) + caplog.text
    assert not any(token[:40] in text for token in idp.issued_tokens())


def test_an_app_without_mail_readwrite_is_refused_with_373(
    tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph,
    caplog: pytest.LogCaptureFixture
) -> None:
    key_file, certificate_pem, _ = app_certificate(tmp_path)
    idp.add_client_certificate(CLIENT_ID, certificate_pem)
    config = make_config(tmp_path, idp, graph, auth={
        "flow": "client_credentials", "client_certificate_file": str(key_file)})
    graph.deliver(ACCOUNT, message(1))
    graph.read_write = False  # the app has Mail.Send only
    with OAuth2Provider(config) as app, caplog.at_level(logging.DEBUG), \
            pytest.raises(AuthError) as refused:
        asyncio.run(read(config, app))
    assert refused.value.code == codes.CONSENT_MISSING
    assert "Mail.ReadWrite" in str(refused.value)
    text = str(refused.value) + caplog.text
    assert idp.issued_tokens() and not any(t[:40] in text for t in idp.issued_tokens())
    # Granted: the same app reads.
    graph.read_write = True
    with OAuth2Provider(config) as app:
        assert asyncio.run(read(config, app))[0] == [message(1)]


class SendOnly:
    """The real provider, but handing out its sending token (``Mail.Send`` only) whatever is
    asked: what a reader would hold if it asked for the wrong scope."""

    def __init__(self, provider: OAuth2Provider) -> None:
        self.provider = provider

    async def credentials(self, account: str, *, resource: Resource = Resource.SMTP,
                          force_refresh: bool = False) -> Credentials:
        return await self.provider.credentials(account, resource=Resource.GRAPH,
                                               force_refresh=force_refresh)


def test_a_delegated_token_without_mail_readwrite_is_refused_with_373(
    tmp_path: Path, graph: LocalGraph, idp: LocalIdentityProvider,
    caplog: pytest.LogCaptureFixture
) -> None:
    # Signed in for sending only (no Graph inbox): the token holds Mail.Send alone.
    config = make_config(tmp_path, idp, graph, inbox={"method": "none"})
    with OAuth2Provider(config, poll_interval_override=0.01) as sender:
        sender.finish_device_flow(sender.start_device_flow(ACCOUNT))
        handed = asyncio.run(SendOnly(sender).credentials(ACCOUNT)).secret
        record = idp.token_record(handed)
        assert record is not None and record.scopes == (SEND,)

        async def scenario() -> None:
            inbox = GraphInbox(config, SendOnly(sender), ACCOUNT)  # type: ignore[arg-type]
            try:
                await inbox.fetch(None)
            finally:
                await inbox.close()

        with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as refused:
            asyncio.run(scenario())
    assert refused.value.code == codes.CONSENT_MISSING
    assert "Mail.ReadWrite" in str(refused.value)
    text = str(refused.value) + caplog.text
    assert not any(t[:40] in text for t in idp.issued_tokens())


@pytest.mark.parametrize(("status", "error", "text", "code"), [
    (403, "ErrorAccessDenied", "Access to OData is disabled.", codes.APP_ACCESS_POLICY),
    (404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or "
     "is hosted on-premise.", codes.MAILBOX_NOT_ON_GRAPH),
])
def test_a_mailbox_graph_keeps_the_app_out_of(
    config: Config, provider: OAuth2Provider, graph: LocalGraph,
    status: int, error: str, text: str, code: int
) -> None:
    graph.refuse(ACCOUNT, status, error, text)
    with pytest.raises(AuthError) as refused:
        asyncio.run(read(config, provider))
    assert refused.value.code == code and error in str(refused.value)


def test_throttling_is_380_with_graphs_retry_after(
    config: Config, provider: OAuth2Provider, graph: LocalGraph
) -> None:
    graph.deliver(ACCOUNT, message(1))
    graph.mail.fail(429, "ApplicationThrottled", "Too many requests.",
                    headers={"Retry-After": "17"})
    with pytest.raises(TransientError) as throttled:
        asyncio.run(read(config, provider))
    assert throttled.value.code == codes.TRY_LATER and throttled.value.retry_after == 17
    assert "Retry-After 17 s" in str(throttled.value)
    assert asyncio.run(read(config, provider))[0] == [message(1)]  # passed


def test_a_certificate_from_another_ca_is_no_connection(
    tmp_path: Path, idp: LocalIdentityProvider, graph: LocalGraph, provider: OAuth2Provider
) -> None:
    config = make_config(tmp_path, idp, graph, graph={"ca_file": str(idp.ca_file)})
    with pytest.raises(ConnectError) as refused:
        asyncio.run(read(config, provider))
    assert refused.value.code == codes.NO_CONNECTION and "ca_file" in str(refused.value)


def test_graph_needs_oauth2(tmp_path: Path, idp: LocalIdentityProvider,
                           graph: LocalGraph) -> None:
    config = make_config(tmp_path, idp, graph, auth={"method": "none"})
    with OAuth2Provider(make_config(tmp_path, idp, graph)) as unused, \
            pytest.raises(ConfigError, match='needs \\[auth\\] method = "oauth2"'):
        open_inbox(config, unused, ACCOUNT)


# -- end to end ------------------------------------------------------------------------------


def test_a_bounce_read_through_graph_fails_its_job_with_546(
    config: Config, provider: OAuth2Provider, graph: LocalGraph, samples: Path
) -> None:
    job = submit(config, "+49301234562", [samples / "note.txt"])
    worker = build_worker(config)
    try:
        asyncio.run(worker.run_once())
    finally:
        worker.close()
    store = open_store(config)
    try:
        sent = store.get(job.id)
    finally:
        store.close()
    assert sent.state is JobState.SENT and sent.message_id and len(graph.messages) == 1
    bounce, newsletter = fx.mta_dsn(sent.id, sent.message_id, sent.number), fx.newsletter()
    graph.deliver(ACCOUNT, bounce)
    graph.deliver(ACCOUNT, newsletter)

    async def round_() -> None:
        checker = Checker(config, credentials=provider)
        try:
            summary = await checker.round()
        finally:
            await checker.close()
        assert summary.poll is not None
        assert (summary.poll.seen, summary.poll.matched, summary.poll.unmatched) == (2, 1, 1)

    asyncio.run(round_())
    store = open_store(config)
    try:
        failed = store.get(job.id)
    finally:
        store.close()
    assert (failed.state, failed.code) == (JobState.FAILED, codes.BOUNCED)
    # The bounce was used and moved; the newsletter stays where it was.
    assert graph.mail.folder(ACCOUNT, "faxgw") == [bounce]
    assert graph.mail.folder(ACCOUNT, "inbox") == [newsletter]
