"""The ports: what the engine and the use cases ask of the parts that plug into them.

Interfaces only; the adapters live in their own folders and are chosen in one place,
:mod:`faxgw.app.wiring`::

    port                 adapters now                    next
    ──────────────────   ─────────────────────────────   ──────────────────────────────
    Transport, Session   transport.smtp (aiosmtplib), transport.graph (httpx)
    JobStore             store.sqlite, store.postgres
    ReportStore          store.sqlite, store.postgres
    DocumentStore        intake.spool (job folders), app.cluster_spool (+ store.postgres)
    CredentialProvider   auth (none, password, oauth2: SMTP, Graph and IMAP tokens)
    Inbox                inbox.imap (aioimaplib), inbox.graph (httpx)

The engine never imports an adapter: it is handed these. A failure crosses a port already
classified (:class:`~faxgw.domain.errors.DeliveryError` with its
:class:`~faxgw.domain.disposition.Disposition`), never as a third-party exception.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

from .domain.jobs import HistoryEvent, Job, JobState
from .domain.reports import Report
from .domain.signin import AccountStatus, KeepaliveResult

__all__ = [
    "Accepted",
    "CredentialProvider",
    "Credentials",
    "DocumentStore",
    "Inbox",
    "InboxBatch",
    "InboxMessage",
    "JobStore",
    "Resource",
    "Session",
    "Transport",
]


# -- sending -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The server took the message: its reply as given (``250 2.0.0 OK <id>``,
    ``202 Accepted``) and, when it names one, its own id for the message."""

    reply: str
    server_id: str | None = None


class Session(Protocol):
    """One open, authenticated way to send for one sending mailbox, reused for many faxes."""

    account: str

    @property
    def usable(self) -> bool:
        """Whether the session can take another message now."""
        ...

    async def open(self) -> None:
        """Connect and authenticate. Raises a classified
        :class:`~faxgw.domain.errors.DeliveryError` (``AuthError``, ``ConnectError``, …)."""
        ...

    async def send(self, message: bytes, *, sender: str, recipients: Sequence[str],
                   envelope_id: str = "") -> Accepted:
        """Send one prepared fax email (the MIME bytes) and return the server's acceptance;
        ``envelope_id``: a bounce is to name it, where the transport can ask (SMTP DSN).

        A refusal or a fault is raised as a :class:`~faxgw.domain.errors.DeliveryError`
        whose ``disposition``, ``code`` and ``reply`` say what it was and what to do.
        """
        ...

    async def close(self) -> None:
        """End the session politely; never raises."""
        ...


class Transport(Protocol):
    """Where fax emails leave the gateway: opens sessions for sending mailboxes."""

    #: Short name for logs and the status sheet (``smtp``, ``graph``).
    name: str

    def session(self, account: str) -> Session:
        """A new, not yet opened session for ``account``."""
        ...

    def warm(self) -> None:
        """Load what every session shares (a TLS trust store) now, off the event loop;
        a problem with it is reported when the first session opens."""
        ...


# -- credentials ---------------------------------------------------------------------------


