"""The composition root: the one place that turns the configuration into adapters.

Every face (the command line now, the web console next) and every use case gets its store,
job files, transport and credentials from here; nothing else chooses an adapter. A new
adapter (``[store] url``, ``[transport] kind``, ``[inbox] method``) is one more branch here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from ..auth import make_provider
from ..config import Config
from ..domain.errors import ConfigError
from ..domain.jobs import utcnow
from ..engine.pacing import MailboxPacer
from ..engine.worker import Worker
from ..intake.layout import SpoolLayout
from ..intake.spool import Spool
from ..ports import CredentialProvider, JobStore, Transport
from ..store import SQLiteJobStore
from ..transport.graph import GraphTransport
from ..transport.smtp import SmtpTransport

__all__ = ["build_worker", "make_credentials", "make_transport", "open_documents",
           "open_spool", "open_store", "store_open"]


def open_store(config: Config, *, clock: Callable[[], datetime] = utcnow) -> JobStore:
    """The job store for this configuration (SQLite in the spool's state folder)."""
    return SQLiteJobStore(SpoolLayout(config.spool.dir).database, clock=clock)


@contextmanager
def store_open(config: Config) -> Iterator[JobStore]:
    """The job store, closed at the end of the block."""
    store = open_store(config)
    try:
        yield store
    finally:
        store.close()


def open_spool(config: Config, *, clock: Callable[[], float] | None = None) -> Spool:
    """The spool: the drop folders, and every job's files (the document store)."""
    return Spool.for_config(config, clock=clock)


#: The document store alone: a render process opens the job files with this.
open_documents = Spool.for_config


def make_credentials(config: Config) -> CredentialProvider:
    """The credential provider ``[auth] method`` names."""
    return make_provider(config)


def make_transport(config: Config, credentials: CredentialProvider) -> Transport:
    """The transport ``[transport] kind`` names: SMTP, or Microsoft Graph ``sendMail``."""
    if config.transport.kind == "graph":
        if config.auth.method != "oauth2":
            raise ConfigError('[transport] kind = "graph" needs [auth] method = "oauth2" '
                              "(Graph takes OAuth2 tokens only)")
        return GraphTransport(config.graph, credentials)
    return SmtpTransport(config.smtp, credentials)


def build_worker(
    config: Config,
    *,
    store: JobStore | None = None,
    credentials: CredentialProvider | None = None,
    clock: Callable[[], datetime] = utcnow,
    rng: random.Random | None = None,
    pacer_factory: Callable[[], MailboxPacer] | None = None,
    render_processes: int = 0,
) -> Worker:
    """A worker with every part this configuration names (any given part is used instead).

    ``render_processes`` > 0 renders in that many processes of their own (``faxgw run``)."""
    credentials = credentials if credentials is not None else make_credentials(config)
    spool = open_spool(config, clock=lambda: clock().timestamp())
    spool.ensure()  # the spool's folders first, private, then the store inside them
    return Worker(
        config,
        store=store if store is not None else open_store(config, clock=clock),
        spool=spool,
        transport=make_transport(config, credentials),
        credentials=credentials,
        clock=clock,
        rng=rng,
        pacer_factory=pacer_factory,
        render_processes=render_processes,
        open_documents=open_documents,
    )
