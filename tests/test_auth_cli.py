"""``faxgw auth`` login / status / logout / test, run for real against the local peers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.cli.auth import auth
from faxgw.cli.context import CliContext
from faxgw.config import Config, config_from_dict
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.testing.smtp_server import FaxSMTPServer

from .test_oauth2 import ACCOUNT, CLIENT_ID, OTHER, SCOPE

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        server.device_interval = 0  # the command polls at the IdP's pace: make it instant
        yield server


@pytest.fixture
def smtp(idp: LocalIdentityProvider) -> Iterator[FaxSMTPServer]:
    """Exchange's front door: STARTTLS, then XOAUTH2 with tokens this IdP issued."""
    with FaxSMTPServer(tls="starttls", token_validator=idp.validate) as server:
        yield server


def make_config(tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer | None = None,
                **auth: Any) -> Config:
    raw: dict[str, Any] = {
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SCOPE], "client_id": CLIENT_ID, "ca_file": str(idp.ca_file),
                 "token_cache": str(tmp_path / "state" / "tokens.json"), "account": ACCOUNT,
                 "http_timeout_seconds": 5, **auth},
        "smtp": {"sender": ACCOUNT, "timeout_seconds": 5},
    }
    if smtp is not None:
        raw["smtp"].update(host=smtp.host, port=smtp.port, ca_file=str(smtp.ca_file))
    return config_from_dict(raw, base=tmp_path)


def run(config: Config, *args: str) -> Result:
    return CliRunner().invoke(auth, list(args), obj=CliContext(_config=config))


def no_secrets(idp: LocalIdentityProvider, result: Result) -> None:
    for secret in idp.issued_tokens() + idp.refresh_tokens():
        assert secret[:32] not in result.output


def test_login_prints_the_code_and_what_to_expect(
    tmp_path: Path, idp: LocalIdentityProvider
) -> None:
    # (slow_down really adds 5 s here; its handling is covered in test_oauth2.py)
    idp.device_script = ["authorization_pending", "authorization_pending"]
    result = run(make_config(tmp_path, idp), "login")
    assert result.exit_code == 0, result.output
    assert f"{idp.base_url}/devicelogin" in result.stdout
    assert f"    {idp.last_user_code}\n" in result.stdout
    assert "Consent on behalf of your organization" in result.stdout
    assert result.stdout.rstrip().endswith(
        f"Signed in as {ACCOUNT}. Waiting jobs will go out by themselves.")
    no_secrets(idp, result)


def test_login_as_the_wrong_account_or_declined(
    tmp_path: Path, idp: LocalIdentityProvider
) -> None:
    config = make_config(tmp_path, idp)
    idp.auto_approve_account = OTHER
    result = run(config, "login", "--account", ACCOUNT)
    assert result.exit_code == 1
    assert f"signed in as {OTHER}, but --account asked for {ACCOUNT}" in result.stderr
    idp.device_outcome = "authorization_declined"
    result = run(config, "login")
    assert result.exit_code == 1
    assert "the sign-in was declined" in result.stderr
    assert "code 370 (sign-in-needed)" in result.stderr and "solution: " in result.stderr
    assert "Traceback" not in result.output


def test_status_logout_round_trip(tmp_path: Path, idp: LocalIdentityProvider) -> None:
    config = make_config(tmp_path, idp)
    result = run(config, "status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["state"] == "sign-in needed"
    assert run(config, "login").exit_code == 0
    result = run(config, "status")
    assert result.stdout.startswith(f"{ACCOUNT}: signed in\n  access token valid until ")
    assert "without use the sign-in would expire on" in result.stdout
    [entry] = json.loads(run(config, "status", "--json").stdout)
    assert set(entry) >= {"account", "state", "access_token_expires", "last_refresh",
                          "refresh_token_expires_by_inactivity", "code", "solution"}
    assert (entry["account"], entry["state"], entry["code"]) == (ACCOUNT, "signed in", None)
    idp.kill_refresh_tokens(ACCOUNT, 700082)
    with OAuth2Provider(config) as provider:  # the scheduler's weekly keep-alive
        assert not provider.refresh_all()[0].ok
    result = run(config, "status")
    assert f"{ACCOUNT}: sign-in needed" in result.stdout
    assert "AADSTS700082" in result.stdout and "code 361" in result.stdout
    assert f"to sign in: faxgw auth login --account {ACCOUNT}" in result.stdout
    result = run(config, "logout")
    assert result.stdout == f"Signed out {ACCOUNT}. Its jobs wait until someone signs in " \
                            f"again.\n"
    result = run(config, "logout", "--account", ACCOUNT)
    assert result.exit_code == 1 and "is not signed in" in result.stderr
    no_secrets(idp, result)


def test_auth_commands_need_oauth2(tmp_path: Path, idp: LocalIdentityProvider) -> None:
    config = config_from_dict({"auth": {"method": "none"}}, base=tmp_path)
    result = run(config, "login")
    assert result.exit_code == 2
    assert result.stderr.startswith("faxgw: configuration error: [auth] method:")


def test_auth_test_signs_in_with_xoauth2_and_sends_nothing(
    tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer
) -> None:
    config = make_config(tmp_path, idp, smtp)
    assert run(config, "login").exit_code == 0
    result = run(config, "test")
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"Connected to {smtp.host}:{smtp.port}, STARTTLS ok, signed in "
                             f"as {ACCOUNT} (XOAUTH2): ready to send.\n")
    assert smtp.messages == []
    commands = [line.split()[0].upper() for _, line in smtp.commands]
    assert commands[:2] == ["EHLO", "STARTTLS"] and "AUTH" in commands and "QUIT" in commands
    assert smtp.errors == []
    no_secrets(idp, result)


