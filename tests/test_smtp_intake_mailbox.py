"""Which mailbox a device's fax leaves from: a device user whose mailbox is signed in ("Send as
me", through the local identity provider) sends as that mailbox; any other user as the
gateway's own. The real listener with STARTTLS and AUTH, the real sign-in, the Exchange-like
test SMTP server that takes only XOAUTH2 tokens the identity provider issued."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgw.app import signin
from faxgw.app.devices import device_mailbox, mailbox_for
from faxgw.app.wiring import build_worker, make_credentials, store_open
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, config_from_dict
from faxgw.devices import Mailbox
from faxgw.devices.users import set_user
from faxgw.domain.jobs import Job, JobState
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.testing.smtp_ledger import Received
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, MakeConfig
from .test_oauth_delivery import ACCOUNT, CLIENT_ID, OTHER, SCOPE, STRANGER
from .test_smtp_intake import DEVICE, Listener, _message, _tls_files

#: Every device user's password (each user has its own in real life; here it does not matter).
SECRET = "device-password-0815"
SCANNER = "scanner-2f"  # a device name, not a mailbox


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.device_interval = 0
        yield server


@pytest.fixture
def exchange(idp: LocalIdentityProvider) -> Iterator[FaxSMTPServer]:
    """Exchange's front door: STARTTLS, then XOAUTH2 with tokens this IdP issued."""
    with FaxSMTPServer(tls="starttls", token_validator=idp.validate) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, idp: LocalIdentityProvider, exchange: FaxSMTPServer) -> Config:
    certificate, key, _ = _tls_files(tmp_path)
    users = tmp_path / "intake-users"
    for name in (OTHER, STRANGER, SCANNER):
        set_user(users, name, SECRET)
    return config_from_dict({
        "spool": {"dir": "spool", "settle_seconds": 0},
        "service": {"address": "{e164}@fax.example.net", "region": "DE"},
        "smtp": {"host": exchange.host, "port": exchange.port, "ca_file": str(exchange.ca_file),
                 "sender": ACCOUNT, "timeout_seconds": 10},
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                 "ca_file": str(idp.ca_file), "token_cache": "spool/state/tokens.json",
                 "http_timeout_seconds": 5},
        "web": {"user_domains": ["contoso.com"]},
        "intake": {"smtp": {"listen": "127.0.0.1:0", "domain": "fax.local",
                            "auth": "password", "users_file": str(users),
                            "certificate_file": str(certificate), "key_file": str(key)}},
    }, base=tmp_path)


def _sign_in_the_gateway(config: Config, idp: LocalIdentityProvider) -> None:
    """``faxgw auth login``: the gateway's own mailbox."""
    idp.auto_approve_account = ACCOUNT
    with OAuth2Provider(config, poll_interval_override=0) as provider:
        assert provider.finish_device_flow(provider.start_device_flow(ACCOUNT)) == ACCOUNT


def _send_as_me(config: Config, idp: LocalIdentityProvider, account: str) -> None:
    """The console's "Send as me": the person signs in with their own mailbox."""
    idp.auto_approve_account = account
    with signin.start_user_sign_in(config) as sign_in:
        assert sign_in.finish() == account


def _fax_from(listener: Listener, ca_file: Path, user: str, number: str,
              document: Path) -> None:
    """A device that authenticates as ``user`` sends a scan to ``number``."""
    with listener.smtp() as client:
        client.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
        client.login(user, SECRET)
        message = _message("", (document, "application", "pdf"))
        assert client.send_message(message, DEVICE, [f"{number}@fax.local"]) == {}


def _sent_by_number(config: Config, server: FaxSMTPServer) -> dict[str, Received]:
    """Send what is due once; what ``server`` received, by fax number."""
    worker = build_worker(config)
    try:
        asyncio.run(worker.run_once())
    finally:
        worker.close()
    return {received.rcpt_tos[0].partition("@")[0]: received for received in server.messages}


def _jobs(config: Config) -> dict[str, Job]:
    with store_open(config) as store:
        return {job.number: job for job in store.list_jobs()}


