"""The token cache on disk: msal's ``SerializableTokenCache`` in one file, plus a state file.

msal keeps tokens in memory and has no cross-process locking (msal-extensions'
file persistence is not atomic, its encrypted one needs a Secret Service that headless servers
lack). So faxgw does it itself:

- an ``fcntl.flock`` on ``<cache>.lock`` around load + use + save, so the worker, the
  scheduler's keep-alive and ``faxgw auth login`` in other processes never interleave;
- the file is loaded before each use (another process may have refreshed the tokens);
- it is written after every change (``has_state_changed``) atomically: a temp file in the same
  folder created with mode 0600 (``O_CREAT | O_EXCL``), write, fsync, ``os.replace``, fsync of
  the folder (the Maildir / Postfix queue-file recipe);
- the folder is created 0700 if missing, and others' access to an existing one (the ``state/``
  folder another part made first) is taken away (:func:`faxgw.fsutil.make_private_folder`).

Beside it, ``<stem>.state.json`` (also 0600, written the same way) records for each account
the last refresh and the outcome of the last refresh attempt, for ``faxgw auth status``.

The contents of either file are never logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msal  # type: ignore[import-untyped]

from .. import fsutil
from ..domain import codes
from ..domain.errors import AuthError
from ..domain.signin import (
    EXPIRED,
    SIGN_IN_NEEDED,
    SIGNED_IN,
    AccountStatus,
)

log = logging.getLogger("faxgw.auth")

STATE_VERSION = 1


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; the file has mode 0600 from its creation.

    A reader sees the old file or the new one, never a part; a crash leaves at most a
    ``.<name>.*.tmp`` file, never a truncated cache.
    """
    fsutil.write_atomic(path, text.encode("utf-8"), mode=0o600)


