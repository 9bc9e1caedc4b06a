"""The HTTP side of the local Graph server: its request handler and Graph's error shape.

:func:`handler_for` builds the request handler of one
:class:`~faxgw.testing.graph_server.LocalGraph`: it reads requests and routes them
(``/v1.0/users/…`` to ``LocalGraph.api``, ``/upload/…`` to ``LocalGraph.upload``); what is
answered is decided there.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from faxgw.testing.graph_server import LocalGraph

log = logging.getLogger("faxgw.testing.graph")


class Drop(Exception):
    """Close the connection without an answer."""


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": str(uuid.uuid4())}}}


def handler_for(graph: LocalGraph) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("graph %s", format % args)

        def _answer(self, status: int, body: dict[str, Any] | bytes | None,
                    headers: dict[str, str]) -> None:
            # bytes: a message's MIME (``$value``), sent as it is.
            raw = isinstance(body, bytes)
            data = body if isinstance(body, bytes) else \
                json.dumps(body).encode("utf-8") if body is not None else b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", "message/rfc822" if raw else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            authorization = self.headers.get("Authorization") or ""
            path, query = urlsplit(self.path).path, urlsplit(self.path).query
            with graph._lock:
                graph.requests.append((method, path, authorization.partition(" ")[0]))
                graph.in_flight += 1
                graph.max_in_flight = max(graph.max_in_flight, graph.in_flight)
            try:
                if graph.delay:
                    time.sleep(graph.delay)
                self._route(method, path, query, authorization, body)
            finally:
                with graph._lock:
                    graph.in_flight -= 1

        def _route(self, method: str, path: str, query: str, authorization: str,
                   body: bytes) -> None:
            parts = [unquote(p) for p in path.split("/") if p]
            if method == "PUT" and len(parts) == 2 and parts[0] == "upload":
                self._answer(*graph.upload(parts[1], self.headers.get("Content-Range") or "",
                                           bool(authorization), body))
                return
            if len(parts) >= 4 and parts[:2] == ["v1.0", "users"]:
                try:
                    answer = graph.api(method, parts[2:], authorization,
                                       self.headers.get("Content-Type") or "", body,
                                       query=query)
                except Drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._answer(*answer)
                return
            self._answer(404, error("ResourceNotFound", f"Resource not found: {path}"), {})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    return Handler
