"""The local identity provider speaks Entra's shapes: checked over HTTPS with plain requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from faxgw.testing.idp import DEVICE_GRANT, LocalIdentityProvider

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
ACCOUNT = "fax@contoso.com"
SCOPE = "https://outlook.office.com/SMTP.Send"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path, tenant="contoso.onmicrosoft.com") as server:
        yield server


def post(idp: LocalIdentityProvider, endpoint: str, data: dict[str, str],
         auth: tuple[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    # verify= on the request itself: REQUESTS_CA_BUNDLE cannot override it there.
    response = requests.post(f"{idp.authority}/oauth2/v2.0/{endpoint}", data=data, auth=auth,
                             verify=str(idp.ca_file), timeout=5)
    return response.status_code, response.json()


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def start(idp: LocalIdentityProvider) -> dict[str, Any]:
    status, body = post(idp, "devicecode", {"client_id": CLIENT_ID,
                                           "scope": f"{SCOPE} offline_access openid profile"})
    assert status == 200
    return body


def poll(idp: LocalIdentityProvider, device_code: str) -> tuple[int, dict[str, Any]]:
    return post(idp, "token", {"grant_type": DEVICE_GRANT, "client_id": CLIENT_ID,
                               "device_code": device_code})


def signed_in(idp: LocalIdentityProvider, account: str = ACCOUNT) -> dict[str, Any]:
    idp.auto_approve_account = account
    status, body = poll(idp, start(idp)["device_code"])
    assert status == 200
    return body


def test_openid_configuration_names_the_endpoints(idp: LocalIdentityProvider) -> None:
    response = requests.get(f"{idp.authority}/v2.0/.well-known/openid-configuration",
                            verify=str(idp.ca_file), timeout=5)
    document = response.json()
    assert idp.authority.startswith("https://localhost:")
    assert document["token_endpoint"] == f"{idp.authority}/oauth2/v2.0/token"
    assert document["device_authorization_endpoint"] == f"{idp.authority}/oauth2/v2.0/devicecode"
    assert document["issuer"] == f"{idp.base_url}/{idp.tenant_id}/v2.0"
    assert idp.requests["openid-configuration"] == 1


def test_device_flow_script_then_tokens_shaped_like_entra(idp: LocalIdentityProvider) -> None:
    idp.device_interval = 2
    idp.device_script = ["authorization_pending", "slow_down"]
    idp.auto_approve_account = ACCOUNT
    flow = start(idp)
    assert flow["interval"] == 2 and flow["expires_in"] == 900
    assert flow["user_code"] in flow["message"] and idp.last_user_code == flow["user_code"]
    status, pending = poll(idp, flow["device_code"])
    assert (status, pending["error"], pending["error_codes"]) == (
        400, "authorization_pending", [70016])
    assert pending["error_description"].startswith("AADSTS70016: ")
    assert poll(idp, flow["device_code"])[1]["error"] == "slow_down"
    status, tokens = poll(idp, flow["device_code"])
    assert status == 200
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["scope"] == SCOPE  # the OIDC scopes msal adds are not resources
    assert 1800 <= len(tokens["access_token"]) <= 3000
    id_claims = claims(tokens["id_token"])
    assert (id_claims["aud"], id_claims["preferred_username"], id_claims["tid"]) == (
        CLIENT_ID, ACCOUNT, idp.tenant_id)
    info = json.loads(base64.urlsafe_b64decode(tokens["client_info"] + "=="))
    assert info == {"uid": id_claims["oid"], "utid": idp.tenant_id}
    assert idp.requests["device_code"] == 3
    # A device code is good for one sign-in only.
    assert poll(idp, flow["device_code"])[1]["error"] == "bad_verification_code"


@pytest.mark.parametrize("outcome", ["authorization_declined", "expired_token",
                                     "bad_verification_code"])
def test_device_flow_outcomes(idp: LocalIdentityProvider, outcome: str) -> None:
    idp.device_outcome = outcome
    status, body = poll(idp, start(idp)["device_code"])
    assert (status, body["error"]) == (400, outcome)


def test_device_code_expires_by_the_idp_clock(idp: LocalIdentityProvider) -> None:
    idp.device_outcome = "pending"
    flow = start(idp)
    assert poll(idp, flow["device_code"])[1]["error"] == "authorization_pending"
    idp.advance(901)
    status, body = poll(idp, flow["device_code"])
    assert (body["error"], body["error_codes"]) == ("expired_token", [70019])


def test_approve_by_user_code(idp: LocalIdentityProvider) -> None:
    idp.device_outcome = "pending"
    flow = start(idp)
    idp.approve(flow["user_code"], "Reception@contoso.com")
    status, body = poll(idp, flow["device_code"])
    assert claims(body["id_token"])["preferred_username"] == "Reception@contoso.com"
    with pytest.raises(KeyError):
        idp.approve("NO-SUCH", ACCOUNT)


def test_validate_checks_issuer_user_and_expiry(idp: LocalIdentityProvider) -> None:
    token = signed_in(idp)["access_token"]
    assert idp.validate(ACCOUNT, token) and idp.validate(ACCOUNT.upper(), token)
    assert not idp.validate("other@contoso.com", token)
    assert not idp.validate(ACCOUNT, token[:-4] + "AAAA")
    idp.advance(3601)
    assert not idp.validate(ACCOUNT, token)


def test_refresh_keeps_old_token_valid_until_killed(idp: LocalIdentityProvider) -> None:
    first = signed_in(idp)
    grant = {"grant_type": "refresh_token", "client_id": CLIENT_ID,
             "refresh_token": first["refresh_token"], "scope": SCOPE}
    status, second = post(idp, "token", grant)
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert post(idp, "token", grant)[0] == 200  # Entra: a redeemed refresh token stays valid
    assert idp.kill_refresh_tokens(ACCOUNT, 700082) == 3
    status, error = post(idp, "token", grant)
    assert (status, error["error"], error["error_codes"]) == (400, "invalid_grant", [700082])
    assert error["error_description"].startswith("AADSTS700082: The refresh token has expired")
    assert idp.requests["refresh_token"] == 3
    # A new sign-in gives a working chain again.
    renewed = signed_in(idp)
    grant["refresh_token"] = renewed["refresh_token"]
    assert post(idp, "token", grant)[0] == 200


def test_scripted_failures_by_grant_account_and_count(idp: LocalIdentityProvider) -> None:
    mine = signed_in(idp)["refresh_token"]
    theirs = signed_in(idp, "other@contoso.com")["refresh_token"]
    idp.fail("refresh_token", 50076, account=ACCOUNT, times=1)

    def refresh(token: str) -> tuple[int, dict[str, Any]]:
        return post(idp, "token", {"grant_type": "refresh_token", "client_id": CLIENT_ID,
                                   "refresh_token": token, "scope": SCOPE})

    assert refresh(theirs)[0] == 200
    status, error = refresh(mine)
    assert (status, error["error_codes"]) == (400, [50076])
    assert refresh(mine)[0] == 200  # times=1 used up
    idp.fail("refresh_token", 53003)
    assert refresh(theirs)[1]["error_codes"] == [53003]
    idp.clear_failures()
    assert refresh(theirs)[0] == 200


def test_client_credentials_secret_checks(idp: LocalIdentityProvider) -> None:
    idp.add_client_secret(CLIENT_ID, "good")
    idp.expire_client_secret(CLIENT_ID, "old")
    grant = {"grant_type": "client_credentials", "scope": "https://outlook.office365.com/.default"}
    status, body = post(idp, "token", grant, auth=(CLIENT_ID, "good"))
    assert status == 200 and "refresh_token" not in body and "id_token" not in body
    assert idp.validate("anyone@contoso.com", body["access_token"])  # app-only
    status, body = post(idp, "token", {**grant, "client_id": CLIENT_ID, "client_secret": "good"})
    assert status == 200
    status, body = post(idp, "token", grant, auth=(CLIENT_ID, "bad"))
    assert (status, body["error"], body["error_codes"]) == (401, "invalid_client", [7000215])
    status, body = post(idp, "token", grant, auth=(CLIENT_ID, "old"))
    assert (status, body["error_codes"]) == (401, [7000222])
    assert idp.requests["client_credentials"] == 4


def test_server_errors_and_stop(idp: LocalIdentityProvider) -> None:
    idp.fail("devicecode", 700016)
    status, body = post(idp, "devicecode", {"client_id": CLIENT_ID, "scope": SCOPE})
    assert (status, body["error"], body["error_codes"]) == (400, "unauthorized_client", [700016])
    idp.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        start(idp)


def test_switches_refuse_unknown_values(idp: LocalIdentityProvider) -> None:
    with pytest.raises(ValueError, match="device_script"):
        idp.device_script = ["approve"]
    with pytest.raises(ValueError, match="device_outcome"):
        idp.device_outcome = "maybe"


def test_temporary_folder_when_none_is_given() -> None:
    with LocalIdentityProvider() as server:
        ca_file = server.ca_file
        assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert not ca_file.exists()
