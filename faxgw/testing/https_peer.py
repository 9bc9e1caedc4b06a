"""What the HTTPS test peers share: a trustme CA of their own, a free port on 127.0.0.1,
serving from a daemon thread, and a clean stop (the identity provider, the Graph server)."""

from __future__ import annotations

import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import trustme


class HttpsPeer:
    """Serves :meth:`_handler` over HTTPS; use as a context manager, or :meth:`start` and
    :meth:`stop`. ``ca_file`` is the CA a client must trust."""

    def _init_https(self, name: str, directory: Path | None) -> None:
        """Make the CA (in ``directory``, or a temporary folder removed by :meth:`close`)."""
        self._name = name
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix=f"faxgw-{name}-")
            directory = Path(self._tempdir.name)
        self._ca = trustme.CA()  # ECDSA keys: fast to make, per test
        self.ca_file = directory / f"{name}-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        """Listen on 127.0.0.1 (a free port) with TLS, serving from a daemon thread."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval: stop() waits for serve_forever to notice (default 0.5 s).
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,),
                                        name=f"faxgw-{self._name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket: the peer is unreachable from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        """Stop and remove the temporary folder, if this peer made one."""
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """``https://localhost:PORT``."""
        return f"https://localhost:{self.port}"
