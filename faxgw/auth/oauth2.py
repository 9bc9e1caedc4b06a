"""OAuth2 credentials with msal: device code sign-in, silent refresh, keep-alive, status.

:class:`OAuth2Provider` gives the SMTP transport an XOAUTH2 access token before each session
(:meth:`~OAuth2Provider.credentials`). Tokens live in the file cache of
:mod:`faxgw.auth.token_cache`, shared safely between the worker, the scheduler's keep-alive and
``faxgw auth login`` in other processes.

msal facts this module is shaped by (msal 1.39 source):

- msal blocks: every call runs in a worker thread (``asyncio.to_thread``) under one lock per
  provider, and under the cache file's lock.
- ``acquire_token_silent`` refreshes when less than 5 minutes remain on the cached access token
  (``_acquire_token_silent_from_cache_and_possibly_refresh_it``); faxgw checks the margin again
  itself and forces a refresh below it, so no session starts with a token about to expire.
- A keep-alive needs ``force_refresh=True``; a failed refresh leaves the refresh token cached.
- msal answers an identical request that got HTTP 400 from its own ``http_cache`` for 60 s,
  even with ``force_refresh``: faxgw's ``http_cache`` never keeps those replays, so a retry
  after the cause is fixed (consent granted, new sign-in) reaches the identity provider.
- msal has no timeout of its own and ``requests`` lets ``REQUESTS_CA_BUNDLE`` override a
  session's ``verify``: msal gets a session that pins ``verify`` and ``timeout`` per request.
- ``offline_access``, ``openid`` and ``profile`` must not be in the scopes (msal adds them);
  the authority must be ``https://host/<tenant>``; a private authority needs
  ``instance_discovery=False``.

Its pieces: :mod:`faxgw.auth.msal_settings` (``[auth]`` resolved), :mod:`faxgw.auth.msal_http`
(the HTTP client and cache msal gets) and :mod:`faxgw.auth.device_signin` (device code sign-in,
inherited by :class:`OAuth2Provider`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msal  # type: ignore[import-untyped]
import requests
from msal.exceptions import MsalServiceError  # type: ignore[import-untyped]

from ..config import Config
from ..domain import codes
from ..domain.errors import AuthError, ConnectError
from ..domain.signin import (
    APP_ONLY,
    SIGN_IN_NEEDED,
    AccountStatus,
    KeepaliveResult,
    utc_iso,
)
from ..ports import Credentials, Resource
from .client_credential import client_credential
from .device_flow import SLOW_DOWN_SECONDS
from .device_signin import DeviceCodeSignIn
from .errors_map import OAuth2Error, auth_error, connect_error, network_reason
from .fingerprint import credentials_fingerprint
from .msal_http import NoErrorReplayCache, PinnedTrustSession
from .msal_settings import ENTRA as ENTRA
from .msal_settings import RESERVED_SCOPES as RESERVED_SCOPES
from .msal_settings import SMTP_SEND_APP_ONLY as SMTP_SEND_APP_ONLY
from .msal_settings import SMTP_SEND_DELEGATED as SMTP_SEND_DELEGATED
from .msal_settings import OAuth2Settings as OAuth2Settings
from .msal_settings import graph_mail_scopes, graph_scopes, imap_scopes, settings_from_config
from .token_cache import TokenStore, forget_account, read_statuses, usernames

log = logging.getLogger("faxgw.auth")

#: Refresh when less than this remains on an access token (msal's own threshold, 5 minutes).
REFRESH_MARGIN_SECONDS = 300.0


class OAuth2Provider(DeviceCodeSignIn):
    """Credentials for Exchange Online, Outlook.com or a custom identity provider.

    Async: :meth:`credentials`, :meth:`keepalive`. Blocking (for the command line and for
    threads): :meth:`acquire`, :meth:`refresh_all`, :meth:`start_device_flow`,
    :meth:`finish_device_flow`, :meth:`status`, :meth:`logout`. Call :meth:`close` at the end.
    """

    def __init__(
        self,
        config: Config,
        *,
        poll_interval_override: float | None = None,
        slow_down_seconds: float = SLOW_DOWN_SECONDS,
        refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self.settings = settings_from_config(config.auth)
        #: What ``faxgw auth login`` signs in for: the resource the transport sends through
        #: (Graph with ``[transport] kind = "graph"``). A token for another resource (SMTP,
        #: IMAP) comes silently from the same sign-in's refresh token when it is needed.
        self.sign_in_resource = (Resource.GRAPH if config.transport.kind == "graph"
                                 else Resource.SMTP)
        self._config = config
        self._auth = config.auth
        self._poll_interval_override = poll_interval_override
        self._slow_down_seconds = slow_down_seconds
        self._margin = refresh_margin_seconds
        self._store = TokenStore(config.auth.token_cache)
        self._session = PinnedTrustSession(ca_file=config.auth.ca_file,
                                           timeout=config.auth.http_timeout_seconds)
        self._http_cache = NoErrorReplayCache()
        self._lock = threading.RLock()
        self._app: msal.ClientApplication | None = None
        self._secret_digest: str | None = None
        self._where = urlsplit(self.settings.authority).netloc

    # -- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def fingerprint(self) -> object:
        """Changes when the token cache is rewritten (someone signed in again)."""
        return credentials_fingerprint(self._config)

    def __enter__(self) -> OAuth2Provider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- tokens for the transport --------------------------------------------------------

    async def credentials(self, account: str, *, resource: Resource = Resource.SMTP,
                          force_refresh: bool = False) -> Credentials:
        """A bearer token for ``account``; ``force_refresh`` after a ``535 5.7.3``.

        ``[auth] scopes`` name the resource this provider signs in for (SMTP); a Graph token
        is a separate request with the ``[graph] cloud``'s scopes (:meth:`scopes_for`), from
        the same sign-in; an IMAP token (reading reports) asks for IMAP on the SMTP resource.

        Raises :class:`OAuth2Error` (an ``AuthError``: 361, 370, 373, 374, 376) when a person
        must act, :class:`ConnectError` (360) when the identity provider cannot be reached.
        """
        return await asyncio.to_thread(self.acquire, account, force_refresh=force_refresh,
                                       resource=resource)

    def scopes_for(self, resource: Resource = Resource.SMTP) -> tuple[str, ...]:
        """The scopes of a token for ``resource``: ``[auth] scopes`` (or the preset's) for SMTP;
        the ``[graph] cloud``'s Graph scopes for Graph (``Mail.Send``; ``Mail.ReadWrite`` for
        reading the mailbox); IMAP on the SMTP resource for IMAP."""
        if resource is Resource.GRAPH:
            return graph_scopes(self._config.graph.resource, app_only=self.settings.app_only)
        if resource is Resource.GRAPH_MAIL:
            return graph_mail_scopes(self._config.graph.resource,
                                     app_only=self.settings.app_only)
        if resource is Resource.IMAP:
            return imap_scopes(self.settings.scopes, app_only=self.settings.app_only)
        return self.settings.scopes

    def sign_in_scopes(self) -> tuple[str, ...]:
        """What ``faxgw auth login`` asks consent for: the scopes of :attr:`sign_in_resource`
        and, when that is Graph and ``[inbox] method = "graph"``, ``Mail.ReadWrite`` as well
        (one request may name several scopes of one resource, never two resources)."""
        scopes = self.scopes_for(self.sign_in_resource)
        if self.sign_in_resource is Resource.GRAPH and self._config.inbox.method == "graph":
            scopes += tuple(scope for scope in self.scopes_for(Resource.GRAPH_MAIL)
                            if scope not in scopes)
        return scopes

    def acquire(self, account: str, *, force_refresh: bool = False,
                resource: Resource = Resource.SMTP) -> Credentials:
        """The blocking form of :meth:`credentials`."""
        scopes = self.scopes_for(resource)
        with self._lock, self._boundary(), self._store.locked() as store:
            app = self._application()
            if self.settings.app_only:
                token = self._app_only_token(app, account, force_refresh, scopes)
            else:
                token = self._delegated_token(app, store, account, force_refresh, scopes)
        return Credentials("bearer", account, token)

    def _delegated_token(self, app: msal.ClientApplication, store: TokenStore, account: str,
                         force_refresh: bool, scopes_wanted: tuple[str, ...] = ()) -> str:
        scopes = list(scopes_wanted or self.settings.scopes)
        # get_accounts(username=…) compares case-insensitively; several accounts may be cached.
        matches = app.get_accounts(username=account)
        if not matches:
            raise OAuth2Error(f"{account}: not signed in; run 'faxgw auth login --account "
                              f"{account}'", code=codes.SIGN_IN_AGAIN, account=account)
        result = app.acquire_token_silent_with_error(scopes, matches[0],
                                                     force_refresh=force_refresh)
        if (result and "error" not in result and result.get("token_source") == "cache"
                and float(result.get("expires_in", 0)) < self._margin):
            result = app.acquire_token_silent_with_error(scopes, matches[0], force_refresh=True)
        if result is None:
            raise OAuth2Error(f"{account}: no refresh token in the cache; run 'faxgw auth "
                              f"login --account {account}'", code=codes.SIGN_IN_AGAIN,
                              account=account)
        record = store.account_state(account)
        if "error" in result:
            error = auth_error(result, account=account, action="refreshing the token")
            record["last_error"] = {"at": utc_iso(datetime.now(UTC)), "code": error.code,
                                    "message": error.message}
            log.warning("token refresh failed for %s: code %s, %s", account, error.code,
                        f"AADSTS{error.aadsts}" if error.aadsts else error.oauth_error)
            raise error
        if result.get("token_source") == "identity_provider":
            record["last_refresh"] = utc_iso(datetime.now(UTC))
            record.pop("last_error", None)
            log.info("token refreshed for %s", account)
        return str(result["access_token"])

    def _app_only_token(self, app: msal.ClientApplication, account: str,
                        force_refresh: bool, scopes: tuple[str, ...] = ()) -> str:
        assert isinstance(app, msal.ConfidentialClientApplication)
        if force_refresh:
            # acquire_token_for_client refuses force_refresh; dropping the cached token is
            # msal's documented way to get a new one.
            app.remove_tokens_for_client()
        result = app.acquire_token_for_client(list(scopes or self.settings.scopes))
        if not result or "error" in result:
            error = auth_error(result or {}, account=account, action="getting an app-only token")
            log.warning("app-only token failed: code %s", error.code)
            raise error
        return str(result["access_token"])

    # -- keep-alive ------------------------------------------------------------------------

    async def keepalive(self) -> list[KeepaliveResult]:
        """Force a refresh for every signed-in account (see :meth:`refresh_all`)."""
        return await asyncio.to_thread(self.refresh_all)

    def refresh_all(self) -> list[KeepaliveResult]:
        """Refresh every cached account's tokens now, whatever their expiry.

        Entra ends a refresh token after 90 days without use; a weekly forced refresh keeps an
        idle gateway signed in. Each outcome is logged and recorded in the state file for
        ``faxgw auth status``. App-only sign-in has nothing to keep alive: returns ``[]``.
        """
        if self.settings.app_only:
            return []
        results: list[KeepaliveResult] = []
        for account in self.accounts():
            at = datetime.now(UTC)
            try:
                # The signed-in resource: the one its consent surely covers.
                self.acquire(account, force_refresh=True, resource=self.sign_in_resource)
            except (AuthError, ConnectError) as exc:
                results.append(KeepaliveResult(account, False, at, exc.code, exc.message))
                log.warning("keep-alive failed (code %s): %s", exc.code, exc.message)
            else:
                results.append(KeepaliveResult(account, True, at))
                log.info("keep-alive %s: tokens refreshed", account)
        with self._lock, self._store.locked() as store:
            for result in results:
                store.account_state(result.account)["last_keepalive"] = {
                    "at": utc_iso(result.at), "ok": result.ok, "code": result.code}
        return results

    # -- what is signed in ---------------------------------------------------------------

    def accounts(self) -> list[str]:
        """The usernames of the accounts in the token cache (no network)."""
        with self._lock, self._store.locked() as store:
            return usernames(store.cache)

    def status(self) -> list[AccountStatus]:
        """The sign-in state of each account, from the cache and state file (no network)."""
        if self.settings.app_only:
            return [AccountStatus(self._auth.account or self.settings.client_id, APP_ONLY)]
        with self._lock, self._store.locked() as store:
            return read_statuses(store, client_id=self.settings.client_id,
                                 scopes=list(self.scopes_for(self.sign_in_resource)),
                                 configured_account=self._auth.account,
                                 now=datetime.now(UTC))

    def sign_in_summary(self) -> str:
        """One line for ``faxgw status``: "Signed in as …" / "Sign-in needed for …" and, with
        the Graph transport, what the last ``faxgw auth test`` found (offline)."""
        statuses = self.status()
        if self.settings.app_only:
            return "; ".join(["app-only (client credentials), no sign-in needed",
                              *self._mailbox_checks([s.account for s in statuses])])
        if not statuses:
            return "Sign-in needed: run 'faxgw auth login'"
        signed = [s.account for s in statuses if s.state != SIGN_IN_NEEDED]
        parts = [f"Signed in as {', '.join(signed)}"] if signed else []
        parts += [f"Sign-in needed for {s.account} (code {s.code})"
                  for s in statuses if s.state == SIGN_IN_NEEDED]
        return "; ".join(parts + self._mailbox_checks(signed))

    def record_mailbox_check(self, account: str, verdict: str, detail: str) -> None:
        """Keep what ``faxgw auth test`` found about ``account`` sending through Graph (a
        verdict and its line, never a token), for the status sheet, which stays offline."""
        with self._lock, self._store.locked() as store:
            store.account_state(account)["mailbox_check"] = {
                "at": utc_iso(datetime.now(UTC)), "verdict": verdict, "detail": detail}

    def _mailbox_checks(self, accounts: list[str]) -> list[str]:
        """The recorded verdicts of :meth:`record_mailbox_check` (Graph transport only)."""
        if self.sign_in_resource is not Resource.GRAPH or not accounts:
            return []
        with self._lock, self._store.locked() as store:
            records = store.state.get("accounts", {})
            checks = [(account, records.get(account.lower(), {}).get("mailbox_check"))
                      for account in accounts]
        lines = []
        for account, check in checks:
            if not isinstance(check, dict):
                lines.append(f"whether {account} may send through Graph: not checked yet "
                             "(run 'faxgw auth test')")
                continue
            at = str(check.get("at", ""))[:16].replace("T", " ")
            lines.append(f"{account} {check.get('verdict')} through Graph (faxgw auth test, "
                         f"{at} UTC)")
        return lines

    def logout(self, account: str | None = None) -> list[str]:
        """Remove ``account`` (or every account) and its tokens; return the names removed."""
        with self._lock, self._store.locked() as store:
            removed = [name for name in usernames(store.cache)
                       if account is None or name.lower() == account.lower()]
            for name in removed:
                forget_account(store, name)
            if self.settings.app_only and account is None:
                # App-only tokens belong to no account (home_account_id None).
                kinds = msal.TokenCache.CredentialType
                app_tokens = {"client_id": self.settings.client_id, "home_account_id": None}
                for entry in list(store.cache.search(kinds.ACCESS_TOKEN, query=app_tokens,
                                                     now=0)):
                    store.cache.remove_at(entry)
        for name in removed:
            log.info("signed out %s", name)
        return removed

    # -- msal application and the error boundary -----------------------------------------

    def _application(self) -> msal.ClientApplication:
        """The msal application, built on first use and again when the app's credential
        (secret or certificate) changes."""
        credential = client_credential(self._auth) if self.settings.app_only else None
        digest = (hashlib.sha256(json.dumps(credential, sort_keys=True).encode()).hexdigest()
                  if credential else None)
        if self._app is not None and digest == self._secret_digest:
            return self._app
        options: dict[str, Any] = {
            "authority": self.settings.authority,
            "token_cache": self._store.cache,
            "http_client": self._session,
            "http_cache": self._http_cache,
        }
        if self.settings.explicit_authority:
            options["instance_discovery"] = False
        try:
            # Building the application fetches <authority>/v2.0/.well-known/openid-configuration.
            if credential is not None:
                app: msal.ClientApplication = msal.ConfidentialClientApplication(
                    self.settings.client_id, client_credential=credential, **options)
            else:
                app = msal.PublicClientApplication(self.settings.client_id, **options)
        except ValueError:
            raise OAuth2Error(
                f"the identity provider at {self.settings.authority} has no OpenID "
                f"configuration for this tenant; check [auth] tenant and authority",
                code=codes.APP_REGISTRATION) from None
        self._app, self._secret_digest = app, digest
        return app

    @contextlib.contextmanager
    def _boundary(self) -> Iterator[None]:
        """Translate network failures of msal's HTTP calls into :class:`ConnectError` (360)."""
        try:
            yield
        except requests.exceptions.RequestException as exc:
            raise connect_error(self._where, network_reason(
                exc, self._auth.http_timeout_seconds)) from None
        except MsalServiceError as exc:
            # msal raises this for HTTP 5xx from the token endpoint.
            raise connect_error(self._where, f"it answered {exc}") from None
        except json.JSONDecodeError:
            raise connect_error(self._where, "its answer was not JSON") from None
