"""OAuth2Provider against the local identity provider: msal itself talks HTTPS to it.

Nothing here mocks msal, requests or the filesystem: the switches are on the identity provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests

from faxgw.auth import make_provider
from faxgw.auth.device_flow import PollEvent, SignInCancelled
from faxgw.auth.errors_map import OAuth2Error
from faxgw.auth.oauth2 import OAuth2Provider, settings_from_config
from faxgw.auth.token_cache import write_atomic
from faxgw.config import Config, config_from_dict
from faxgw.domain import codes
from faxgw.domain.errors import AuthError, ConfigError, ConnectError
from faxgw.domain.signin import EXPIRED, SIGN_IN_NEEDED, SIGNED_IN
from faxgw.testing.idp import LocalIdentityProvider

from .certificates import app_certificate, as_pkcs12, encrypted_pem

ACCOUNT = "fax@contoso.com"
OTHER = "reception@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SCOPE = "https://outlook.office.com/SMTP.Send"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    """A running identity provider that approves every device code as ACCOUNT."""
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        yield server


def oauth_config(tmp_path: Path, idp: LocalIdentityProvider, **auth: Any) -> Config:
    """``[auth]`` for the local identity provider; keywords override."""
    raw: dict[str, Any] = {
        "method": "oauth2", "provider": "custom", "authority": idp.authority,
        "scopes": [SCOPE], "client_id": CLIENT_ID, "ca_file": str(idp.ca_file),
        "token_cache": str(tmp_path / "state" / "tokens.json"), "account": ACCOUNT,
        "http_timeout_seconds": 5,
    }
    raw.update(auth)
    return config_from_dict({"auth": raw}, base=tmp_path)


def new_provider(config: Config, **options: Any) -> OAuth2Provider:
    options.setdefault("poll_interval_override", 0.01)
    options.setdefault("slow_down_seconds", 0.05)
    return OAuth2Provider(config, **options)


@pytest.fixture
def provider(tmp_path: Path, idp: LocalIdentityProvider) -> Iterator[OAuth2Provider]:
    with new_provider(oauth_config(tmp_path, idp)) as made:
        yield made


def sign_in(provider: OAuth2Provider, account: str | None = ACCOUNT,
            events: list[PollEvent] | None = None) -> str:
    flow = provider.start_device_flow(account)
    return provider.finish_device_flow(flow, on_poll=None if events is None else events.append)


# -- sign-in --------------------------------------------------------------------------------


def test_first_sign_in_waits_while_pending_then_stores_tokens(
    provider: OAuth2Provider, idp: LocalIdentityProvider, tmp_path: Path
) -> None:
    idp.device_script = ["authorization_pending", "authorization_pending"]
    events: list[PollEvent] = []
    assert sign_in(provider, events=events) == ACCOUNT
    assert [e.answer for e in events] == ["authorization_pending"] * 2
    assert idp.requests["device_code"] == 3
    assert provider.accounts() == [ACCOUNT]
    cache = tmp_path / "state" / "tokens.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert [s.state for s in provider.status()] == [SIGNED_IN]


def test_slow_down_adds_to_the_interval_for_later_polls(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    idp.device_script = ["slow_down", "authorization_pending"]
    events: list[PollEvent] = []
    sign_in(provider, events=events)
    assert [(e.answer, round(e.interval, 3)) for e in events] == [
        ("slow_down", 0.06), ("authorization_pending", 0.06)]
    polls = [at for at, _ in idp.poll_log]
    assert polls[1] - polls[0] >= 0.06 and polls[2] - polls[1] >= 0.06


@pytest.mark.parametrize("outcome", ["expired_token", "authorization_declined",
                                     "bad_verification_code"])
def test_failed_device_sign_in_stores_nothing(
    provider: OAuth2Provider, idp: LocalIdentityProvider, outcome: str
) -> None:
    idp.device_outcome = outcome
    with pytest.raises(OAuth2Error) as caught:
        sign_in(provider)
    assert caught.value.code == codes.SIGN_IN_AGAIN
    assert caught.value.oauth_error == outcome
    assert "signing in failed" in str(caught.value)
    assert provider.accounts() == []


def test_code_expiring_at_the_provider_while_waiting(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    idp.device_outcome = "pending"
    flow = provider.start_device_flow(ACCOUNT)
    with pytest.raises(OAuth2Error, match="expired before it was used") as caught:
        provider.finish_device_flow(flow, on_poll=lambda event: idp.advance(901))
    assert caught.value.aadsts == 70019


def test_ctrl_c_cancels_cleanly(provider: OAuth2Provider, idp: LocalIdentityProvider) -> None:
    idp.device_outcome = "pending"

    def interrupt(event: PollEvent) -> None:
        raise KeyboardInterrupt

    flow = provider.start_device_flow(ACCOUNT)
    with pytest.raises(SignInCancelled, match="nothing was stored"):
        provider.finish_device_flow(flow, on_poll=interrupt)
    assert provider.accounts() == []


def test_approval_by_hand_during_polling(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    idp.device_outcome = "pending"
    flow = provider.start_device_flow(None)
    username = provider.finish_device_flow(
        flow, on_poll=lambda event: idp.approve(flow.user_code, OTHER))
    assert username == OTHER


def test_signing_in_as_another_account_than_asked_keeps_nothing(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    idp.auto_approve_account = OTHER
    with pytest.raises(OAuth2Error, match=f"signed in as {OTHER}, but --account asked for "
                                          f"{ACCOUNT}") as caught:
        sign_in(provider, ACCOUNT)
    assert caught.value.code == codes.SIGN_IN_AGAIN
    assert provider.accounts() == []


def test_device_code_refused_for_the_app(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    idp.fail("devicecode", 700016)
    with pytest.raises(OAuth2Error, match="starting the sign-in failed") as caught:
        provider.start_device_flow(ACCOUNT)
    assert caught.value.code == codes.APP_REGISTRATION


# -- tokens for the transport ---------------------------------------------------------------


def test_silent_token_comes_from_the_cache(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider)
    first = asyncio.run(provider.credentials(ACCOUNT))
    second = asyncio.run(provider.credentials(ACCOUNT.upper()))
    assert first.kind == "bearer" and first.username == ACCOUNT
    assert first.secret == second.secret
    assert idp.requests["refresh_token"] == 0
    assert idp.validate(ACCOUNT, first.secret)
    assert first.secret not in repr(first)


def test_token_with_less_than_five_minutes_left_is_refreshed(
    tmp_path: Path, idp: LocalIdentityProvider
) -> None:
    idp.access_token_lifetime = 240
    with new_provider(oauth_config(tmp_path, idp)) as provider:
        sign_in(provider)
        idp.access_token_lifetime = 3600
        token = provider.acquire(ACCOUNT).secret
        assert idp.requests["refresh_token"] == 1
        assert provider.acquire(ACCOUNT).secret == token  # now an hour: from the cache
        assert idp.requests["refresh_token"] == 1


def test_own_refresh_margin_beyond_msals(tmp_path: Path, idp: LocalIdentityProvider) -> None:
    idp.access_token_lifetime = 600
    with new_provider(oauth_config(tmp_path, idp), refresh_margin_seconds=900) as provider:
        sign_in(provider)
        provider.acquire(ACCOUNT)
    assert idp.requests["refresh_token"] == 1


def test_forced_refresh_after_the_server_refused_the_token(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider)
    old = provider.acquire(ACCOUNT).secret
    idp.advance(3700)  # the IdP (and the mail server) consider the token expired
    assert not idp.validate(ACCOUNT, old)
    fresh = asyncio.run(provider.credentials(ACCOUNT, force_refresh=True)).secret
    assert fresh != old and idp.validate(ACCOUNT, fresh)


def test_keepalive_refreshes_every_account_and_records_it(
    provider: OAuth2Provider, idp: LocalIdentityProvider, tmp_path: Path
) -> None:
    sign_in(provider, ACCOUNT)
    idp.auto_approve_account = OTHER
    sign_in(provider, OTHER)
    results = asyncio.run(provider.keepalive())
    assert [(r.account, r.ok) for r in results] == [(ACCOUNT, True), (OTHER, True)]
    assert idp.requests["refresh_token"] == 2
    state = json.loads((tmp_path / "state" / "tokens.state.json").read_text())
    assert state["accounts"][ACCOUNT]["last_keepalive"]["ok"] is True
    assert stat.S_IMODE((tmp_path / "state" / "tokens.state.json").stat().st_mode) == 0o600
    status = provider.status()[0]
    assert status.last_refresh is not None and status.refresh_token_expires_by_inactivity
    assert (status.refresh_token_expires_by_inactivity - status.last_refresh).days == 90
    assert status.last_keepalive and status.last_keepalive["ok"] is True


def test_keepalive_failure_is_recorded_and_shown(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider)
    idp.kill_refresh_tokens(ACCOUNT, 50173)
    [result] = provider.refresh_all()
    assert not result.ok and result.code == codes.CONNECTION_EXPIRED
    [status] = provider.status()
    assert status.state == SIGN_IN_NEEDED and status.code == codes.CONNECTION_EXPIRED
    assert "AADSTS50173" in status.detail
    assert status.last_keepalive is not None
    assert status.last_keepalive["ok"] is False
    assert status.last_keepalive["code"] == codes.CONNECTION_EXPIRED


@pytest.mark.parametrize(("aadsts", "code"), [
    (700082, codes.CONNECTION_EXPIRED), (70008, codes.CONNECTION_EXPIRED),
    (50173, codes.CONNECTION_EXPIRED), (70043, codes.CONNECTION_EXPIRED),
    (65001, codes.CONSENT_MISSING), (50076, codes.SIGN_IN_AGAIN),
    (50079, codes.SIGN_IN_AGAIN), (53003, codes.SIGN_IN_AGAIN), (530035, codes.SIGN_IN_AGAIN),
    (7000218, codes.APP_REGISTRATION), (700016, codes.APP_REGISTRATION),
    (12345, codes.SIGN_IN_AGAIN),  # unknown invalid_grant: the safe default
])
def test_refused_refresh_maps_to_its_code(
    provider: OAuth2Provider, idp: LocalIdentityProvider, aadsts: int, code: int
) -> None:
    sign_in(provider)
    token = provider.acquire(ACCOUNT).secret
    idp.kill_refresh_tokens(ACCOUNT, aadsts)
    with pytest.raises(OAuth2Error) as caught:
        asyncio.run(provider.credentials(ACCOUNT, force_refresh=True))
    error = caught.value
    assert isinstance(error, AuthError)
    assert (error.code, error.aadsts, error.account) == (code, aadsts, ACCOUNT)
    assert f"AADSTS{aadsts}" in str(error) and ACCOUNT in str(error)
    assert "Trace ID" not in str(error)
    for secret in [token, *idp.refresh_tokens()]:
        assert secret not in str(error)


def test_unreachable_identity_provider_is_360(tmp_path: Path,
                                              idp: LocalIdentityProvider) -> None:
    with new_provider(oauth_config(tmp_path, idp)) as provider:
        sign_in(provider)
        idp.stop()
        with pytest.raises(ConnectError, match="connection refused") as caught:
            provider.acquire(ACCOUNT, force_refresh=True)
        assert caught.value.code == codes.NO_CONNECTION
    # A new process (new provider) fails already when msal fetches the OpenID configuration.
    with new_provider(oauth_config(tmp_path, idp)) as provider:
        with pytest.raises(ConnectError):
            provider.acquire(ACCOUNT)


def test_silent_identity_provider_times_out_as_360(tmp_path: Path,
                                                  idp: LocalIdentityProvider) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        authority = f"https://localhost:{silent.getsockname()[1]}/contoso.onmicrosoft.com"
        config = oauth_config(tmp_path, idp, authority=authority, http_timeout_seconds=0.2)
        with new_provider(config) as provider, pytest.raises(ConnectError,
                                                             match="no answer within 0.2 s"):
            provider.start_device_flow(ACCOUNT)


def test_server_error_at_the_provider_is_360(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider)
    idp.fail("refresh_token", 90033, error="temporarily_unavailable", status=503)
    with pytest.raises(ConnectError, match="503"):
        provider.acquire(ACCOUNT, force_refresh=True)


def test_untrusted_certificate_is_360(tmp_path: Path, idp: LocalIdentityProvider) -> None:
    config = oauth_config(tmp_path, idp, ca_file=certifi.where())
    with new_provider(config) as provider, pytest.raises(ConnectError,
                                                         match="not trusted") as caught:
        provider.start_device_flow(ACCOUNT)
    assert "[auth] ca_file" in str(caught.value)


def test_no_tokens_for_the_account_is_370(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    with pytest.raises(OAuth2Error, match="not signed in") as caught:
        provider.acquire(ACCOUNT)
    assert caught.value.code == codes.SIGN_IN_AGAIN
    sign_in(provider)
    with pytest.raises(OAuth2Error, match=f"{OTHER}: not signed in"):
        provider.acquire(OTHER)


def test_new_sign_in_recovers_at_once(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider)
    idp.kill_refresh_tokens(ACCOUNT)
    with pytest.raises(OAuth2Error):
        provider.acquire(ACCOUNT, force_refresh=True)
    assert provider.status()[0].state == SIGN_IN_NEEDED
    sign_in(provider)
    fresh = provider.acquire(ACCOUNT, force_refresh=True).secret
    assert idp.validate(ACCOUNT, fresh)
    assert provider.status()[0].state == SIGNED_IN


def test_a_fixed_cause_is_retried_at_once_not_answered_from_msals_400_cache(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider)
    idp.fail("refresh_token", 65001, account=ACCOUNT)
    with pytest.raises(OAuth2Error) as caught:
        provider.acquire(ACCOUNT, force_refresh=True)
    assert caught.value.code == codes.CONSENT_MISSING
    idp.clear_failures()  # an administrator granted consent: same refresh token, same request
    assert idp.validate(ACCOUNT, provider.acquire(ACCOUNT, force_refresh=True).secret)
    assert idp.requests["refresh_token"] == 2


def test_two_accounts_each_get_their_own_token(
    provider: OAuth2Provider, idp: LocalIdentityProvider
) -> None:
    sign_in(provider, ACCOUNT)
    idp.auto_approve_account = OTHER
    sign_in(provider, OTHER)
    mine = provider.acquire(ACCOUNT).secret
    theirs = provider.acquire("Reception@Contoso.com").secret
    assert idp.validate(ACCOUNT, mine) and not idp.validate(OTHER, mine)
    assert idp.validate(OTHER, theirs) and not idp.validate(ACCOUNT, theirs)
    assert provider.sign_in_summary() == f"Signed in as {ACCOUNT}, {OTHER}"
    idp.kill_refresh_tokens(OTHER, 70043)
    with pytest.raises(OAuth2Error):
        provider.acquire(OTHER, force_refresh=True)
    assert provider.sign_in_summary() == (f"Signed in as {ACCOUNT}; Sign-in needed for {OTHER} "
                                          f"(code 361)")
    assert provider.logout(OTHER) == [OTHER]
    assert provider.accounts() == [ACCOUNT]
    with pytest.raises(OAuth2Error):
        provider.acquire(OTHER)


def test_another_process_sees_the_sign_in_and_both_write_safely(
    tmp_path: Path, idp: LocalIdentityProvider
) -> None:
    config = oauth_config(tmp_path, idp)
    with new_provider(config) as worker, new_provider(config) as login:
        sign_in(login)
        assert worker.acquire(ACCOUNT).username == ACCOUNT  # loaded from the file

        errors: list[BaseException] = []

        def hammer(provider: OAuth2Provider) -> None:
            try:
                for _ in range(5):
                    provider.acquire(ACCOUNT, force_refresh=True)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(p,)) for p in (worker, login)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    assert json.loads((tmp_path / "state" / "tokens.json").read_text())["RefreshToken"]
    assert [p.name for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")] == []


def test_status_shows_an_expired_access_token(
    tmp_path: Path, idp: LocalIdentityProvider
) -> None:
    idp.access_token_lifetime = 0
    with new_provider(oauth_config(tmp_path, idp)) as provider:
        sign_in(provider)
        [status] = provider.status()
    assert status.state == EXPIRED and status.code is None


def test_status_lists_the_configured_account_when_nobody_signed_in(
    provider: OAuth2Provider,
) -> None:
    [status] = provider.status()
    assert (status.account, status.state, status.code) == (ACCOUNT, SIGN_IN_NEEDED, 370)
    assert status.solution == codes.describe(370).solution
    assert provider.sign_in_summary() == f"Sign-in needed for {ACCOUNT} (code 370)"


def test_unreadable_cache_needs_a_new_sign_in_which_replaces_it(
    provider: OAuth2Provider, tmp_path: Path
) -> None:
    cache = tmp_path / "state" / "tokens.json"
    cache.parent.mkdir(mode=0o700)
    cache.write_text("{not json")
    with pytest.raises(AuthError, match="unreadable") as caught:
        provider.acquire(ACCOUNT)
    assert caught.value.code == codes.SIGN_IN_AGAIN
    sign_in(provider)
    assert provider.acquire(ACCOUNT).username == ACCOUNT
    assert (tmp_path / "state" / "tokens.json.unreadable").exists()


# -- client credentials ---------------------------------------------------------------------


def app_only_config(tmp_path: Path, idp: LocalIdentityProvider, **auth: Any) -> Config:
    return oauth_config(tmp_path, idp, flow="client_credentials",
                        scopes=["https://outlook.office365.com/.default"], **auth)


def test_client_credentials_with_secret_from_the_environment(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp.add_client_secret(CLIENT_ID, "s3cret~value")
    monkeypatch.setenv("FAXGW_CLIENT_SECRET", "s3cret~value")
    with new_provider(app_only_config(tmp_path, idp)) as provider:
        first = provider.acquire(ACCOUNT)
        assert idp.validate(ACCOUNT, first.secret) and idp.validate(OTHER, first.secret)
        assert provider.acquire(ACCOUNT).secret == first.secret
        assert provider.acquire(ACCOUNT, force_refresh=True).secret != first.secret
        assert idp.requests["client_credentials"] == 2
        assert provider.status()[0].state.startswith("app-only")
        assert provider.refresh_all() == []


def test_client_credentials_secret_from_file_wrong_then_fixed(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAXGW_CLIENT_SECRET", raising=False)
    idp.add_client_secret(CLIENT_ID, "right-secret")
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("wrong-secret\n")
    config = app_only_config(tmp_path, idp, client_secret_file=str(secret_file))
    with new_provider(config) as provider:
        with pytest.raises(OAuth2Error) as caught:
            provider.acquire(ACCOUNT)
        assert (caught.value.code, caught.value.aadsts) == (codes.CLIENT_SECRET, 7000215)
        assert "wrong-secret" not in str(caught.value)
        secret_file.write_text("right-secret\n")  # rotated: no restart needed
        assert idp.validate(ACCOUNT, provider.acquire(ACCOUNT).secret)


def test_expired_client_secret_is_376(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp.expire_client_secret(CLIENT_ID, "old-secret")
    monkeypatch.setenv("FAXGW_CLIENT_SECRET", "old-secret")
    with new_provider(app_only_config(tmp_path, idp)) as provider:
        with pytest.raises(OAuth2Error) as caught:
            asyncio.run(provider.credentials(ACCOUNT))
    assert (caught.value.code, caught.value.aadsts) == (codes.CLIENT_SECRET, 7000222)


def test_client_credentials_without_a_secret_is_a_config_error(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAXGW_CLIENT_SECRET", raising=False)
    with new_provider(app_only_config(tmp_path, idp)) as provider:
        with pytest.raises(ConfigError, match=r"\[auth\] client_secret_file"):
            provider.acquire(ACCOUNT)


def test_client_credentials_with_a_certificate(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FAXGW_CLIENT_SECRET", "ignored-when-a-certificate-is-set")
    pem, certificate, key = app_certificate(tmp_path)
    idp.add_client_certificate(CLIENT_ID, certificate)
    config = app_only_config(tmp_path, idp, client_certificate_file=str(pem))
    with caplog.at_level(logging.DEBUG), new_provider(config) as provider:
        token = provider.acquire(ACCOUNT)
        assert idp.validate(ACCOUNT, token.secret)
        assert idp.requests["client_credentials"] == 1
    key_body = key.decode().splitlines()[1]
    assert key_body not in caplog.text and "ignored-when" not in caplog.text


def test_pkcs12_and_encrypted_key_files_open_with_their_password(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FAXGW_CLIENT_CERTIFICATE_PASSWORD", raising=False)
    _, certificate, key = app_certificate(tmp_path)
    idp.add_client_certificate(CLIENT_ID, certificate)
    pfx = as_pkcs12(tmp_path / "app.pfx", key, certificate, b"pfx password")
    locked = encrypted_pem(tmp_path / "locked.pem", key, certificate, b"pem password")
    password_file = tmp_path / "certificate-password"
    password_file.write_text("pfx password\n")

    def acquire(**auth: Any) -> str:
        with new_provider(app_only_config(tmp_path, idp, **auth)) as provider:
            return provider.acquire(ACCOUNT).secret

    assert idp.validate(ACCOUNT, acquire(client_certificate_file=str(pfx),
                                         client_certificate_password_file=str(password_file)))
    monkeypatch.setenv("FAXGW_CLIENT_CERTIFICATE_PASSWORD", "pem password")
    assert idp.validate(ACCOUNT, acquire(client_certificate_file=str(locked)))

    # The wrong password, and no password at all: a config error that says so.
    with pytest.raises(ConfigError, match=r"cannot be opened as a PKCS#12 file \(the password "
                                          r"is wrong\)") as wrong:
        acquire(client_certificate_file=str(pfx))
    assert "pem password" not in str(wrong.value)
    monkeypatch.delenv("FAXGW_CLIENT_CERTIFICATE_PASSWORD")
    with pytest.raises(ConfigError, match="client_certificate_password_file"):
        acquire(client_certificate_file=str(pfx))
    with pytest.raises(ConfigError, match="is encrypted: put its password"):
        acquire(client_certificate_file=str(locked))


def test_unregistered_or_unusable_certificates(
    tmp_path: Path, idp: LocalIdentityProvider, caplog: pytest.LogCaptureFixture,
) -> None:
    registered, certificate, _ = app_certificate(tmp_path, "registered")
    idp.add_client_certificate(CLIENT_ID, certificate)
    other, _, other_key = app_certificate(tmp_path, "other")
    with new_provider(app_only_config(tmp_path, idp,
                                      client_certificate_file=str(other))) as provider:
        with pytest.raises(OAuth2Error) as caught:
            provider.acquire(ACCOUNT)
    assert (caught.value.code, caught.value.aadsts) == (codes.CLIENT_SECRET, 700027)
    assert "not registered" in str(caught.value)

    # A key with someone else's certificate, a file without a key.
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(other_key + certificate)
    no_key = tmp_path / "no-key.pem"
    no_key.write_bytes(certificate)
    for path, message in ((mixed, "does not belong to its private key"),
                          (no_key, "has no private key")):
        with new_provider(app_only_config(tmp_path, idp,
                                          client_certificate_file=str(path))) as provider:
            with pytest.raises(ConfigError, match=r"\[auth\] client_certificate_file: ") as bad:
                provider.acquire(ACCOUNT)
        assert message in str(bad.value) and "MII" not in str(bad.value)

    registered.chmod(0o644)  # works, with a warning
    with caplog.at_level(logging.WARNING), new_provider(app_only_config(
            tmp_path, idp, client_certificate_file=str(registered))) as provider:
        assert idp.validate(ACCOUNT, provider.acquire(ACCOUNT).secret)
    assert "can be read by other users" in caplog.text


# -- trust, secrecy, files ------------------------------------------------------------------


def test_configured_ca_wins_over_requests_ca_bundle(
    tmp_path: Path, idp: LocalIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    # The trap is real: a plain session's verify loses to the environment variable.
    with requests.Session() as plain:
        plain.verify = str(idp.ca_file)
        with pytest.raises(requests.exceptions.SSLError):
            plain.get(f"{idp.authority}/v2.0/.well-known/openid-configuration", timeout=5)
    with new_provider(oauth_config(tmp_path, idp)) as provider:
        assert sign_in(provider) == ACCOUNT


def test_no_token_text_in_logs_errors_or_status(
    provider: OAuth2Provider, idp: LocalIdentityProvider, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    sign_in(provider)
    provider.acquire(ACCOUNT, force_refresh=True)
    provider.refresh_all()
    idp.kill_refresh_tokens(ACCOUNT, 700082)
    with pytest.raises(OAuth2Error) as caught:
        provider.acquire(ACCOUNT, force_refresh=True)
    shown = [caplog.text, str(caught.value), repr(caught.value), capsys.readouterr().out,
             json.dumps([s.to_json() for s in provider.status()]),
             (tmp_path / "state" / "tokens.state.json").read_text()]
    secrets = idp.issued_tokens() + idp.refresh_tokens()
    assert len(secrets) >= 4
    for text in shown:
        for secret in secrets:
            assert secret not in text
            assert secret[:40] not in text


def test_write_atomic_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "tokens.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.json"]


# -- configuration --------------------------------------------------------------------------


def _auth(**auth: Any) -> Config:
    raw = {"method": "oauth2", "client_id": CLIENT_ID, **auth}
    return config_from_dict({"auth": raw}, base=Path("/tmp"))


def test_presets() -> None:
    exchange = settings_from_config(_auth(tenant="contoso.onmicrosoft.com").auth)
    assert exchange.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert exchange.scopes == (SCOPE,) and not exchange.explicit_authority
    app = settings_from_config(_auth(tenant="contoso.onmicrosoft.com",
                                     flow="client_credentials").auth)
    assert app.scopes == ("https://outlook.office365.com/.default",) and app.app_only
    outlook = settings_from_config(_auth(provider="outlook").auth)
    assert outlook.authority == "https://login.microsoftonline.com/consumers"
    sovereign = settings_from_config(_auth(authority="https://login.microsoftonline.us/x").auth)
    assert sovereign.authority == "https://login.microsoftonline.us/x"
    assert sovereign.explicit_authority
    assert isinstance(make_provider(_auth(tenant="t")), OAuth2Provider)


@pytest.mark.parametrize(("auth", "key"), [
    ({"provider": "custom", "scopes": [SCOPE]}, "[auth] authority"),
    ({"provider": "custom", "authority": "https://idp.example/t"}, "[auth] scopes"),
    ({"scopes": [SCOPE, "offline_access"]}, "[auth] scopes"),
    ({"flow": "client_credentials"}, "[auth] tenant"),
    ({"provider": "outlook", "flow": "client_credentials"}, "[auth] flow"),
    ({"client_id": ""}, "[auth] client_id"),
    ({"authority": "https://idp.example"}, "[auth] authority"),
])
def test_configuration_mistakes_name_the_key(auth: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_config(_auth(**auth).auth)
    assert str(caught.value).startswith(key)
