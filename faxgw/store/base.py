"""The job store interface: the record of truth for every accepted job.

SQLite serves one gateway host; a PostgreSQL store for several hosts sharing one queue plugs
in behind the same interface (claims with ``SELECT … FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import datetime

from ..jobs import HistoryEvent, Job, JobState


class JobStore(abc.ABC):
    """Jobs and their append-only history.

    Every change of a job is one transaction that also appends its history event, so the
    history never disagrees with the job row.
    """

    @abc.abstractmethod
    def add(self, job: Job, *, detail: str = "") -> None:
        """Insert a new job (state ``queued`` or ``failed``) with an ``accepted`` event."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Job:
        """The job with this id, or a unique prefix of it; raises JobNotFoundError."""

    @abc.abstractmethod
    def exists(self, job_id: str) -> bool:
        """Whether a job with exactly this id is stored."""

    @abc.abstractmethod
    def list_jobs(
        self, states: Iterable[JobState] | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally only in the given states."""

    @abc.abstractmethod
    def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history, oldest first."""

    @abc.abstractmethod
    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state present, zero included)."""

    @abc.abstractmethod
    def claim_due(
        self, now: datetime, limit: int, *, exclude_senders: Iterable[str] = (),
        exclude_ids: Iterable[str] = (),
    ) -> list[Job]:
        """Atomically move due jobs (queued, or deferred with next_attempt_at <= now) to
        ``sending`` and return them, oldest first. Two workers never claim the same job.

        Jobs of ``exclude_senders`` (paused mailboxes) and ``exclude_ids`` are left alone."""

    @abc.abstractmethod
    def next_due_at(self) -> datetime | None:
        """When the earliest deferred job is due (None when nothing waits)."""

    @abc.abstractmethod
    def transition(
        self,
        job_id: str,
        target: JobState,
        *,
        event: str,
        detail: str = "",
        code: int | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        count_attempt: bool = False,
        expect: Iterable[JobState] | None = None,
        fields: dict[str, object] | None = None,
    ) -> Job:
        """Move a job to ``target`` and append its history event in one transaction.

        Raises JobStateError when the transition is not allowed from the job's state (or the
        state is not in ``expect``). ``count_attempt`` adds one to ``attempts``; ``fields``
        updates other columns (pages, bytes, recipient, message_id, …).
        """

    @abc.abstractmethod
    def update(self, job_id: str, *, event: str = "", detail: str = "", **fields: object) -> Job:
        """Update columns of a job without a state change, optionally with an event."""

    @abc.abstractmethod
    def add_event(
        self, job_id: str, event: str, detail: str = "", *, code: int | None = None
    ) -> None:
        """Append an event to a job's history (a server reply, a note)."""

    @abc.abstractmethod
    def recover_sending(self) -> list[str]:
        """Return jobs left in ``sending`` by a stopped process to ``queued``; their ids."""

    @abc.abstractmethod
    def purge(self, before: datetime) -> list[str]:
        """Delete finished jobs (sent, failed, cancelled) last changed before ``before``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's connections."""