class Resource(StrEnum):
    """What a credential is for: one token cannot span two resources."""

    SMTP = "smtp"
    GRAPH = "graph"
    IMAP = "imap"
    GRAPH_MAIL = "graph-mail"  # reading and moving mail through Graph (Mail.ReadWrite)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one session authenticates with, whatever the transport.

    ``kind`` is ``none``, ``password`` (a user name and password) or ``bearer`` (an OAuth2
    access token: XOAUTH2 for SMTP and IMAP, an ``Authorization`` header for Graph).
    ``secret`` is kept out of ``repr`` so that a logged or raised object never shows it.
    """

    kind: Literal["none", "password", "bearer"]
    username: str = ""
    secret: str = field(default="", repr=False)


class CredentialProvider(Protocol):
    """Gives the credentials for a sending mailbox, keeps sign-ins alive, tells their state.

    Raises :class:`~faxgw.domain.errors.AuthError` (361, 370, …) when a person must act, and
    :class:`~faxgw.domain.errors.ConnectError` (360) when the identity provider cannot be
    reached.
    """

    async def credentials(self, account: str, *, resource: Resource = Resource.SMTP,
                          force_refresh: bool = False) -> Credentials:
        """Credentials for ``account`` at ``resource``; ``force_refresh`` after a refusal."""
        ...

    async def keepalive(self) -> list[KeepaliveResult]:
        """Refresh every stored sign-in now (none for methods without one)."""
        ...

    def status(self) -> list[AccountStatus]:
        """The sign-in state of every known account (none for methods without sign-in)."""
        ...

    def fingerprint(self) -> object:
        """Something that changes when the credentials change (a new sign-in, a replaced
        password file), so that a paused account is tried again at once. Never a secret."""
        ...

    def close(self) -> None:
        """Release connections (to the identity provider)."""
        ...


# -- where a job's files live -------------------------------------------------------------


class DocumentStore(Protocol):
    """A job's documents (the originals) and its rendered attachment.

    Paths are local files: a store that keeps documents elsewhere (a database shared by
    several hosts) brings them to a local folder before it returns one.
    """

    def documents(self, job_id: str) -> list[Path]:
        """The job's documents, in order."""
        ...

    def job_dir(self, job_id: str) -> Path:
        """The folder the job's attachment is rendered into."""
        ...

    def keep_failed(self, job_id: str) -> Path:
        """Keep a failed job's originals for inspection; where they are now."""
        ...

    def restore_failed(self, job_id: str) -> bool:
        """Bring a failed job's originals back to be rendered again (``faxgw retry``);
        False when there are none."""
        ...

    def remove(self, job_id: str) -> None:
        """Delete a finished job's files (retention purge)."""
        ...


# -- reading the sending mailbox ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One message found in the mailbox: the mailbox's id for it, and the message itself."""

    id: str
    raw: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class InboxBatch:
    """Messages newer than a cursor, and the cursor to read on from."""

    messages: list[InboxMessage]
    cursor: str


class Inbox(Protocol):
    """Reads what arrives in a sending mailbox (fax-service reports, bounces).

    The cursor is durable and opaque to the caller (IMAP: UIDVALIDITY and UID; Graph: a
    delta link): reading from the same cursor again gives the same messages.
    """

    async def fetch(self, cursor: str | None, *, limit: int = 100) -> InboxBatch:
        """Messages after ``cursor`` (from the start when None), oldest first."""
        ...

    async def mark_done(self, message_ids: Sequence[str]) -> None:
        """Move processed messages out of the way (to the done folder), never delete them."""
        ...

    async def close(self) -> None:
        """Log out and close the connection."""
        ...


# -- the record of truth ------------------------------------------------------------------


class ReportStore(abc.ABC):
    """The reports read from sending mailboxes (each once, by its unique ``key``, with its
    raw message), and where the reader is in each mailbox."""

    @abc.abstractmethod
    def add_report(self, report: Report) -> bool:
        """Record ``report``; False (and nothing changed) when its key is already known."""

    @abc.abstractmethod
    def get_report(self, key: str) -> Report | None:
        """The report recorded with this key, if any."""

    @abc.abstractmethod
    def reports(self, *, job_id: str | None = None, unmatched: bool = False,
                limit: int = 100) -> list[Report]:
        """Reports, newest first: of one job, only those tied to no job, or all."""

    @abc.abstractmethod
    def inbox_cursor(self, mailbox: str) -> str | None:
        """Where the reader of ``mailbox`` left off (None: from the start)."""

    @abc.abstractmethod
    def save_inbox_cursor(self, mailbox: str, cursor: str) -> None:
        """Remember where the reader of ``mailbox`` is."""


