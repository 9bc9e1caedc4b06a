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

The endpoints' answers are in :mod:`faxgw.testing.idp_endpoints` (inherited by
:class:`LocalIdentityProvider`), its HTTP request handler in :mod:`faxgw.testing.idp_http`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from faxgw.testing.https_peer import HttpsPeer
from faxgw.testing.idp_endpoints import DEVICE_GRANT as DEVICE_GRANT
from faxgw.testing.idp_endpoints import OIDC_SCOPES as OIDC_SCOPES
from faxgw.testing.idp_endpoints import EntraEndpoints
from faxgw.testing.idp_http import handler_for
from faxgw.testing.idp_records import (
    DESCRIPTIONS,
    DEVICE_ERRORS,
    DeviceCode,
    Failure,
    IssuedToken,
    RefreshToken,
    Switches,
)


class LocalIdentityProvider(EntraEndpoints, HttpsPeer):
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
        self._init_https("idp", directory)
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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return handler_for(self)

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

    def token_record(self, token: str) -> IssuedToken | None:
        """What this IdP knows of an access token it issued and that has not expired (for
        whom, which scopes), or None (the local Graph server checks bearer tokens with this)."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None or issued.expires_at <= self.now():
                return None
            return issued

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
