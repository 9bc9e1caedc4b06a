"""Device code sign-in of :class:`~faxgw.auth.oauth2.OAuth2Provider` (``faxgw auth login``).

:class:`DeviceCodeSignIn` holds the provider's sign-in methods: ask for a device code, then
poll until the person has signed in (paced by :mod:`faxgw.auth.device_flow`), check the account
and keep its tokens. The provider inherits them and sets the state declared here; they are kept
apart from its token, keep-alive and status methods so that each module stays small.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msal  # type: ignore[import-untyped]

from ..domain import codes
from ..domain.errors import ConfigError
from ..domain.signin import utc_iso
from ..ports import Resource
from .device_flow import DeviceFlow, PollEvent, poll_until_done
from .errors_map import OAuth2Error, auth_error
from .msal_settings import OAuth2Settings
from .token_cache import TokenStore, forget_account, usernames

log = logging.getLogger("faxgw.auth")


class DeviceCodeSignIn:
    """The device code sign-in methods; mixed into :class:`~faxgw.auth.oauth2.OAuth2Provider`,
    which sets the state declared here."""

    # Set by OAuth2Provider.__init__.
    settings: OAuth2Settings
    sign_in_resource: Resource
    _lock: threading.RLock
    _store: TokenStore
    _poll_interval_override: float | None
    _slow_down_seconds: float

    if TYPE_CHECKING:
        # Defined by OAuth2Provider.
        def _application(self) -> msal.ClientApplication: ...

        def _boundary(self) -> contextlib.AbstractContextManager[None]: ...

        def scopes_for(self, resource: Resource = Resource.SMTP) -> tuple[str, ...]: ...

        def sign_in_scopes(self) -> tuple[str, ...]: ...

    # -- sign-in -------------------------------------------------------------------------

    def start_device_flow(self, account: str | None = None) -> DeviceFlow:
        """Ask the identity provider for a device code; show the result to the person.

        ``account`` is the mailbox the person should sign in as (checked afterwards). The
        sign-in asks for the scopes of :attr:`sign_in_resource` (Graph's ``Mail.Send`` when
        the transport is Graph, with ``Mail.ReadWrite`` when the mailbox is read through Graph
        too; else the SMTP scopes): one request names one resource only, and the others'
        tokens come from its refresh token.
        """
        if self.settings.app_only:
            raise ConfigError("[auth] flow: client_credentials (app-only) needs no sign-in")
        scopes = list(self.sign_in_scopes())
        with self._lock, self._boundary():
            flow = self._application().initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            raise auth_error(flow, account=account or "", action="starting the sign-in")
        return DeviceFlow.from_msal(flow, account)

    def finish_device_flow(
        self, flow: DeviceFlow, *, on_poll: Callable[[PollEvent], None] | None = None,
        accept: Callable[[str], str | None] | None = None,
    ) -> str:
        """Wait for the person to finish signing in; store the tokens; return the username.

        Raises :class:`OAuth2Error` for ``expired_token``, ``authorization_declined`` and
        ``bad_verification_code``, :class:`~faxgw.auth.device_flow.SignInCancelled` on
        Ctrl-C, and :class:`OAuth2Error` (370) when the person signed in as another account
        than ``flow.account_hint`` (that account's new tokens are then not kept).

        ``accept`` says why the account signed in may not be used (or None when it may): a
        refused account's new tokens are not kept either, and :class:`OAuth2Error` (370)
        carries that reason.
        """
        # A sign-in replaces an unreadable cache (kept aside as <name>.unreadable).
        with self._lock, self._store.locked(replace_unreadable=True) as store:
            before = {name.lower() for name in usernames(store.cache)}
        result = poll_until_done(flow, self._poll_once,
                                 interval_override=self._poll_interval_override,
                                 slow_down_seconds=self._slow_down_seconds, on_poll=on_poll)
        hint = flow.account_hint
        if "error" in result:
            raise auth_error(result, account=hint or "", action="signing in")
        claims = result.get("id_token_claims") or {}
        username = str(claims.get("preferred_username") or claims.get("upn") or "")
        with self._lock, self._store.locked() as store:
            if hint and username.lower() != hint.lower():
                if username.lower() not in before:
                    forget_account(store, username)
                raise OAuth2Error(
                    f"signed in as {username}, but --account asked for {hint}; the sign-in "
                    f"was not kept. Run 'faxgw auth login --account {hint}' again and sign in "
                    f"as {hint} (a private browser window avoids a remembered account).",
                    code=codes.SIGN_IN_AGAIN, account=hint)
            refusal = accept(username) if accept is not None else None
            if refusal is not None:
                if username.lower() not in before:
                    forget_account(store, username)
                raise OAuth2Error(refusal, code=codes.SIGN_IN_AGAIN, account=username)
            record = store.account_state(username)
            record["last_refresh"] = utc_iso(datetime.now(UTC))
            record.pop("last_error", None)
        log.info("signed in as %s", username)
        return username

    def _poll_once(self, raw_flow: dict[str, Any]) -> dict[str, Any]:
        with self._lock, self._boundary(), self._store.locked(replace_unreadable=True):
            # faxgw paces the polls (device_flow.py). interval=1 makes msal's loop return after
            # this one poll (exit_condition is checked once per second of interval) and keeps
            # its "Attempted too soon" check (latest + interval - 1 > now) quiet.
            raw_flow["interval"] = 1
            result: dict[str, Any] = self._application().acquire_token_by_device_flow(
                raw_flow, exit_condition=lambda flow: True)
            return result
