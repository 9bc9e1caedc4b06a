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
from typing import Any

from ..auth import make_provider
from ..config import Config
from ..domain.errors import ConfigError
from ..domain.jobs import utcnow
from ..engine.observe import Observations, ObservedTransport
from ..engine.pacing import WINDOW_SECONDS, MailboxPacer
from ..engine.worker import Worker
from ..intake.layout import SpoolLayout
from ..intake.spool import Spool
from ..ports import CredentialProvider, DocumentStore, JobStore, Transport
from ..store import SQLiteJobStore
from ..transport.smtp import SmtpTransport

__all__ = ["build_worker", "make_credentials", "make_transport", "migrate_store",
           "open_documents", "open_render_documents", "open_spool", "open_store",
           "store_open", "store_status"]


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


def store_status(config: Config, store: JobStore) -> dict[str, Any]:
    """The job store for the status sheet: PostgreSQL's database, schema, hosts and dead
    row versions of the jobs table; or the SQLite file in the spool."""
    if config.store.postgres:
        from ..store.postgres import PostgresJobStore

        if isinstance(store, PostgresJobStore):
            return store.database_status()
    return {"kind": "sqlite", "database": str(SpoolLayout(config.spool.dir).database)}


@contextmanager
def store_open(config: Config) -> Iterator[JobStore]:
    """The job store, closed at the end of the block."""
    store = open_store(config)
    try:
        yield store
    finally:
        store.close()


def open_spool(config: Config, *, clock: Callable[[], float] | None = None) -> Spool:
    """The spool: the drop folders, and every job's files (the document store); with
    ``[store] url`` set, the job files are kept in the database too, so that any host can
    send and show a job."""
    if config.store.postgres:
        from .cluster_spool import ClusterSpool  # psycopg only when it is used

        return ClusterSpool.for_config(config, clock=clock)
    return Spool.for_config(config, clock=clock)


def open_documents(config: Config) -> DocumentStore:
    """The document store alone (the console, ``faxgw retry``)."""
    return open_spool(config)


def open_render_documents(config: Config) -> DocumentStore:
    """The document store a render process opens the job files with: the worker has
    brought a job's files into the spool before it hands the job over, so a render process
    never reads the database."""
    if config.store.postgres:
        from .cluster_spool import ClusterSpool

        return ClusterSpool.for_config(config, refresh=False)
    return Spool.for_config(config)


def make_credentials(config: Config) -> CredentialProvider:
    """The credential provider ``[auth] method`` names."""
    return make_provider(config)


def make_transport(config: Config, credentials: CredentialProvider) -> Transport:
    """The transport ``[transport] kind`` names: SMTP, or Microsoft Graph ``sendMail``."""
    if config.transport.kind == "graph":
        if config.auth.method != "oauth2":
            raise ConfigError('[transport] kind = "graph" needs [auth] method = "oauth2" '
                              "(Graph takes OAuth2 tokens only)")
        # Imported when chosen: httpx is not loaded by a gateway that sends by SMTP.
        from ..transport.graph import GraphTransport
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
    worker = Worker(
        config,
        store=store if store is not None else open_store(config, clock=clock),
        spool=spool,
        transport=ObservedTransport(make_transport(config, credentials), observations),
        credentials=credentials,
        clock=clock,
        rng=rng,
        pacer_factory=pacer_factory,
        render_processes=render_processes,
        open_documents=open_render_documents,
        observations=observations,
    )
    if config.store.postgres:
        from ..store.postgres import PostgresJobStore

        if isinstance(worker.store, PostgresJobStore):
            # Several hosts: the mailboxes' limits, the turns and the host list are kept
            # in the database, for all of them together.
            worker.coordination = worker.store.coordination(worker.owner,
                                                            window_seconds=WINDOW_SECONDS)
    return worker
