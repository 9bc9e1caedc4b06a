"""The SQLite store's tables, and the steps that bring an older database up to date.

``PRAGMA user_version`` holds the schema version. Each step runs once, in order, inside the
transaction that opens the store, so a database is at one version or the next, never between.
A database newer than this code knows is refused (an older faxgw must not write to it).
"""

from __future__ import annotations

import sqlite3

from ...domain.errors import StoreError

SCHEMA_VERSION = 4

_TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    state           TEXT NOT NULL,
    code            INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    number          TEXT NOT NULL,
    recipient       TEXT NOT NULL DEFAULT '',
    sender          TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL DEFAULT '',
    documents       TEXT NOT NULL DEFAULT '[]',
    pages           INTEGER,
    bytes           INTEGER,
    message_id      TEXT,
    error           TEXT,
    last_reply      TEXT,
    source          TEXT NOT NULL DEFAULT '',
    age_from        TEXT,
    paused_since    TEXT,
    cover           INTEGER
);
-- Queue scans cost in proportion to the due jobs, not to every job ever stored.
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS history (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL,
    at      TEXT NOT NULL,
    event   TEXT NOT NULL,
    state   TEXT,
    code    INTEGER,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_job ON history (job_id, seq);
"""

#: Version n → n+1. Version 2: claims carry an owner and a lease; a job being prepared is
#: marked in the store (not in one process's memory), so that no runner claims it.
_STEPS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE jobs ADD COLUMN owner TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_until TEXT",
        "ALTER TABLE jobs ADD COLUMN preparing TEXT",
        # Finding who holds marks costs in proportion to the marks, not to every job.
        "CREATE INDEX jobs_preparing ON jobs (preparing) WHERE preparing IS NOT NULL",
    ),
    # Version 3: whom to tell how a job ended; the reports read from the sending mailbox and
    # where the reader is in each mailbox.
    2: (
        "ALTER TABLE jobs ADD COLUMN notify TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN notified TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX jobs_notify ON jobs (state) WHERE notify <> ''",
        """CREATE TABLE reports (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            key        TEXT NOT NULL UNIQUE,
            mailbox    TEXT NOT NULL,
            received   TEXT NOT NULL,
            sender     TEXT NOT NULL DEFAULT '',
            subject    TEXT NOT NULL DEFAULT '',
            kind       TEXT NOT NULL,
            outcome    TEXT NOT NULL,
            code       INTEGER,
            job_id     TEXT,
            matched_by TEXT NOT NULL DEFAULT '',
            summary    TEXT NOT NULL DEFAULT '',
            raw        BLOB NOT NULL
        )""",
        "CREATE INDEX reports_job ON reports (job_id)",
        """CREATE TABLE inbox_cursors (
            mailbox TEXT PRIMARY KEY,
            cursor  TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
    ),
    # Version 4: the jobs a claim may take, and only those. Most claims find nothing due
    # while the queued jobs are still being prepared; without this index each such claim
    # read every queued row to see its ``preparing`` mark. A query uses it only when it
    # names both terms of its WHERE (see ``claim_due``).
    3: (
        "CREATE INDEX jobs_claimable ON jobs (state, next_attempt_at)"
        " WHERE preparing IS NULL AND state IN ('queued', 'deferred')",
    ),
}


def migrate(db: sqlite3.Connection, where: str) -> None:
    """Create the tables or bring them to :data:`SCHEMA_VERSION`; call inside a write
    transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"job store {where}: schema version {version} is newer than this "
                         f"faxgw knows ({SCHEMA_VERSION}); upgrade faxgw")
    if version == 0:
        for statement in _TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        version = 1
    while version < SCHEMA_VERSION:
        for statement in _STEPS[version]:
            db.execute(statement)
        version += 1
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
