"""Documents that travel with the job: kept in the database, so that any host can send them.

A job's files are kept as they lie in its folder, by their path in it (``job.json``,
``docs/<name>``, ``fax-<id>.pdf``): one ``job_files`` row per file, its bytes in
``job_file_chunks`` rows of :data:`CHUNK_BYTES` each. Chunks, not one ``bytea`` value per file
and not large objects: a file goes in and comes out one chunk at a time (rows streamed in
single-row mode), so a host holds at most a chunk of a 36 MB attachment in memory, whatever
the file's size; and a chunk row is an ordinary row, deleted with its job (large objects
would need ``lo_unlink`` and a transaction for every read). Faxes are compressed already
(PDF, TIFF G4): the chunks are stored without TOAST compression (``STORAGE EXTERNAL``).

Connections come from the process's pool for the database, shared with the job store
(:mod:`~faxgw.store.postgres.pool`): each call takes one for as long as it runs, so files are
stored from the intake's thread while the event loop and the console use others. The pool is
taken when first needed; what is tried again after a dropped connection is decided in one
place (:class:`~faxgw.store.postgres.connection.Database`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import psycopg

from ...domain.errors import StoreError
from .connect import describe
from .connection import Connection, Database
from .pool import PooledConnections

#: The tables, created by schema step 2.
DDL: tuple[str, ...] = (
    """CREATE TABLE job_files (
        job_id  text NOT NULL,
        path    text NOT NULL,
        size    bigint NOT NULL,
        stored  timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (job_id, path)
    )""",
    """CREATE TABLE job_file_chunks (
        job_id  text NOT NULL,
        path    text NOT NULL,
        chunk   integer NOT NULL,
        data    bytea NOT NULL,
        PRIMARY KEY (job_id, path, chunk),
        FOREIGN KEY (job_id, path) REFERENCES job_files ON DELETE CASCADE
    )""",
    # Already compressed: trying to compress each chunk again only costs time.
    "ALTER TABLE job_file_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE INDEX job_files_stored ON job_files (stored)",
    # Jobs purged (or withdrawn): every host drops its own folder and copy of them, and a
    # host that was down meanwhile does not register its folder of one again.
    """CREATE TABLE purged_jobs (
        job_id  text PRIMARY KEY,
        purged  timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX purged_jobs_purged ON purged_jobs (purged)",
)

#: Bytes per chunk row: what a host holds of a file at a time, on the way in and out.
CHUNK_BYTES = 1024 * 1024
#: Chunks sent before waiting for the server's answers, when storing.
PIPELINED_CHUNKS = 4

