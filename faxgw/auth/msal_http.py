"""The HTTP client msal gets: pinned CA and timeout, and an ``http_cache`` without error replays.

msal has no timeout of its own, ``requests`` lets ``REQUESTS_CA_BUNDLE`` override a session's
``verify``, and msal replays an HTTP 400 answer from its ``http_cache`` for 60 s (see
:mod:`faxgw.auth.oauth2`). :class:`PinnedTrustSession` and :class:`NoErrorReplayCache` undo
those; :class:`~faxgw.auth.oauth2.OAuth2Provider` hands both to its msal application. Kept
apart from the provider: this module is about HTTP only.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from requests.adapters import HTTPAdapter


class PinnedTrustSession(requests.Session):
    """The HTTP client msal gets: the configured CA and a timeout on every request.

    ``requests`` consults ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` only when a request's
    ``verify`` is True or None (``Session.merge_environment_settings``), and then it wins over
    ``session.verify``. Passing ``verify`` explicitly on each request keeps ``[auth] ca_file``
    in force. ``trust_env`` stays on on purpose: ``HTTPS_PROXY`` / ``NO_PROXY`` are how
    gateways behind a corporate proxy reach Entra ID. With ``[auth] ca_file`` that bundle is
    the whole trust for the identity provider (as ``verify=path`` is in requests): it holds the
    private IdP's or the TLS-inspecting proxy's CA. Without it the system trust (including
    those variables) applies, as for any other program.
    """

    def __init__(self, *, ca_file: os.PathLike[str] | None, timeout: float) -> None:
        super().__init__()
        self.pinned_verify: str | bool = os.fspath(ca_file) if ca_file else True
        self.timeout = timeout
        # msal's own session retries a failed connection once; so does this one.
        adapter = HTTPAdapter(max_retries=1)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str, url: Any,  # type: ignore[override]
                *args: Any, **kwargs: Any) -> requests.Response:
        """Send with the pinned ``verify`` and, unless given, the configured timeout."""
        kwargs["verify"] = self.pinned_verify
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


class NoErrorReplayCache(dict[str, Any]):
    """msal's ``http_cache`` without its 60-second replay of HTTP 400 answers.

    msal keys those replays ``"POST <url> hash=<…> 400"`` (``throttled_http_client.py``);
    dropping them means a retry after a fix is really sent. The 429/5xx ``Retry-After``
    throttling and the discovery cache are kept.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(key, str) and key.endswith(" 400"):
            return
        super().__setitem__(key, value)
