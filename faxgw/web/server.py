"""Serving the console with uvicorn inside an asyncio loop: alone (``faxgw web``) or beside
the worker (``faxgw run`` with ``[web] listen`` set)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import uvicorn

from ..config import Config, is_loopback, split_listen
from ..domain.errors import ConfigError
from . import credentials
from .routes import WebState, create_app

if TYPE_CHECKING:
    from ..app.service import Observations

log = logging.getLogger("faxgw.web")

__all__ = ["beside", "bind", "run", "serve"]

DEFAULT_LISTEN = "127.0.0.1:8025"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's ``stop`` event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check(config: Config, listen: str) -> None:
    """What must be true before the console is served on ``listen``."""
    try:
        host, _ = split_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"[web] listen: {exc}") from None
    web = config.web
    if not is_loopback(host):
        if web.certificate_file is None:
            raise ConfigError(f"[web] listen: {listen!r} is not a loopback address: set "
                              "certificate_file and key_file")
        if not credentials.has_password(web.admin_password_file):
            raise ConfigError(f"[web] admin_password_file: {listen!r} is not a loopback "
                              f"address and no admin password is set in "
                              f"{web.admin_password_file}: run 'faxgw web password'")
    for name in ("certificate_file", "key_file"):
        path = getattr(web, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"[web] {name}: no such file {path}")


def bind(config: Config, listen: str | None = None) -> socket.socket:
    """The listening socket for ``listen`` (default ``[web] listen``); port 0 picks one."""
    listen = listen or config.web.listen or DEFAULT_LISTEN
    check(config, listen)
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(config: Config, stop: asyncio.Event, *, sock: socket.socket | None = None,
                state: WebState | None = None,
                last_round: Callable[[], datetime | None] | None = None,
                observations: Observations | None = None) -> None:
    """Serve the console until ``stop`` is set, then finish the requests under way.

    ``sock`` is a socket from :func:`bind` (made here from ``[web] listen`` when not
    given; a ConfigError or OSError then comes before anything is served). ``last_round``
    says when the worker in this process last finished a round (for ``/readyz``);
    ``observations`` are its render and send durations and sessions (for ``/metrics``)."""
    sock = sock if sock is not None else bind(config)
    web = state or WebState(config, last_round=last_round, observations=observations)
    tls = {}
    if config.web.certificate_file is not None:
        tls = {"ssl_certfile": str(config.web.certificate_file),
               "ssl_keyfile": str(config.web.key_file)}
    server = _EmbeddedServer(uvicorn.Config(
        create_app(config, web), log_config=None, access_log=False, lifespan="off",
        server_header=False, timeout_graceful_shutdown=5, **tls))  # type: ignore[arg-type]
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    log.warning("faxgw web console on %s://%s:%d/", scheme,
                f"[{host}]" if ":" in host else host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await task
        await asyncio.to_thread(web.close)
        sock.close()


def beside(config: Config) -> Callable[[asyncio.Event, Callable[[], datetime | None],
                                        Observations], Awaitable[None]] | None:
    """For ``faxgw run``: None when ``[web] listen`` is empty, else the console to run in the
    service's loop until its stop event is set, given when the worker last finished a round
    and what it observes. The socket is bound now, so that a wrong address or a port in use
    stops ``faxgw run`` before the worker starts."""
    if not config.web.listen:
        return None
    sock = bind(config)

    def console(stop: asyncio.Event, last_round: Callable[[], datetime | None],
                observations: Observations) -> Awaitable[None]:
        return serve(config, stop, sock=sock, last_round=last_round,
                     observations=observations)

    return console


def run(config: Config, listen: str | None = None) -> None:
    """``faxgw web``: the console alone, until SIGINT or SIGTERM."""
    sock = bind(config, listen)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, stop, sock=sock)
        log.warning("faxgw web console stopped")

    asyncio.run(main())