class JobStore(abc.ABC):
    """Jobs and their append-only history: the record of truth for every accepted job.

    Every change of a job is one transaction that also appends its history event, so the
    history never disagrees with the job row. The store keeps facts; the rules (backoff,
    expiry, waiting for an account) are applied above it (:mod:`faxgw.domain.retry`), so
    every store behaves alike. Every store passes the same contract suite
    (``tests/store_contract.py``).

    **Claims.** A claim moves due jobs to ``sending`` with an ``owner`` (the runner) and a
    lease (until when the claim holds). An outcome recorded with ``owner=`` is fenced: it is
    refused when the job is no longer that owner's. Jobs being prepared (``preparing`` set
    by :meth:`add` or :meth:`update`) are never claimed.
    """

    @abc.abstractmethod
    def add(self, job: Job, *, detail: str = "") -> None:
        """Insert a new job (state ``queued`` or ``failed``) with an ``accepted`` event.

        A job added with ``job.preparing`` set is not claimed until that is cleared."""

    @abc.abstractmethod
    def add_all(self, jobs: Sequence[tuple[Job, str]]) -> None:
        """:meth:`add` for each job (with its event's detail) in one transaction: all are
        stored, or none is (StoreError, e.g. one of them is stored already)."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Job:
        """The job with this id, or a unique prefix of it; raises JobNotFoundError."""

    @abc.abstractmethod
    def exists(self, job_id: str) -> bool:
        """Whether a job with exactly this id is stored."""

    @abc.abstractmethod
    def unknown(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` the store holds no job for (exact ids)."""

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
        self, now: datetime, limit: int, *, owner: str, lease_until: datetime,
        exclude_senders: Iterable[str] = (),
    ) -> list[Job]:
        """Atomically move due jobs (queued, or deferred with next_attempt_at <= now, and not
        being prepared) to ``sending`` for ``owner`` until ``lease_until``, and return them,
        oldest first. Two runners never claim the same job.

        Jobs whose sender is in ``exclude_senders`` (paused mailboxes, any case) are left."""

    @abc.abstractmethod
    def renew(self, owner: str, job_ids: Iterable[str], lease_until: datetime) -> list[str]:
        """Extend ``owner``'s claims on ``job_ids``; the ids still held by it."""

    @abc.abstractmethod
    def next_due_at(self) -> datetime | None:
        """When the earliest deferred job is due (None when nothing waits)."""

    @abc.abstractmethod
    def transition(
        self, job_id: str, target: JobState, *, event: str, detail: str = "",
        code: int | None = None, error: str | None = None,
        next_attempt_at: datetime | None = None, count_attempt: bool = False,
        expect: Iterable[JobState] | None = None, owner: str | None = None,
        fields: dict[str, object] | None = None,
    ) -> Job:
        """Move a job to ``target`` and append its history event in one transaction.

        Raises JobStateError when the transition is not allowed from the job's state (or the
        state is not in ``expect``), or when ``owner`` is given and the job is not claimed
        by it. Leaving ``sending`` ends the claim. ``count_attempt`` adds one to
        ``attempts``; ``fields`` updates other columns (:data:`~faxgw.domain.jobs.UPDATABLE`).
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
    def claim_owners(self) -> set[str]:
        """The runners that hold a claim (a job in ``sending``) or a ``preparing`` mark; ``""``
        stands for a claim without an owner (made by an older faxgw)."""

    @abc.abstractmethod
    def recover_sending(self, *, owners: Iterable[str] | None = None,
                        lease_ended_by: datetime | None = None) -> list[str]:
        """Return jobs left in ``sending`` to ``queued`` with a ``recovered`` event; their ids.
        Only the claims of ``owners`` when given (``""`` matches a claim without an owner),
        and only those whose lease ended by ``lease_ended_by`` when it is given (and those of
        them marked as being handed over become ``unconfirmed``: domain.cluster); every
        ``sending`` job when both are None."""

    @abc.abstractmethod
    def recover_preparing(self, *, owners: Iterable[str] | None = None) -> list[str]:
        """Clear the ``preparing`` marks of ``owners`` (every mark when None), which stopped
        before their jobs were rendered; their ids (they are rendered when they are sent)."""

    @abc.abstractmethod
    def sent_before(self, before: datetime, *, limit: int = 500) -> list[Job]:
        """Jobs in ``sent`` whose last change was before ``before`` (awaiting a report for
        too long), oldest first."""

    @abc.abstractmethod
    def to_notify(self, states: Iterable[JobState], *, limit: int = 500) -> list[Job]:
        """Jobs with a ``notify`` address, in one of ``states``, whose present outcome
        (``state:code``) differs from the ``notified`` one, oldest change first."""

    @abc.abstractmethod
    def purge(self, before: datetime) -> list[str]:
        """Delete finished jobs (sent, confirmed, unconfirmed, failed, cancelled) last changed
        before ``before``, with their history and reports."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's connections."""
