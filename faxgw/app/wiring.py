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
from ..engine.observe import Observations, ObservedTransport
from ..engine.pacing import MailboxPacer
from ..engine.worker import Worker
from ..intake.layout import SpoolLayout
from ..intake.spool import Spool
from ..ports import CredentialProvider, JobStore, Transport
from ..store import SQLiteJobStore
from ..transport.graph import GraphTransport
from ..transport.smtp import SmtpTransport

__all__ = ["build_worker", "make_credentials", "make_transport", "migrate_store",
           "open_documents", "open_spool", "open_store", "store_open"]


def open_store(config: Config, *, clock: Callable[[], datetime] = utcnow) -> JobStore:
    """The job store for this configuration: PostgreSQL when ``[store] url`` is set (its
    schema must be at this faxgw's version: ``faxgw store migrate``), else SQLite in the
    spool's state folder."""
    if config.store.postgres:
        from ..store.postgres import PostgresJobStore  # psycopg only when it is used

        return PostgresJobStore(config.store.url, clock=clock,
                                password=config.store.password(), ca_file=config.store.ca_file)
    return SQLiteJobStore(SpoolLayout(config.spool.dir).database, clock=clock)


def migrate_store(config: Config) -> tuple[str, int, int]:
    """Create or upgrade the job store's schema (``faxgw store migrate``): where it is (the
    password never shown) and its version before (0: none) and after."""
    if config.store.postgres:
        from ..store.postgres import describe, migrate_schema

        before, after = migrate_schema(config.store.url, password=config.store.password(),
                                       ca_file=config.store.ca_file)
        return describe(config.store.url), before, after
    # SQLite upgrades itself when opened: one host, one process kind, nothing to coordinate.
    from ..store.sqlite import SCHEMA_VERSION

    open_store(config).close()
    return f"sqlite {SpoolLayout(config.spool.dir).database}", SCHEMA_VERSION, SCHEMA_VERSION


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
    observations: Observations | None = None,
) -> Worker:
    """A worker with every part this configuration names (any given part is used instead).

    ``render_processes`` > 0 renders in that many processes of their own (``faxgw run``).
    Its render and send durations and its sessions per mailbox are recorded in
    ``observations`` (a new one when not given), which ``worker.observations`` holds for
    the console's ``/metrics``."""
    observations = observations if observations is not None else Observations()
    credentials = credentials if credentials is not None else make_credentials(config)
    spool = open_spool(config, clock=lambda: clock().timestamp())
    spool.ensure()  # the spool's folders first, private, then the store inside them
    return Worker(
        config,
        store=store if store is not None else open_store(config, clock=clock),
        spool=spool,
        transport=ObservedTransport(make_transport(config, credentials), observations),
        credentials=credentials,
        clock=clock,
        rng=rng,
        pacer_factory=pacer_factory,
        render_processes=render_processes,
        open_documents=open_documents,
        observations=observations,
    )