#: How long the ids of purged jobs are remembered: a host down longer than this, whose
#: spool still holds folders of jobs purged meanwhile, would register them again.
PURGED_KEPT_SECONDS = 366 * 24 * 3600.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a job as the database holds it."""

    path: str
    size: int
    stored: datetime

    @property
    def stamp_ns(self) -> int:
        """When it was stored, in nanoseconds: the modification time a local copy gets, so
        that a copy made from an older version is told apart."""
        return int(self.stored.timestamp() * 1_000_000) * 1000


def _give_back(database: list[Database]) -> None:
    for each in database:
        each.close()
    database.clear()


def safe_path(path: str) -> PurePosixPath:
    """``path`` as a relative path inside a job folder; StoreError for anything that could
    lead out of it (absolute, ``..``, hidden names)."""
    parts = PurePosixPath(path).parts
    if (not parts or path.startswith("/") or "\x00" in path
            or any(part in ("", ".", "..") or part.startswith(".") for part in parts)):
        raise StoreError(f"a stored file has a name that is not allowed: {path!r}")
    return PurePosixPath(*parts)


class DocumentTable:
    """The job files in one PostgreSQL database."""

    def __init__(self, conninfo: str, *, password: str | None = None,
                 ca_file: Path | None = None) -> None:
        self.conninfo = conninfo
        self.where = describe(conninfo)
        self._password = password
        self._ca_file = ca_file
        self._lock = threading.Lock()
        # The share of the pool, once taken. Short-lived users (a command, a console page)
        # let the table go without closing it: its share is given back with it, never left
        # to the garbage collector.
        self._database: list[Database] = []
        weakref.finalize(self, _give_back, self._database)

    # -- the connections -----------------------------------------------------------------

    def _db(self) -> Database:
        """The table's share of the pool, taken when first needed (again after a close)."""
        with self._lock:
            if not self._database:
                self._database.append(Database(
                    PooledConnections(self.conninfo, password=self._password,
                                      ca_file=self._ca_file),
                    where=self.where, password=self._password,
                    prefix=f"job files in {self.where}: ", what="job files"))
            return self._database[0]

    def _run(self, work: Callable[[Connection], T]) -> T:
        """``work`` (reads, or statements that may run twice) on a connection of the pool;
        once more on a new one when the server dropped it."""
        return self._db().read(work)

    def _transact(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction, run again only if it failed before its commit."""
        return self._db().transact(work)

    def close(self) -> None:
        """Give the connections back (a later call takes them again)."""
        with self._lock:
            _give_back(self._database)

    # -- storing -------------------------------------------------------------------------

    def put(self, job_id: str, files: Iterable[tuple[str, Path]], *,
            replace: str | None = None) -> None:
        """Store ``files`` (path in the job folder, local file) in one transaction: the job
        has all of them or, if anything fails, none of this call's.

        ``replace``: first delete the job's stored files whose path starts with it (``""``:
        every file of the job)."""
        self.put_all([(job_id, files)], replace=replace)

    def put_all(self, jobs: Sequence[tuple[str, Iterable[tuple[str, Path]]]], *,
                replace: str | None = None) -> None:
        """:meth:`put` for several jobs (each with its files) in one transaction: every job
        has all of its files or, if anything fails, none of this call's."""
        items = [(job_id, [(str(safe_path(path)), local) for path, local in files])
                 for job_id, files in jobs]

        def work(db: Connection) -> None:
            # One pipeline: the statements go out without waiting for each answer, so the
            # jobs' files cost about one round trip to the server, not one per statement.
            with db.pipeline() as pipeline:
                for job_id, files in items:
                    if replace is not None:
                        db.execute("DELETE FROM job_files WHERE job_id = %s AND "
                                   "starts_with(path, %s)", (job_id, replace))
                    for path, local in files:
                        deleted = replace is not None and path.startswith(replace)
                        self._put_one(db, pipeline, job_id, path, local, deleted=deleted)

        if items:
            self._transact(work)

    @staticmethod
    def _put_one(db: Connection, pipeline: psycopg.Pipeline, job_id: str, path: str,
                 local: Path, *, deleted: bool) -> None:
        # The file lies in the gateway's private job folder; a link there is never followed.
        fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            size = os.fstat(fd).st_size
            if not deleted:
                db.execute("DELETE FROM job_files WHERE job_id = %s AND path = %s",
                           (job_id, path))
            db.execute("INSERT INTO job_files (job_id, path, size) VALUES (%s, %s, %s)",
                       (job_id, path, size))
            chunk = 0
            while data := file.read(CHUNK_BYTES):
                db.execute("INSERT INTO job_file_chunks (job_id, path, chunk, data) "
                           "VALUES (%s, %s, %s, %s)", (job_id, path, chunk, data))
                chunk += 1
                if chunk % PIPELINED_CHUNKS == 0:
                    pipeline.sync()  # wait for the server: at most this many chunks in flight

    # -- reading -------------------------------------------------------------------------

    def listing(self, job_id: str) -> list[StoredFile]:
        """The job's stored files (none: nothing is stored for it)."""
        rows = self._run(lambda db: db.execute(
            "SELECT path, size, stored FROM job_files WHERE job_id = %s ORDER BY path",
            (job_id,)).fetchall())
        return [StoredFile(row["path"], int(row["size"]), row["stored"]) for row in rows]

    def read(self, job_id: str, path: str, sink: Callable[[bytes], object]) -> int:
        """Hand the file's bytes to ``sink`` chunk by chunk (streamed: one chunk in memory at
        a time); the bytes read."""

        def work(db: Connection) -> int:
            total = 0
            try:
                with db.cursor() as cursor:
                    rows: Iterator[dict[str, Any]] = cursor.stream(
                        "SELECT data FROM job_file_chunks WHERE job_id = %s AND path = %s "
                        "ORDER BY chunk", (job_id, path))
                    for row in rows:
                        data = bytes(row["data"])
                        sink(data)
                        total += len(data)
            except psycopg.Error as exc:
                if total:  # read again, the sink would get those bytes twice
                    raise self._db().error(exc, f"{path} of {job_id} broke off: ") from None
                raise
            return total

        return self._run(work)

    def stored_bytes(self, job_id: str, prefix: str = "") -> int:
        """How many bytes of the job's files (whose path starts with ``prefix``) are stored."""
        row = self._run(lambda db: db.execute(
            "SELECT coalesce(sum(size), 0) AS total FROM job_files WHERE job_id = %s AND "
            "starts_with(path, %s)", (job_id, prefix)).fetchone())
        return int(row["total"]) if row else 0

    # -- deleting ------------------------------------------------------------------------

    def delete(self, job_ids: Iterable[str], prefix: str = "") -> None:
        """Delete the files of ``job_ids`` (only those whose path starts with ``prefix``)."""
        ids = list(job_ids)
        if ids:
            self._transact(lambda db: db.execute(
                "DELETE FROM job_files WHERE job_id = ANY(%s) AND starts_with(path, %s)",
                (ids, prefix)))

    def purge(self, job_ids: Iterable[str]) -> None:
        """Delete every file of ``job_ids`` and remember that they are gone for good."""
        ids = list(job_ids)
        if not ids:
            return

        def work(db: Connection) -> None:
            db.execute("DELETE FROM job_files WHERE job_id = ANY(%s)", (ids,))
            db.execute("INSERT INTO purged_jobs (job_id) SELECT unnest(%s::text[]) "
                       "ON CONFLICT DO NOTHING", (ids,))

        self._transact(work)

    def purged(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` that were purged."""
        ids = list(job_ids)
        if not ids:
            return set()
        rows = self._run(lambda db: db.execute(
            "SELECT job_id FROM purged_jobs WHERE job_id = ANY(%s)", (ids,)).fetchall())
        return {row["job_id"] for row in rows}

    def delete_orphans(self, older_than_seconds: float) -> int:
        """Delete files stored longer ago than this for jobs the store has no record of (a
        host stopped between storing a job's files and registering it, and its spool is gone
        with it: its own folder would have registered them again), and the ids of jobs
        purged longer ago than :data:`PURGED_KEPT_SECONDS`; how many files."""

        def work(db: Connection) -> int:
            cursor = db.execute(
                "DELETE FROM job_files f WHERE stored < now() - make_interval(secs => %s) "
                "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = f.job_id)",
                (older_than_seconds,))
            db.execute("DELETE FROM purged_jobs WHERE purged < now() - make_interval(secs => "
                       "%s)", (PURGED_KEPT_SECONDS,))
            return cursor.rowcount

        return self._transact(work)
