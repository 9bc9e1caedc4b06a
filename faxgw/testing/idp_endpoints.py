"""The Entra ID v2.0 endpoints of the local identity provider: what each request is answered.

:class:`EntraEndpoints` holds the protocol half of
:class:`~faxgw.testing.idp.LocalIdentityProvider`: the discovery document, the device
authorization endpoint and the token endpoint's three grants, with Entra's error and token
shapes; and ``POST /introspect`` (RFC 7662), which the test IMAP server checks tokens with.
The IdP class sets the state, owns the switches and the HTTPS server, and inherits these
methods. Kept apart so that each piece stays small and about one thing: this module the wire
format, :mod:`faxgw.testing.idp` the switches tests turn, :mod:`faxgw.testing.idp_http` HTTP.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from faxgw.testing.idp_assertion import JWT_BEARER, verify_client_assertion
from faxgw.testing.idp_records import (
    DESCRIPTIONS,
    DEVICE_ERRORS,
    DeviceCode,
    Failure,
    IssuedToken,
    RefreshToken,
    Switches,
)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Scopes msal adds itself; they are not resources and are not echoed in ``scope``.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class EntraEndpoints:
    """The answers of the IdP's endpoints; mixed into
    :class:`~faxgw.testing.idp.LocalIdentityProvider`, which sets the state declared here."""

    # State and switches, set by LocalIdentityProvider.__init__.
    tenant_id: str
    access_token_lifetime: int
    device_interval: int
    device_expires_in: int
    poll_log: list[tuple[float, str]]
    last_user_code: str | None
    last_device_code: str | None
    _lock: threading.RLock
    _switches: Switches
    _tokens: dict[str, IssuedToken]
    _refresh: dict[str, RefreshToken]
    _devices: dict[str, DeviceCode]
    _failures: list[Failure]
    _secrets: dict[str, dict[str, bool]]
    _certificates: dict[str, list[bytes]]

    if TYPE_CHECKING:
        # Defined by LocalIdentityProvider.
        @property
        def base_url(self) -> str: ...

        def now(self) -> float: ...

        def count(self, name: str) -> None: ...

    # -- protocol --------------------------------------------------------------------------

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        """The discovery document msal fetches when its application is built."""
        base = f"{self.base_url}/{tenant}"
        return {
            "issuer": f"{self.base_url}/{self.tenant_id}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                      "client_secret_basic",
                                                      "private_key_jwt"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
        }

    def device_authorization(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST …/devicecode``: a new device code, unless a failure is scripted."""
        client_id = form.get("client_id", "")
        failure = self._take_failure("devicecode", None)
        if failure is not None:
            return failure.status, self._error_body(failure.error, failure.aadsts, client_id)
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        user_code = "".join(secrets.choice(letters) for _ in range(9))
        device_code = _b64url(secrets.token_bytes(96))
        scopes = tuple(form.get("scope", "").split())
        with self._lock:
            self._devices[device_code] = DeviceCode(
                user_code, client_id, scopes, self.now() + self.device_expires_in
            )
            self.last_user_code = user_code
            self.last_device_code = device_code
        uri = f"{self.base_url}/devicelogin"
        return 200, {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": self.device_expires_in,
            "interval": self.device_interval,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the "
                       f"code {user_code} to authenticate.",
        }

    def token(self, form: dict[str, str], basic: tuple[str, str] | None
              ) -> tuple[int, dict[str, Any]]:
        """``POST …/token`` for the three grants faxgw uses."""
        grant = form.get("grant_type", "")
        client_id = form.get("client_id") or (basic[0] if basic else "")
        if grant == DEVICE_GRANT:
            self.count("device_code")
            return self._device_grant(form, client_id)
        if grant == "refresh_token":
            self.count("refresh_token")
            return self._refresh_grant(form, client_id)
        if grant == "client_credentials":
            self.count("client_credentials")
            secret = form.get("client_secret") or (basic[1] if basic else "")
            return self._client_grant(form, client_id, secret)
        return 400, {"error": "unsupported_grant_type",
                     "error_description": f"AADSTS70003: Unsupported grant type {grant}."}

    def introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST /introspect`` (RFC 7662 token introspection), which Entra does not have: the
        test IMAP server (Dovecot's ``oauth2`` passdb) asks it whether a bearer token is good.

        An unexpired token issued here is ``active`` with its account as ``username`` and
        ``email`` (Dovecot compares one of them with the user of the XOAUTH2 string) and its
        scopes; anything else is ``{"active": false}``, as the RFC asks (never an error)."""
        self.count("introspect")
        with self._lock:
            issued = self._tokens.get(form.get("token", ""))
            if issued is None or issued.expires_at <= self.now():
                return 200, {"active": False}
            body: dict[str, Any] = {
                "active": True, "scope": " ".join(issued.scopes),
                "client_id": issued.client_id, "token_type": "Bearer",
                "exp": int(issued.expires_at),
            }
            if issued.account is not None:
                body["username"] = body["email"] = issued.account
            return 200, body

    def _device_grant(self, form: dict[str, str], client_id: str
                      ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            device = self._devices.get(form.get("device_code", ""))
            if device is None or device.finished:
                return self._poll_answer("bad_verification_code", client_id)
            device.polls += 1
            if device.expires_at <= self.now():
                return self._poll_answer("expired_token", client_id)
            script = self._switches.device_script
            if device.polls <= len(script):
                return self._poll_answer(script[device.polls - 1], client_id)
            account = device.approved_by
            outcome = self._switches.device_outcome
            if account is None and outcome == "approve":
                account = self._switches.auto_approve_account
            if account is None:
                if outcome in ("approve", "pending"):
                    return self._poll_answer("authorization_pending", client_id)
                device.finished = True
                return self._poll_answer(outcome, client_id)
            failure = self._take_failure("device_code", account)
            if failure is not None:
                device.finished = True
                return failure.status, self._error_body(failure.error, failure.aadsts,
                                                        client_id)
            device.finished = True
            self.poll_log.append((time.monotonic(), "approved"))
            return 200, self._issue(account, client_id, device.scopes, with_refresh=True)

    def _poll_answer(self, error: str, client_id: str) -> tuple[int, dict[str, Any]]:
        self.poll_log.append((time.monotonic(), error))
        return 400, self._error_body(error, DEVICE_ERRORS.get(error), client_id)

    def _refresh_grant(self, form: dict[str, str], client_id: str
                       ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            record = self._refresh.get(form.get("refresh_token", ""))
            if record is None:
                return 400, self._error_body("invalid_grant", 9002313, client_id,
                                             "Invalid request. Request is malformed or "
                                             "invalid.")
            if record.dead_with is not None:
                return 400, self._error_body("invalid_grant", record.dead_with, client_id)
            failure = self._take_failure("refresh_token", record.account)
            if failure is not None:
                return failure.status, self._error_body(failure.error, failure.aadsts,
                                                        client_id)
            scopes = tuple(form.get("scope", "").split())
            # Entra: the redeemed refresh token stays valid; a new one is returned as well.
            return 200, self._issue(record.account, client_id, scopes, with_refresh=True)

    def _client_grant(self, form: dict[str, str], client_id: str, secret: str
                      ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            failure = self._take_failure("client_credentials", None)
            if failure is not None:
                return failure.status, self._error_body(failure.error, failure.aadsts,
                                                        client_id)
            if form.get("client_assertion_type") == JWT_BEARER:
                refused = verify_client_assertion(
                    form.get("client_assertion", ""), self._certificates.get(client_id, []),
                    client_id=client_id, token_endpoint_prefix=self.base_url, now=self.now())
                if refused is not None:
                    return 401, self._error_body("invalid_client", refused, client_id)
                scopes = tuple(form.get("scope", "").split())
                return 200, self._issue(None, client_id, scopes, with_refresh=False)
            known = self._secrets.get(client_id, {})
            if secret not in known:
                return 401, self._error_body("invalid_client", 7000215, client_id)
            if known[secret]:
                return 401, self._error_body("invalid_client", 7000222, client_id)
            scopes = tuple(form.get("scope", "").split())
            return 200, self._issue(None, client_id, scopes, with_refresh=False)

    def _take_failure(self, grant: str, account: str | None) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.grant != grant:
                    continue
                if failure.account is not None and (
                    account is None or failure.account.lower() != account.lower()
                ):
                    continue
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                return failure
        return None

    def _error_body(self, error: str, aadsts: int | None, client_id: str,
                    description: str | None = None) -> dict[str, Any]:
        text = description or DESCRIPTIONS.get(
            aadsts or -1, ("", error.replace("_", " ").capitalize() + "."))[1]
        trace, correlation = uuid.uuid4(), uuid.uuid4()
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.now()))
        prefix = f"AADSTS{aadsts}: " if aadsts else ""
        body: dict[str, Any] = {
            "error": error,
            "error_description": f"{prefix}{text} Trace ID: {trace} Correlation ID: "
                                 f"{correlation} Timestamp: {stamp}",
            "timestamp": stamp,
            "trace_id": str(trace),
            "correlation_id": str(correlation),
        }
        if aadsts:
            body["error_codes"] = [aadsts]
            body["error_uri"] = f"{self.base_url}/error?code={aadsts}"
        return body

    def _issue(self, account: str | None, client_id: str, scopes: tuple[str, ...],
               *, with_refresh: bool) -> dict[str, Any]:
        now = self.now()
        resource_scopes = tuple(s for s in scopes if s not in OIDC_SCOPES)
        # Real access tokens are 1.5-3 KB; ~2 KB here keeps line-length limits honest.
        access_token = _b64url(secrets.token_bytes(1536))
        lifetime = self.access_token_lifetime
        self._tokens[access_token] = IssuedToken(account, client_id, resource_scopes,
                                                 now + lifetime)
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(resource_scopes),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        if account is not None and with_refresh:
            refresh_token = _b64url(secrets.token_bytes(384))
            self._refresh[refresh_token] = RefreshToken(account, client_id)
            oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"faxgw-idp:{account.lower()}"))
            claims = {
                "aud": client_id, "iss": f"{self.base_url}/{self.tenant_id}/v2.0",
                "iat": int(now), "nbf": int(now), "exp": int(now) + 3600,
                "tid": self.tenant_id, "oid": oid, "sub": oid, "ver": "2.0",
                "preferred_username": account, "name": account.split("@")[0],
            }
            header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            response["refresh_token"] = refresh_token
            response["id_token"] = f"{header}.{_b64url(json.dumps(claims).encode())}."
            response["client_info"] = _b64url(
                json.dumps({"uid": oid, "utid": self.tenant_id}).encode()
            )
        return response
