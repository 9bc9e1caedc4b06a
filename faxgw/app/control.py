"""Queue control, as an administrator uses it: cancel, retry, hold, release.

Modelled on Postfix (``postsuper -h / -H / -r``) and HylaFAX (``faxrm``, ``faxalter``). Each
action is one checked store transition with its history event; asking for an action that
makes no sense in a job's state (cancelling a sent job, releasing one that is not held) is a
:class:`~faxgw.domain.errors.JobStateError`, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import Config
from ..domain import codes
from ..domain.errors import JobStateError
from ..domain.jobs import Job, JobState, utcnow
from ..ports import DocumentStore, JobStore
from .wiring import open_documents, store_open

#: The states each action may start from.
ACTION_STATES: dict[str, frozenset[JobState]] = {
    "cancel": frozenset({JobState.QUEUED, JobState.DEFERRED, JobState.HELD}),
    "retry": frozenset({JobState.FAILED, JobState.DEFERRED, JobState.HELD}),
    "hold": frozenset({JobState.QUEUED, JobState.DEFERRED}),
    "release": frozenset({JobState.HELD}),
}


def _check(job: Job, action: str) -> None:
    allowed = ACTION_STATES[action]
    if job.state not in allowed:
        names = ", ".join(sorted(state.value for state in allowed))
        raise JobStateError(f"job {job.id} is {job.state.value}: cannot {action} it "
                            f"(only {names} jobs)")


def cancel(store: JobStore, documents: DocumentStore, job_id: str) -> Job:
    """Stop a job for good (code 510); its files stay until the retention purge."""
    job = store.get(job_id)
    _check(job, "cancel")
    return store.transition(job.id, JobState.CANCELLED, event="cancelled",
                            detail="cancelled by an administrator", code=codes.CANCELLED,
                            error="cancelled", expect=ACTION_STATES["cancel"])


def hold(store: JobStore, documents: DocumentStore, job_id: str) -> Job:
    """Keep a job from being sent until it is released."""
    job = store.get(job_id)
    _check(job, "hold")
    return store.transition(job.id, JobState.HELD, event="held", detail="held by an administrator",
                            code=job.code, error=job.error, expect=ACTION_STATES["hold"])


def release(store: JobStore, documents: DocumentStore, job_id: str) -> Job:
    """Let a held job be sent again (now)."""
    job = store.get(job_id)
    _check(job, "release")
    return store.transition(job.id, JobState.QUEUED, event="released",
                            detail="released by an administrator", code=job.code,
                            error=job.error, expect=ACTION_STATES["release"])


def retry(store: JobStore, documents: DocumentStore, job_id: str) -> Job:
    """Send now, with attempts and age reset (like ``postsuper -r``).

    A job that failed at intake or rendering has its originals back from the failed area and
    is rendered again, so a fixed document (or a fixed configuration) gets a fresh chance.
    """
    job = store.get(job_id)
    _check(job, "retry")
    if not job.recipient:
        raise JobStateError(f"job {job.id} was refused at intake (code {job.code}): it has no "
                            "valid recipient; fix the input and submit it again")
    fields: dict[str, object] = {"attempts": 0, "age_from": utcnow(), "paused_since": None}
    if documents.restore_failed(job.id):
        fields["pages"] = None
        fields["bytes"] = None
    return store.transition(job.id, JobState.QUEUED, event="retry",
                            detail="sent again by an administrator: attempts and age reset",
                            expect=ACTION_STATES["retry"], fields=fields)


ACTIONS: dict[str, Callable[[JobStore, DocumentStore, str], Job]] = {
    "cancel": cancel, "retry": retry, "hold": hold, "release": release,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one action did to one job: the job after it, or why it was refused."""

    job_id: str
    job: Job | None = None
    refused: str | None = None


def act(config: Config, action: str, job_ids: Sequence[str] = (),
        state: JobState | None = None) -> list[Outcome]:
    """Apply ``action`` to each of ``job_ids`` (ids or unique prefixes), or to every job in
    ``state``: one :class:`Outcome` per job, in order. A job in a state where the action
    makes no sense is refused (its outcome says why); the others go on."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    documents = open_documents(config)
    with store_open(config) as store:
        targets = list(job_ids) if state is None else [
            job.id for job in store.list_jobs([state])]
        outcomes = []
        for job_id in targets:
            try:
                outcomes.append(Outcome(job_id, job=ACTIONS[action](store, documents, job_id)))
            except JobStateError as exc:
                outcomes.append(Outcome(job_id, refused=str(exc)))
        return outcomes


__all__ = ["ACTIONS", "ACTION_STATES", "Outcome", "act", "cancel", "hold", "release", "retry"]