class TokenStore:
    """The persisted token cache of one ``[auth] token_cache`` path.

    Use :meth:`locked` around every msal call: it takes the file lock, loads the file into
    :attr:`cache` (the one ``SerializableTokenCache`` object the msal application holds), and
    writes it back afterwards if msal changed it. :attr:`state` is the state file's content,
    loaded and saved the same way.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.state_path = path.with_name(f"{path.stem}.state.json")
        self.cache = msal.SerializableTokenCache()
        self.state: dict[str, Any] = {}

    @contextlib.contextmanager
    def locked(self, *, replace_unreadable: bool = False) -> Iterator[TokenStore]:
        """Lock, load, yield, save if changed, unlock.

        ``replace_unreadable`` (used by sign-in) starts from an empty cache when the file is
        not valid JSON, keeping the bad file as ``<name>.unreadable``; otherwise an
        unreadable cache is an :class:`AuthError` (370).
        """
        fsutil.make_private_folder(self.path.parent)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self._load(replace_unreadable)
            state_before = json.dumps(self.state, sort_keys=True)
            try:
                yield self
            finally:
                if self.cache.has_state_changed:
                    write_atomic(self.path, self.cache.serialize())
                if json.dumps(self.state, sort_keys=True) != state_before:
                    write_atomic(self.state_path, json.dumps(self.state, indent=2) + "\n")
        finally:
            # Closing the descriptor releases the flock.
            os.close(lock_fd)

    def _load(self, replace_unreadable: bool) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise AuthError(
                f"cannot read the token cache {self.path}: {exc.strerror}",
                code=codes.SIGN_IN_AGAIN,
            ) from None
        try:
            self.cache.deserialize(text or None)
        except ValueError:
            if not replace_unreadable:
                raise AuthError(
                    f"the token cache {self.path} is unreadable; run 'faxgw auth login' "
                    f"to sign in again (it replaces the file)",
                    code=codes.SIGN_IN_AGAIN,
                ) from None
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            log.warning("token cache %s was unreadable; kept as %s", self.path, aside)
            self.cache.deserialize(None)
        self.state = self._load_state()

    def _load_state(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError):
            # The state file only feeds 'auth status'; a bad one is rebuilt, not fatal.
            log.warning("token state file %s is unreadable; starting afresh", self.state_path)
            raw = {}
        if not isinstance(raw, dict) or not isinstance(raw.get("accounts"), dict):
            raw = {"version": STATE_VERSION, "accounts": {}}
        return raw

    def account_state(self, account: str) -> dict[str, Any]:
        """The mutable state record of ``account`` (keyed case-insensitively)."""
        accounts: dict[str, Any] = self.state.setdefault("accounts", {})
        record: dict[str, Any] = accounts.setdefault(account.lower(), {})
        return record

    def forget_account(self, account: str) -> None:
        """Drop the state record of ``account`` (after sign-out)."""
        self.state.setdefault("accounts", {}).pop(account.lower(), None)


# -- what the cache says about each account (no network) -------------------------------------

#: Entra ends a refresh token chain after 90 days without use (Entra ID's
#: documented refresh token lifetime).
REFRESH_TOKEN_INACTIVITY = timedelta(days=90)

#: Codes recorded in the state file that mean the refresh token no longer works.
_SIGN_IN_CODES = frozenset({codes.CONNECTION_EXPIRED, codes.SIGN_IN_AGAIN, codes.CONSENT_MISSING,
                            codes.APP_REGISTRATION, codes.CLIENT_SECRET})


def _parse_iso(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _from_epoch(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _needs_sign_in(account: str, code: int, detail: str = "", **times: Any) -> AccountStatus:
    return AccountStatus(account, SIGN_IN_NEEDED, code=code,
                         solution=codes.describe(code).solution, detail=detail, **times)


def read_statuses(
    store: TokenStore, *, client_id: str, scopes: list[str], configured_account: str,
    now: datetime,
) -> list[AccountStatus]:
    """The state of every account in the (locked, loaded) cache, plus the configured one."""
    cache = store.cache
    kinds = msal.TokenCache.CredentialType
    grouped: dict[str, str] = {}
    for entry in cache.search(kinds.ACCOUNT):
        grouped.setdefault(entry.get("home_account_id") or "", entry.get("username") or "")
    statuses: list[AccountStatus] = []
    for home_id, username in sorted(grouped.items(), key=lambda item: item[1].lower()):
        owner = {"home_account_id": home_id, "client_id": client_id}
        refresh = list(cache.search(kinds.REFRESH_TOKEN, query=owner))
        # now=0: msal's search deletes expired access tokens; status must see, not change.
        access = list(cache.search(kinds.ACCESS_TOKEN, target=scopes, query=owner, now=0))
        record = store.state.get("accounts", {}).get(username.lower(), {})
        expires = max((e for e in (_from_epoch(a.get("expires_on")) for a in access) if e),
                      default=None)
        last_refresh = max(
            (t for t in [_parse_iso(record.get("last_refresh"))]
             + [_from_epoch(r.get("last_modification_time")) for r in refresh] if t),
            default=None,
        )
        dies = last_refresh + REFRESH_TOKEN_INACTIVITY if last_refresh else None
        times = {"access_token_expires": expires, "last_refresh": last_refresh,
                 "refresh_token_expires_by_inactivity": dies,
                 "last_keepalive": record.get("last_keepalive")}
        error = record.get("last_error") or {}
        error_at = _parse_iso(error.get("at"))
        if not refresh:
            statuses.append(_needs_sign_in(username, codes.SIGN_IN_AGAIN,
                                           "no refresh token in the cache", **times))
        elif (error.get("code") in _SIGN_IN_CODES and error_at
              and (last_refresh is None or error_at >= last_refresh)):
            statuses.append(_needs_sign_in(username, int(error["code"]),
                                           str(error.get("message") or ""), **times))
        elif dies is not None and dies <= now:
            statuses.append(_needs_sign_in(username, codes.CONNECTION_EXPIRED,
                                           "the refresh token died of inactivity", **times))
        elif expires is not None and expires > now:
            statuses.append(AccountStatus(username, SIGNED_IN, **times))
        else:
            statuses.append(AccountStatus(
                username, EXPIRED, detail="the access token has expired; it is refreshed "
                "by itself before the next send", **times))
    known = {status.account.lower() for status in statuses}
    if configured_account and configured_account.lower() not in known:
        statuses.append(_needs_sign_in(configured_account, codes.SIGN_IN_AGAIN,
                                       "not signed in"))
    return statuses


def remove_account_tokens(cache: msal.SerializableTokenCache, home_account_id: str) -> None:
    """Remove an account and all its tokens from the cache (offline sign-out).

    The same as msal's ``remove_account`` but without an application, which would first fetch
    the authority's OpenID configuration: signing out must work with the network down.
    """
    kinds = msal.TokenCache.CredentialType
    owner = {"home_account_id": home_account_id}
    for entry in list(cache.search(kinds.REFRESH_TOKEN, query=owner)):
        cache.remove_rt(entry)
    for entry in list(cache.search(kinds.ACCESS_TOKEN, query=owner, now=0)):
        cache.remove_at(entry)
    for entry in list(cache.search(kinds.ID_TOKEN, query=owner)):
        cache.remove_idt(entry)
    for entry in list(cache.search(kinds.ACCOUNT, query=owner)):
        cache.remove_account(entry)


def usernames(cache: msal.SerializableTokenCache) -> list[str]:
    """The usernames of the accounts in the cache, once each, sorted case-insensitively."""
    found = cache.search(msal.TokenCache.CredentialType.ACCOUNT)
    names = {str(entry.get("username", "")).lower(): str(entry.get("username", ""))
             for entry in found}
    return sorted((name for name in names.values() if name), key=str.lower)


def forget_account(store: TokenStore, username: str) -> None:
    """Remove every cache entry and the state record of ``username`` (case-insensitive)."""
    for entry in list(store.cache.search(msal.TokenCache.CredentialType.ACCOUNT)):
        if str(entry.get("username", "")).lower() == username.lower():
            remove_account_tokens(store.cache, entry.get("home_account_id") or "")
    store.forget_account(username)
