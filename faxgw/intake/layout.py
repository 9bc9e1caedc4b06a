"""Where things live in the spool: every folder and file name in one place.

::

    <spool>/outgoing/              intake: users and scanners drop files here
    <spool>/outgoing/<NUMBER>/     a file dropped here is one job to NUMBER
    <spool>/outgoing/NAME.fax      a manifest: the job's number and the files it takes
    <spool>/jobs/<id>/             a job's own folder: job.json, docs/, the attachment
    <spool>/failed/<id>/           the originals of jobs that failed at intake or rendering
    <spool>/tmp/                   jobs being assembled (renamed into jobs/ when complete)
    <spool>/state/                 the job database, the token cache
    <spool>/state/unregistered/    a mark per job folder the store may not know yet
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTGOING = "outgoing"
JOBS = "jobs"
FAILED = "failed"
TMP = "tmp"
STATE = "state"
UNREGISTERED = "unregistered"
DATABASE = "faxgw.db"
JOB_FILE = "job.json"
DOCS = "docs"
MANIFEST_SUFFIX = ".fax"
#: Names that are still being written by their producer and are never taken.
IGNORED_SUFFIXES = (".tmp", ".part")


@dataclass(frozen=True, slots=True)
class SpoolLayout:
    """The folders of one spool root."""

    root: Path

    @property
    def outgoing(self) -> Path:
        """The intake folder."""
        return self.root / OUTGOING

    @property
    def jobs(self) -> Path:
        """Where accepted jobs keep their files."""
        return self.root / JOBS

    @property
    def failed(self) -> Path:
        """Where the originals of failed jobs are kept for inspection."""
        return self.root / FAILED

    @property
    def tmp(self) -> Path:
        """Where jobs are assembled before they are committed by a rename."""
        return self.root / TMP

    @property
    def state(self) -> Path:
        """The database and token cache folder."""
        return self.root / STATE

    @property
    def unregistered(self) -> Path:
        """One empty file per job folder committed to ``jobs/`` whose registration in the job
        store is not known to have happened: what start-up recovery looks at, instead of
        every job folder ever kept."""
        return self.state / UNREGISTERED

    @property
    def database(self) -> Path:
        """The SQLite job store."""
        return self.state / DATABASE

    def job_dir(self, job_id: str) -> Path:
        """The folder of an accepted job."""
        return self.jobs / job_id

    def attachment(self, job_id: str, suffix: str = "pdf") -> Path:
        """The rendered attachment of a job (``fax-<id>.pdf``)."""
        return self.job_dir(job_id) / f"fax-{job_id}.{suffix}"

    def all_dirs(self) -> tuple[Path, ...]:
        """Every folder the gateway needs."""
        return (self.outgoing, *self.private_dirs())

    def private_dirs(self) -> tuple[Path, ...]:
        """The folders only the gateway (and ``[spool] group``) may enter: all but
        ``outgoing/``."""
        return (self.jobs, self.failed, self.tmp, self.state)

    def database_files(self) -> tuple[Path, ...]:
        """The job store's file and the ones SQLite keeps beside it."""
        return tuple(self.state / f"{DATABASE}{suffix}"
                     for suffix in ("", "-wal", "-shm", "-journal"))
