"""The PostgreSQL store's tables, and the steps that bring an older schema up to date.

The ``schema_version`` table holds the version (one row). Unlike the SQLite store, opening the
store never changes the schema: several hosts share the database, and a host that was
upgraded first must not change the tables under the hosts still running the older faxgw.
``faxgw store migrate`` is the one deliberate step that creates or upgrades them (all steps in
one transaction, serialised by an advisory lock); a store opened on a schema that is missing
or older says to run it, and one newer than this code knows is refused.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ...domain.errors import StoreError
from .documents import DDL as _DOCUMENTS

SCHEMA_VERSION = 2

#: Held while migrating, so that two ``faxgw store migrate`` at once run one after the other.
_MIGRATE_LOCK = 0x66617867  # "faxg"

_MIGRATE = "run 'faxgw store migrate' to create or upgrade them"

#: Version n-1 → n; version 1 is what the SQLite store holds at its version 3.
_STEPS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE jobs (
            id              text PRIMARY KEY,
            created         timestamptz NOT NULL,
            updated         timestamptz NOT NULL,
            state           text NOT NULL,
            code            integer,
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            number          text NOT NULL,
            recipient       text NOT NULL DEFAULT '',
            sender          text NOT NULL DEFAULT '',
            -- The sender folded as Python folds it: claims pass over paused mailboxes
            -- in any case, whatever the database's locale.
            sender_key      text NOT NULL DEFAULT '',
            subject         text NOT NULL DEFAULT '',
            note            text NOT NULL DEFAULT '',
            documents       text[] NOT NULL DEFAULT '{}',
            pages           integer,
            bytes           bigint,
            message_id      text,
            error           text,
            last_reply      text,
            source          text NOT NULL DEFAULT '',
            age_from        timestamptz,
            paused_since    timestamptz,
            cover           boolean,
            owner           text,
            lease_until     timestamptz,
            preparing       text,
            notify          text NOT NULL DEFAULT '',
            notified        text NOT NULL DEFAULT ''
        )""",
        # Claims read the due jobs in creation order: the index holds exactly those that
        # may be due, so a claim costs in proportion to them, not to every job ever stored.
        """CREATE INDEX jobs_claimable ON jobs (created, id)
            WHERE state IN ('queued', 'deferred') AND preparing IS NULL""",
        "CREATE INDEX jobs_state ON jobs (state, next_attempt_at)",
        "CREATE INDEX jobs_updated ON jobs (updated)",
        "CREATE INDEX jobs_preparing ON jobs (preparing) WHERE preparing IS NOT NULL",
        "CREATE INDEX jobs_notify ON jobs (state) WHERE notify <> ''",
        """CREATE TABLE history (
            seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id  text NOT NULL,
            at      timestamptz NOT NULL,
            event   text NOT NULL,
            state   text,
            code    integer,
            detail  text NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX history_job ON history (job_id, seq)",
        """CREATE TABLE reports (
            seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key        text NOT NULL UNIQUE,
            mailbox    text NOT NULL,
            received   timestamptz NOT NULL,
            sender     text NOT NULL DEFAULT '',
            subject    text NOT NULL DEFAULT '',
            kind       text NOT NULL,
            outcome    text NOT NULL,
            code       integer,
            job_id     text,
            matched_by text NOT NULL DEFAULT '',
            summary    text NOT NULL DEFAULT '',
            raw        bytea NOT NULL
        )""",
        "CREATE INDEX reports_job ON reports (job_id)",
        """CREATE TABLE inbox_cursors (
            mailbox text PRIMARY KEY,
            cursor  text NOT NULL,
            updated timestamptz NOT NULL
        )""",
    ),
    # Several hosts: what they coordinate through (hosts, the mailboxes' connection slots
    # and message budgets, wake-ups; turns are advisory locks) and the documents that travel
    # with the job.
    2: (
        *_DOCUMENTS,
        # Every runner, with its last heartbeat (``faxgw status``).
        """CREATE TABLE hosts (
            owner     text PRIMARY KEY,
            host      text NOT NULL,
            pid       integer NOT NULL,
            started   timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now()
        )""",
        # The messages of each sending mailbox in the last minute, for all hosts together
        # (store.postgres.cluster); the rows age out as they are read.
        """CREATE TABLE mailbox_sends (
            id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            mailbox  text NOT NULL,
            at       timestamptz NOT NULL,
            answered boolean NOT NULL DEFAULT false
        )""",
        "CREATE INDEX mailbox_sends_mailbox ON mailbox_sends (mailbox, at)",
        # The connection slots of each sending mailbox: held by a runner until ``until``
        # (renewed while held), so that a slot outlives a dropped database connection.
        """CREATE TABLE mailbox_slots (
            mailbox text NOT NULL,
            slot    integer NOT NULL,
            owner   text NOT NULL,
            until   timestamptz NOT NULL,
            PRIMARY KEY (mailbox, slot)
        )""",
        "CREATE INDEX mailbox_slots_owner ON mailbox_slots (owner)",
        # Wake-ups: a new job, and one queued again, tell the listening hosts at commit (on
        # a channel of the schema's own: installations in two schemas do not wake each other).
        """CREATE FUNCTION faxgw_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(left('faxgw_jobs:' || TG_TABLE_SCHEMA, 63), NEW.id);
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER jobs_due AFTER INSERT OR UPDATE OF state, preparing, next_attempt_at
            ON jobs FOR EACH ROW WHEN (NEW.preparing IS NULL AND (NEW.state = 'queued'
                OR NEW.state = 'deferred' AND NEW.next_attempt_at <= now()))
            EXECUTE FUNCTION faxgw_notify_due()""",
        # The jobs table is the hot one (every claim and outcome updates a row): vacuumed
        # after 1 % of it changed rather than 20 %, without throttling, and with room in each
        # page for the new row versions of an update (fewer index entries to clean up).
        """ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01,
            autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02,
            autovacuum_analyze_threshold = 500, autovacuum_vacuum_cost_delay = 0,
            fillfactor = 70)""",
        "ALTER TABLE mailbox_sends SET (autovacuum_vacuum_scale_factor = 0.01)",
    ),
}


def schema_version(db: psycopg.Connection[Any]) -> int | None:
    """The schema's version, or None when there are no faxgw tables (in the ``search_path``)."""
    row = db.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present").fetchone()
    if row is None or not _first(row):
        return None
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return None if row is None else int(_first(row))


