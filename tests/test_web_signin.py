"""The console's Sign in page over HTTP, against the local identity provider: one flow at a
time, Cancel, and the identity provider's refusals shown with their code and solution."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from faxgw.config import Config, config_from_dict
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.web import credentials
from faxgw.web.routes import create_app

from .test_oauth_delivery import ACCOUNT, CLIENT_ID, SCOPE
from .test_web import ADMIN, log_in


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.device_interval = 0
        yield server


@pytest.fixture
def config(tmp_path: Path, idp: LocalIdentityProvider) -> Config:
    built = config_from_dict({
        "spool": {"dir": "spool"},
        "smtp": {"sender": ACCOUNT},
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                 "ca_file": str(idp.ca_file), "token_cache": "state/tokens.json",
                 "http_timeout_seconds": 5},
    }, base=tmp_path)
    credentials.set_password(built.web.admin_password_file, ADMIN)
    return built


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    app = create_app(config)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.web.close()


def _code(html: str) -> str:
    match = re.search(r'<span class="usercode">([^<]+)</span>', html)
    assert match, html
    return match.group(1)


def _until(client: TestClient, text: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        page = client.get("/signin").text
        if text in page:
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.05)


def test_one_sign_in_at_a_time_then_signed_in(client: TestClient,
                                              idp: LocalIdentityProvider) -> None:
    csrf = log_in(client)
    assert client.post("/signin", data={"csrf": csrf, "action": "start"}).status_code == 303
    first = _code(client.get("/signin").text)
    client.post("/signin", data={"csrf": csrf, "action": "start"})
    page = client.get("/signin").text
    assert _code(page) == first and 'http-equiv="refresh"' in page
    assert first not in client.get("/signin").url.query.decode()
    idp.approve(first, ACCOUNT)
    done = _until(client, "Signed in</span>")
    assert ACCOUNT in done and first not in done
    server = client.get("/server").text
    assert 'badge ok">Signed in</span>' in server
    assert f">Sign out {ACCOUNT}</button>" in server
    client.post("/server/signout", data={"csrf": csrf, "account": ACCOUNT})
    server = client.get("/server").text
    assert f"Signed out {ACCOUNT}." in server and 'badge bad">Sign-in needed' in server


def test_cancel_stops_the_wait(client: TestClient) -> None:
    csrf = log_in(client)
    client.post("/signin", data={"csrf": csrf, "action": "start"})
    code = _code(client.get("/signin").text)
    client.post("/signin", data={"csrf": csrf, "action": "cancel"})
    page = client.get("/signin").text
    assert "Sign-in cancelled; nothing was stored." in page and code not in page


@pytest.mark.parametrize("outcome", ["authorization_declined", "expired_token"])
def test_a_refused_sign_in_shows_its_code_and_solution(client: TestClient,
                                                       idp: LocalIdentityProvider,
                                                       outcome: str) -> None:
    idp.device_outcome = outcome
    csrf = log_in(client)
    client.post("/signin", data={"csrf": csrf, "action": "start"})
    page = _until(client, 'class="error"')
    assert "(code 370)" in page and "Solution:" in page


def test_sign_out_needs_the_csrf_token(client: TestClient) -> None:
    csrf = log_in(client)
    assert client.post("/server/signout").status_code == 403
    assert client.post("/signin", data={"action": "start"}).status_code == 403
    answer = client.post("/server/signout", data={"csrf": csrf})
    assert answer.status_code == 303
    assert "No account was signed in." in client.get("/server").text