def test_a_signed_in_user_sends_as_their_mailbox_and_others_as_the_gateway(
    config: Config, idp: LocalIdentityProvider, exchange: FaxSMTPServer, samples: Path,
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _sign_in_the_gateway(config, idp)
    _send_as_me(config, idp, OTHER)
    ca_file = tmp_path / "ca.pem"
    credentials = make_credentials(config)
    try:
        with Listener(config, mailbox_for(config, credentials)) as listener:
            _fax_from(listener, ca_file, OTHER, "+4930123451", samples / "letter.pdf")
            _fax_from(listener, ca_file, STRANGER, "+4930123452", samples / "letter.pdf")
            _fax_from(listener, ca_file, SCANNER, "+4930123453", samples / "letter.pdf")
    finally:
        credentials.close()
    jobs = _jobs(config)
    mine, strangers, scanners = (jobs[f"+493012345{n}"] for n in (1, 2, 3))
    assert (mine.sender, mine.state) == (OTHER, JobState.QUEUED)
    assert mine.source.endswith(f", user {OTHER}")
    # Never signed in, not in allowed_senders: the gateway's mailbox, as for a device name.
    assert (strangers.sender, scanners.sender) == (ACCOUNT, ACCOUNT)
    assert scanners.source.endswith(f", user {SCANNER}")
    assert all(job.notify == DEVICE for job in jobs.values())

    by_number = _sent_by_number(config, exchange)
    assert len(by_number) == 3
    for number, account in (("+4930123451", OTHER), ("+4930123452", ACCOUNT),
                            ("+4930123453", ACCOUNT)):
        received = by_number[number]
        # Signed in as that mailbox with its own token, and From it.
        assert (received.auth_mechanism, received.auth_user, received.mail_from) == (
            "XOAUTH2", account, account)
        assert received.message["From"] == account
    assert all(job.state is JobState.SENT for job in _jobs(config).values())
    assert SECRET not in caplog.text


def test_a_user_whose_send_as_me_domain_is_no_longer_allowed_sends_as_the_gateway(
    config: Config, idp: LocalIdentityProvider
) -> None:
    _sign_in_the_gateway(config, idp)
    _send_as_me(config, idp, OTHER)
    with OAuth2Provider(config) as credentials:
        assert device_mailbox(config, credentials, OTHER) == Mailbox(OTHER, signed_in=True)
        assert device_mailbox(config, credentials, OTHER.upper()) == Mailbox(OTHER, True)
        # The administrator turned "Send as me" off: the sign-in no longer counts.
        closed = config.model_copy(update={"web": config.web.model_copy(
            update={"user_domains": []})})
        assert device_mailbox(closed, credentials, OTHER) == Mailbox()
        assert device_mailbox(config, credentials, SCANNER) == Mailbox()
        # The gateway's own account is the gateway's mailbox, whoever authenticates as it.
        assert device_mailbox(config, credentials, ACCOUNT) == Mailbox(ACCOUNT)


def test_allowed_senders_lets_a_user_send_as_their_address_without_a_sign_in(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, tmp_path: Path
) -> None:
    certificate, key, ca_file = _tls_files(tmp_path)
    users = tmp_path / "intake-users"
    for name in (STRANGER, OTHER):
        set_user(users, name, SECRET)
    config = make_config(smtp_server, intake={
        "allowed_senders": [STRANGER],
        "smtp": {"listen": "127.0.0.1:0", "domain": "fax.local", "auth": "password",
                 "users_file": str(users), "certificate_file": str(certificate),
                 "key_file": str(key)}})
    credentials = make_credentials(config)  # a password: nobody signs in
    try:
        with Listener(config, mailbox_for(config, credentials)) as listener:
            _fax_from(listener, ca_file, STRANGER, "+4930123451", samples / "letter.pdf")
            _fax_from(listener, ca_file, OTHER, "+4930123452", samples / "letter.pdf")
    finally:
        credentials.close()
    jobs = _jobs(config)
    assert jobs["+4930123451"].sender == STRANGER
    assert jobs["+4930123452"].sender == USER  # not listed: the gateway's mailbox
    sent = _sent_by_number(config, smtp_server)
    assert sent["+4930123451"].message["From"] == STRANGER
    assert sent["+4930123452"].message["From"] == USER
    assert all(received.auth_user == USER for received in sent.values())
    assert PASSWORD not in "".join(str(received.message) for received in sent.values())
