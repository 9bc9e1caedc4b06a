"""The HTTP side of the local identity provider: the request handler its HTTPS server runs.

:func:`handler_for` builds a :class:`~http.server.BaseHTTPRequestHandler` bound to one
:class:`~faxgw.testing.idp.LocalIdentityProvider`: it parses msal's requests (paths, form
bodies, HTTP Basic client credentials) and sends the IdP's answers as JSON. What is answered is
decided in :mod:`faxgw.testing.idp_endpoints`; this module only speaks HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from faxgw.testing.idp import LocalIdentityProvider

log = logging.getLogger("faxgw.testing.idp")


def handler_for(idp: LocalIdentityProvider) -> type[BaseHTTPRequestHandler]:
    """The request handler class for ``idp``'s HTTPS server (one per IdP)."""
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
            if parts == ["introspect"]:
                self._send(*idp.introspect(form))
                return
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
