"""A local identity provider that msal talks to over real HTTPS, for tests and demos.

It speaks just enough of Entra ID's v2.0 endpoints for msal's device code, refresh token and
client credentials grants::

    GET  /<tenant>/v2.0/.well-known/openid-configuration
    POST /<tenant>/oauth2/v2.0/devicecode
    POST /<tenant>/oauth2/v2.0/token     grant_type = device_code | refresh_token
                                                    | client_credentials

TLS uses a trustme CA (``idp.ca_file``); ``idp.authority`` is ``https://localhost:PORT/<tenant>``.
Token responses look like Entra's: an opaque ~2 KB ``access_token``, ``expires_in``,
``refresh_token``, an unsigned ``id_token`` and ``client_info`` (msal needs both to build an
account). Errors look like Entra's too (``error``, ``error_description`` starting with
``AADSTSnnn:``, ``error_codes``) so that faxgw's mapping is exercised with the real shapes.

State and switches (all thread-safe; the server runs in its own threads):

- :meth:`validate` ``(user, token)``: was ``token`` issued here, for ``user`` (or app-only),
  and is it unexpired by the IdP's clock? Bind the SMTP test server's validator to it.
- device flow: :attr:`device_script` (answers before the outcome, e.g.
  ``["authorization_pending", "slow_down"]``), :attr:`device_outcome` (``approve``,
  ``pending``, ``expired_token``, ``authorization_declined``, ``bad_verification_code``),
  :attr:`auto_approve_account`, :meth:`approve` ``(user_code, account)``,
  :attr:`device_interval`, :attr:`device_expires_in`, :attr:`poll_log`.
- :attr:`access_token_lifetime` (``expires_in`` of new tokens); :meth:`advance` moves the IdP's
  clock (token validity, device-code expiry) without touching msal's.
- :meth:`kill_refresh_tokens` ``(account, aadsts)``: the account's current refresh tokens answer
  ``invalid_grant`` with that code; a new sign-in issues working ones.
- :meth:`fail` ``(grant, aadsts, …)``: make a grant (``devicecode``, ``device_code``,
  ``refresh_token``, ``client_credentials``) fail with an Entra error until :meth:`clear_failures`.
- :meth:`add_client_certificate`: a certificate whose key may sign client assertions
  (``private_key_jwt``, checked by :mod:`faxgw.testing.idp_assertion`);
- :meth:`add_client_secret` / :meth:`expire_client_secret`: client credentials checks
  (AADSTS7000215 wrong secret, 7000222 expired).
- :attr:`requests`: a counter per grant and endpoint (proves that a keep-alive refreshed).
- :meth:`stop`: the IdP becomes unreachable.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

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

log = logging.getLogger("faxgw.testing.idp")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Scopes msal adds itself; they are not resources and are not echoed in ``scope``.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access"})

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class LocalIdentityProvider:
    """An HTTPS identity provider on 127.0.0.1 with Entra's endpoint shapes.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``directory`` receives
    ``idp-ca.pem`` (a temporary folder when omitted).
    """

    def __init__(
        self,
        *,
        tenant: str = "contoso.onmicrosoft.com",
        directory: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant = tenant
        self.tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant))
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.RLock()
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="faxgw-idp-")
            directory = Path(self._tempdir.name)
        self._ca = trustme.CA()  # ECDSA keys: fast to make, per test
        self.ca_file = directory / "idp-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        # Public switches and records (tests set and read them directly).
        self.access_token_lifetime = 3600
        self.device_interval = 1
        self.device_expires_in = 900
        self.poll_log: list[tuple[float, str]] = []
        self.requests: Counter[str] = Counter()
        self.last_user_code: str | None = None
        #: The last device code issued (a secret: tests check that it is never shown).
        self.last_device_code: str | None = None
        self._switches = Switches()
        self._tokens: dict[str, IssuedToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._devices: dict[str, DeviceCode] = {}
        self._failures: list[Failure] = []
        self._secrets: dict[str, dict[str, bool]] = {}  # client_id → secret → expired
        self._certificates: dict[str, list[bytes]] = {}  # client_id → PEM certificates

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> LocalIdentityProvider:
        """Listen on 127.0.0.1 (a free port) with TLS, serving from a daemon thread."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval: stop() waits for serve_forever to notice (default 0.5 s).
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,),
                                        name="faxgw-idp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket: the IdP is unreachable from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        """Stop and remove the temporary folder, if this IdP made one."""
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> LocalIdentityProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """``https://localhost:PORT``."""
        return f"https://localhost:{self.port}"

    @property
    def authority(self) -> str:
        """The authority to configure: ``https://localhost:PORT/<tenant>``."""
        return f"{self.base_url}/{self.tenant}"

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        """The IdP's time (its clock plus :meth:`advance` offsets)."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the IdP's clock forward (tokens and device codes age; msal's clock does not)."""
        with self._lock:
            self._offset += seconds

    # -- switches ------------------------------------------------------------------------

    @property
    def device_script(self) -> list[str]:
        """Answers given to each device code's polls before its outcome."""
        return self._switches.device_script

    @device_script.setter
    def device_script(self, value: list[str]) -> None:
        unknown = set(value) - {"authorization_pending", "slow_down"}
        if unknown:
            raise ValueError(f"device_script: unknown answers {sorted(unknown)}")
        self._switches.device_script = list(value)

    @property
    def device_outcome(self) -> str:
        """What a poll gets once the script is used up (``approve`` needs an account)."""
        return self._switches.device_outcome

    @device_outcome.setter
    def device_outcome(self, value: str) -> None:
        if value not in {"approve", "pending", *DEVICE_ERRORS} - {"slow_down",
                                                                     "authorization_pending"}:
            raise ValueError(f"device_outcome: unknown outcome {value!r}")
        self._switches.device_outcome = value

    @property
    def auto_approve_account(self) -> str | None:
        """The account that approves every device code when the outcome is ``approve``."""
        return self._switches.auto_approve_account

    @auto_approve_account.setter
    def auto_approve_account(self, value: str | None) -> None:
        self._switches.auto_approve_account = value

    def approve(self, user_code: str, account: str) -> None:
        """The person enters ``user_code`` and signs in as ``account``."""
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code:
                    device.approved_by = account
                    return
        raise KeyError(f"no device code with user code {user_code}")

    def kill_refresh_tokens(self, account: str, aadsts: int = 700082) -> int:
        """Make every current refresh token of ``account`` fail with ``aadsts``; count them."""
        killed = 0
        with self._lock:
            for token in self._refresh.values():
                if token.account.lower() == account.lower() and token.dead_with is None:
                    token.dead_with = aadsts
                    killed += 1
        return killed

    def fail(
        self,
        grant: str,
        aadsts: int,
        *,
        account: str | None = None,
        error: str | None = None,
        status: int | None = None,
        times: int | None = None,
    ) -> None:
        """Make ``grant`` fail with Entra's error for ``aadsts`` (for one account, or all).

        ``grant`` is ``devicecode`` (the device authorization endpoint), ``device_code``,
        ``refresh_token`` or ``client_credentials``. ``error`` and ``status`` default to what
        Entra sends for that code (``invalid_client`` errors come with HTTP 401).
        """
        default_error = DESCRIPTIONS.get(aadsts, ("invalid_grant", ""))[0]
        error = error or default_error
        if status is None:
            status = 401 if error == "invalid_client" else 400
        with self._lock:
            self._failures.append(Failure(grant, aadsts, error, status, account, times))

    def clear_failures(self) -> None:
        """Remove every scripted failure (killed refresh tokens stay dead)."""
        with self._lock:
            self._failures.clear()

    def add_client_secret(self, client_id: str, secret: str) -> None:
        """Register a valid client secret for the client credentials grant."""
        with self._lock:
            self._secrets.setdefault(client_id, {})[secret] = False

    def add_client_certificate(self, client_id: str, certificate_pem: bytes) -> None:
        """Register a certificate for the client credentials grant (``private_key_jwt``)."""
        with self._lock:
            self._certificates.setdefault(client_id, []).append(certificate_pem)

    def expire_client_secret(self, client_id: str, secret: str) -> None:
        """The secret exists but has expired (AADSTS7000222)."""
        with self._lock:
            self._secrets.setdefault(client_id, {})[secret] = True

    # -- what tests and the SMTP test server ask ------------------------------------------

    def validate(self, user: str, token: str) -> bool:
        """True when ``token`` was issued here for ``user`` (or app-only) and has not expired."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None or issued.expires_at <= self.now():
                return False
            return issued.account is None or issued.account.lower() == user.lower()

    def issued_tokens(self) -> list[str]:
        """Every access token issued so far (for 'never printed' assertions in tests)."""
        with self._lock:
            return list(self._tokens)

    def refresh_tokens(self) -> list[str]:
        """Every refresh token issued so far."""
        with self._lock:
            return list(self._refresh)

    def count(self, name: str) -> None:
        """Count one request to ``name`` (a grant or an endpoint) in :attr:`requests`."""
        with self._lock:
            self.requests[name] += 1

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


def _handler_for(idp: LocalIdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so stop() really cuts every client off.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            log.debug("idp %s", format % args)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known",
                                                  "openid-configuration"]:
                idp.count("openid-configuration")
                self._send(200, idp.openid_configuration(parts[0]))
                return
            self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            parts = [p for p in urlsplit(self.path).path.split("/") if p]
            endpoint = parts[1:] if len(parts) == 4 else []
            if endpoint == ["oauth2", "v2.0", "devicecode"]:
                idp.count("devicecode")
                self._send(*idp.device_authorization(form))
            elif endpoint == ["oauth2", "v2.0", "token"]:
                self._send(*idp.token(form, self._basic_auth()))
            else:
                self._send(404, {"error": "not_found"})

        def _basic_auth(self) -> tuple[str, str] | None:
            header = self.headers.get("Authorization") or ""
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            return unquote(user.replace("+", " ")), unquote(password.replace("+", " "))

    return Handler