def test_auth_test_refreshes_once_when_the_server_refuses_the_token(
    tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer
) -> None:
    config = make_config(tmp_path, idp, smtp)
    assert run(config, "login").exit_code == 0
    idp.advance(3700)  # the cached token still looks valid to msal; the server refuses it
    result = run(config, "test")
    assert result.exit_code == 0, result.output
    assert idp.requests["refresh_token"] == 1
    assert [r for _, r in smtp.replies if r.startswith("535")] == [
        "535 5.7.3 Authentication unsuccessful"]


def test_auth_test_reports_a_dead_sign_in_with_its_code(
    tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer
) -> None:
    config = make_config(tmp_path, idp, smtp)
    assert run(config, "login").exit_code == 0
    idp.advance(3700)
    idp.kill_refresh_tokens(ACCOUNT, 50173)
    result = run(config, "test")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"faxgw: auth test against {smtp.host}:{smtp.port} failed:")
    assert "AADSTS50173" in result.stderr
    assert "code 361 (connection-expired)" in result.stderr
    assert "solution: The sign-in has expired" in result.stderr
    no_secrets(idp, result)


def test_auth_test_unreachable_mail_server_is_360(
    tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer
) -> None:
    config = make_config(tmp_path, idp, smtp)
    assert run(config, "login").exit_code == 0
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    config = config.model_copy(update={"smtp": config.smtp.model_copy(update={"port": port})})
    result = run(config, "test")
    assert result.exit_code == 1 and "code 360 (no-connection)" in result.stderr


def test_auth_test_with_a_password(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    with FaxSMTPServer(tls="starttls", users={ACCOUNT: PASSWORD}) as server:
        raw: dict[str, Any] = {
            "smtp": {"host": server.host, "port": server.port, "ca_file": str(server.ca_file),
                     "sender": ACCOUNT, "timeout_seconds": 5},
            "auth": {"method": "password", "username": ACCOUNT, "password_file": str(secret)},
        }
        result = run(config_from_dict(raw, base=tmp_path), "test")
        assert result.exit_code == 0, result.output
        assert "STARTTLS ok, signed in as fax@contoso.com (password): ready" in result.stdout
        secret.write_text("wrong")
        result = run(config_from_dict(raw, base=tmp_path), "test")
        assert result.exit_code == 1 and "code 375" in result.stderr
        assert "wrong" not in result.output and PASSWORD not in result.output


def faxgw_command(tmp_path: Path, idp: LocalIdentityProvider,
                  *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``faxgw`` command with a config file for ``idp``."""
    config_file = tmp_path / "faxgw.toml"
    config_file.write_text(
        "[auth]\nmethod = \"oauth2\"\nprovider = \"custom\"\n"
        f"authority = \"{idp.authority}\"\nscopes = [\"{SCOPE}\"]\n"
        f"client_id = \"{CLIENT_ID}\"\naccount = \"{ACCOUNT}\"\n"
        f"ca_file = \"{idp.ca_file}\"\ntoken_cache = \"state/tokens.json\"\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config_file), *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.slow
def test_the_faxgw_command_has_the_auth_group(tmp_path: Path,
                                             idp: LocalIdentityProvider) -> None:
    done = faxgw_command(tmp_path, idp, "auth", "status", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["account"] == ACCOUNT


@pytest.mark.slow
def test_most_verbose_log_shows_no_device_code_or_token(
        tmp_path: Path, idp: LocalIdentityProvider) -> None:
    """-vvv lets msal and the HTTP stack log at DEBUG; what they log is scrubbed."""
    done = faxgw_command(tmp_path, idp, "-vvv", "auth", "login")
    assert done.returncode == 0, done.stderr
    assert "event=" in done.stderr  # msal logged its token cache events
    assert idp.last_device_code and idp.last_device_code[:24] not in done.stderr + done.stdout
    for secret in idp.issued_tokens() + idp.refresh_tokens():
        assert secret[:24] not in done.stderr + done.stdout