def check(db: psycopg.Connection[Any], where: str) -> None:
    """Refuse a schema that is missing, older or newer than :data:`SCHEMA_VERSION`."""
    version = schema_version(db)
    if version is None:
        raise StoreError(f"job store {where}: the faxgw tables are not there: {_MIGRATE}")
    _refuse_newer(version, where)
    if version < SCHEMA_VERSION:
        raise StoreError(f"job store {where}: schema version {version} is older than this "
                         f"faxgw's ({SCHEMA_VERSION}): {_MIGRATE}")


def migrate(db: psycopg.Connection[Any], where: str) -> tuple[int, int]:
    """Create the tables or bring them to :data:`SCHEMA_VERSION`, in one transaction; the
    versions before and after (equal when there was nothing to do)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        before = schema_version(db)
        version = before or 0
        _refuse_newer(version, where)
        if before is None:
            db.execute("""CREATE TABLE schema_version (
                              one     boolean PRIMARY KEY DEFAULT true CHECK (one),
                              version integer NOT NULL,
                              updated timestamptz NOT NULL DEFAULT now())""")
            db.execute("INSERT INTO schema_version (version) VALUES (0)")
        while version < SCHEMA_VERSION:
            version += 1
            for statement in _STEPS[version]:
                db.execute(statement)
        if version != before:
            db.execute("UPDATE schema_version SET version = %s, updated = now()", (version,))
    return before or 0, version


def _refuse_newer(version: int, where: str) -> None:
    # An older faxgw must not write to tables a newer one has migrated.
    if version > SCHEMA_VERSION:
        raise StoreError(f"job store {where}: schema version {version} is newer than this "
                         f"faxgw knows ({SCHEMA_VERSION}); upgrade faxgw")


def _first(row: Any) -> Any:
    """The first value of a row, whatever the connection's row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
