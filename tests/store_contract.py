"""The contract every :class:`~faxgw.ports.JobStore` passes, whatever keeps the jobs.

The tests speak only through the port, so a store that passes them behaves as the engine
expects: the same states, claims, fencing, history, recovery and purge on SQLite or PostgreSQL.

This module is not collected by itself (its name is not ``test_*.py`` and
:class:`JobStoreContract` does not start with ``Test``). A store plugs in with a test module
that subclasses it under a ``Test…`` name and provides one fixture, ``make_store``::

    # tests/test_store_postgres.py
    import threading
    from collections.abc import Iterator

    import pytest

    from faxgw.domain.reports import MatchedBy, Outcome, Report
from faxgw.ports import JobStore, ReportStore
    from faxgw.store.postgres import PostgresJobStore

    from .conftest import FakeClock
    from .store_contract import JobStoreContract, MakeStore


    class TestPostgresJobStore(JobStoreContract):
        @pytest.fixture
        def make_store(self, clock: FakeClock) -> Iterator[MakeStore]:
            dsn = ...  # a new, empty database (or schema) for this one test
            made: list[tuple[JobStore, int]] = []

            def make() -> JobStore:
                store = PostgresJobStore(dsn, clock=clock)
                made.append((store, threading.get_ident()))
                return store

            yield make
            for store, thread in made:
                if thread == threading.get_ident():
                    store.close()

What ``make_store`` must give:

* a new handle (its own connection) on the **same** database at every call; the database is
  empty when the test starts. Two handles stand for two runners (claims, fencing).
* handles that take their times (``updated``, a history event's ``at``) from the test's
  ``clock`` fixture (:class:`tests.conftest.FakeClock`): the tests compare them with ``clock()``.
* handles that may be made in a worker thread: the concurrent-claims test opens one handle per
  thread, uses it only there and closes it there. The fixture closes, at teardown, the handles
  made in the test's own thread.

A defect a store still has is listed in its subclass's :attr:`JobStoreContract.KNOWN_DEFECTS`
(test name → what is wrong): that test then runs as a strict ``xfail``, so the suite stays
green while the defect is open and fails as soon as it is fixed (remove the entry then).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from itertools import product
from typing import Any, ClassVar

import pytest

from faxgw.domain import codes
from faxgw.domain.cluster import HANDING_OVER
from faxgw.domain.errors import JobNotFoundError, JobStateError, StoreError
from faxgw.domain.jobs import (
    TRANSITIONS,
    UPDATABLE,
    HistoryEvent,
    Job,
    JobState,
    new_job_id,
)
from faxgw.domain.reports import MatchedBy, Outcome, Report
from faxgw.ports import JobStore, ReportStore

from .conftest import FakeClock

__all__ = ["JobStoreContract", "MakeStore"]

#: Returns a new handle on the test's one database.
MakeStore = Callable[[], JobStore]

NUMBER = "+4930123456"
SENDER = "fax@contoso.com"
RUNNER_A = "runner-a"
RUNNER_B = "runner-b"
LEASE = timedelta(minutes=5)
#: A zone that is not UTC: a store must give back the same instant, in UTC.
BERLIN = timezone(timedelta(hours=1))


def new_job(created: datetime, *, job_id: str | None = None, **fields: Any) -> Job:
    """A job as intake makes one, created at ``created``."""
    values: dict[str, Any] = {"number": NUMBER, "recipient": f"{NUMBER}@fax.example.net",
                              "sender": SENDER, **fields}
    return Job(id=job_id or new_job_id(), created=created, **values)


def claim(
    store: JobStore, clock: FakeClock, *, owner: str = RUNNER_A, limit: int = 100,
    exclude_senders: Iterable[str] = (),
) -> list[Job]:
    """Claim what is due now for ``owner``, with a lease of :data:`LEASE`."""
    return store.claim_due(clock(), limit, owner=owner, lease_until=clock() + LEASE,
                           exclude_senders=exclude_senders)


def ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


def put_in_state(
    store: JobStore, clock: FakeClock, state: JobState, *, created: datetime | None = None,
    due: datetime | None = None, owner: str = RUNNER_A,
) -> Job:
    """Add a job and bring it to ``state`` by the ways the gateway does (a claim for
    ``sending``, an outcome after it for ``sent`` and ``deferred``); the stored job.

    For the states reached through a claim, no other job may be due at the time."""
    failed = state is JobState.FAILED
    job = new_job(created or clock() - timedelta(hours=1),
                  state=JobState.FAILED if failed else JobState.QUEUED,
                  code=codes.INVALID_NUMBER if failed else None)
    store.add(job)
    reported = state in (JobState.CONFIRMED, JobState.UNCONFIRMED)
    if state in (JobState.SENDING, JobState.SENT, JobState.DEFERRED) or reported:
        assert ids(claim(store, clock, owner=owner)) == [job.id], "another job was due"
        if state is JobState.SENT or reported:
            store.transition(job.id, JobState.SENT, event="sent", code=codes.SENT,
                             count_attempt=True, owner=owner)
        if state is JobState.CONFIRMED:
            store.transition(job.id, state, event="confirmed", code=codes.CONFIRMED)
        elif state is JobState.UNCONFIRMED:
            store.transition(job.id, state, event="unconfirmed", code=codes.UNCONFIRMED)
        elif state is JobState.DEFERRED:
            store.transition(job.id, JobState.DEFERRED, event="deferred",
                             code=codes.TRY_LATER, count_attempt=True, owner=owner,
                             next_attempt_at=due or clock() + timedelta(hours=1))
    elif state is JobState.HELD:
        store.transition(job.id, JobState.HELD, event="hold")
    elif state is JobState.CANCELLED:
        store.transition(job.id, JobState.CANCELLED, event="cancel", code=codes.CANCELLED)
    stored = store.get(job.id)
    assert stored.state is state
    return stored


def exactly(job: Job) -> list[tuple[str, type, object, timedelta | None]]:
    """Every field of ``job`` with its type, and a time's offset too: ``==`` alone takes
    ``1`` for ``True`` and one instant in two zones for the same."""
    return [(name, type(value), value, value.utcoffset() if isinstance(value, datetime) else None)
            for name, value in ((f.name, getattr(job, f.name)) for f in dataclasses.fields(job))]


def assert_utc(value: datetime | None) -> None:
    assert value is not None and value.utcoffset() == timedelta(seconds=0), value


class JobStoreContract:
    """The behaviour of :class:`~faxgw.ports.JobStore`; subclass it with a ``make_store``
    fixture (see the module's docstring)."""

    #: Test name → the store's defect that makes it fail (run as a strict xfail).
    KNOWN_DEFECTS: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_defects(self, request: pytest.FixtureRequest) -> None:
        name = getattr(request.node, "originalname", request.node.name)
        reason = self.KNOWN_DEFECTS.get(name)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    @pytest.fixture
    def store(self, make_store: MakeStore) -> JobStore:
        return make_store()

    # -- add, get, exists --------------------------------------------------------------

    def test_get_by_exact_id_and_by_unique_prefix(self, store: JobStore, clock: FakeClock) -> None:
        """A prefix finds a job when it is unique, even if it is another job's exact id's
        prefix too; an exact id wins over being a prefix of a longer one."""
        now = clock()
        for job_id in ("job-a1", "job-a1x", "job-b2"):
            store.add(new_job(now, job_id=job_id))
        assert store.get("job-a1").id == "job-a1"
        assert store.get("job-a1x").id == "job-a1x"
        assert store.get("job-b").id == "job-b2"

    def test_get_refuses_ambiguous_prefix_and_unknown_id(self, store: JobStore,
                                                         clock: FakeClock) -> None:
        now = clock()
        store.add(new_job(now, job_id="job-a1"))
        store.add(new_job(now, job_id="job-a2"))
        for wanted in ("job-a", "job", "job-c", "nope", ""):
            with pytest.raises(JobNotFoundError):
                store.get(wanted)

    def test_get_prefix_has_no_wildcards(self, store: JobStore, clock: FakeClock) -> None:
        """``%`` and ``_`` in what is asked for are themselves, not SQL LIKE patterns."""
        store.add(new_job(clock(), job_id="ab-1"))
        for wanted in ("%", "a%", "_", "a_", "%1"):
            with pytest.raises(JobNotFoundError):
                store.get(wanted)
        store.add(new_job(clock(), job_id="a_c%d"))
        assert store.get("a_c%").id == "a_c%d"

    def test_adding_an_id_twice_is_refused(self, store: JobStore, clock: FakeClock) -> None:
        """The second add fails as a whole: the first job and its history stay as they were."""
        first = new_job(clock(), job_id="job-1", subject="first")
        store.add(first, detail="first")
        with pytest.raises(StoreError):
            store.add(new_job(clock(), job_id="job-1", subject="second"), detail="second")
        assert store.get("job-1").subject == "first"
        assert [(e.event, e.detail) for e in store.history("job-1")] == [("accepted", "first")]
        assert sum(store.counts().values()) == 1

    def test_add_all_stores_every_job_with_its_event(self, store: JobStore,
                                                     clock: FakeClock) -> None:
        failed = new_job(clock(), job_id="job-2", state=JobState.FAILED,
                         code=codes.INVALID_NUMBER, error="not a fax number")
        store.add_all([(new_job(clock(), job_id="job-1"), "one"), (failed, "two")])
        assert store.get("job-1").state is JobState.QUEUED
        assert store.get("job-2").code == codes.INVALID_NUMBER
        assert store.history("job-2") == [HistoryEvent(
            "job-2", clock(), "accepted", JobState.FAILED, codes.INVALID_NUMBER, "two")]
        assert [(e.event, e.detail) for e in store.history("job-1")] == [("accepted", "one")]
        store.add_all([])
        assert sum(store.counts().values()) == 2

    def test_add_all_stores_none_when_one_is_stored_already(self, store: JobStore,
                                                            clock: FakeClock) -> None:
        store.add(new_job(clock(), job_id="job-2", subject="first"), detail="first")
        with pytest.raises(StoreError):
            store.add_all([(new_job(clock(), job_id="job-1"), ""),
                           (new_job(clock(), job_id="job-2", subject="second"), "second"),
                           (new_job(clock(), job_id="job-3"), "")])
        assert not store.exists("job-1") and not store.exists("job-3")
        assert store.get("job-2").subject == "first"
        assert [e.detail for e in store.history("job-2")] == ["first"]
        assert store.history("job-1") == []

    def test_exists_needs_the_exact_id(self, store: JobStore, clock: FakeClock) -> None:
        store.add(new_job(clock(), job_id="job-123"))
        assert store.exists("job-123")
        assert not store.exists("job-12")
        assert not store.exists("job-1234")

    def test_add_failed_job_records_its_state_and_code(self, store: JobStore,
                                                       clock: FakeClock) -> None:
        """A job refused at intake is stored as failed, and the ``accepted`` event says so."""
        job = new_job(clock(), state=JobState.FAILED, code=codes.INVALID_NUMBER,
                      error="not a fax number")
        store.add(job, detail="refused")
        got = store.get(job.id)
        assert (got.state, got.code, got.error) == (
            JobState.FAILED, codes.INVALID_NUMBER, "not a fax number")
        assert store.history(job.id) == [HistoryEvent(
            job.id, clock(), "accepted", JobState.FAILED, codes.INVALID_NUMBER, "refused")]
        assert claim(store, clock) == []

    # -- reading ------------------------------------------------------------------------

    def test_list_jobs_newest_first_filtered_and_limited(self, store: JobStore,
                                                         clock: FakeClock) -> None:
        """Order is by creation time (not by id, not by insertion order)."""
        base = clock() - timedelta(hours=1)
        middle = new_job(base + timedelta(minutes=2), job_id="c-middle")
        oldest = new_job(base, job_id="b-oldest")
        newest = new_job(base + timedelta(minutes=3), job_id="a-newest")
        refused = new_job(base + timedelta(minutes=1), job_id="d-refused",
                          state=JobState.FAILED, code=codes.INVALID_NUMBER)
        for job in (middle, oldest, newest, refused):
            store.add(job)
        store.transition(oldest.id, JobState.HELD, event="hold")
        assert ids(store.list_jobs()) == [newest.id, middle.id, refused.id, oldest.id]
        assert ids(store.list_jobs(limit=2)) == [newest.id, middle.id]
        assert ids(store.list_jobs(states=[JobState.QUEUED])) == [newest.id, middle.id]
        assert ids(store.list_jobs(states={JobState.HELD, JobState.FAILED})) == [
            refused.id, oldest.id]
        assert ids(store.list_jobs(states=[JobState.QUEUED, JobState.FAILED], limit=2)) == [
            newest.id, middle.id]
        assert store.list_jobs(states=[JobState.SENT]) == []
        assert store.list_jobs(states=[]) == []

    def test_counts_every_state(self, store: JobStore, clock: FakeClock) -> None:
        """Every state is a key, those without jobs with zero."""
        assert store.counts() == dict.fromkeys(JobState, 0)
        put_in_state(store, clock, JobState.SENT)
        put_in_state(store, clock, JobState.HELD)
        put_in_state(store, clock, JobState.QUEUED)
        put_in_state(store, clock, JobState.FAILED)
        put_in_state(store, clock, JobState.FAILED)
        expected = dict.fromkeys(JobState, 0)
        expected.update({JobState.SENT: 1, JobState.HELD: 1, JobState.QUEUED: 1,
                         JobState.FAILED: 2})
        assert store.counts() == expected

    def test_history_oldest_first(self, store: JobStore, clock: FakeClock) -> None:
        """``accepted`` with the add's detail first, then every event in the order it was
        recorded, each at the store clock's time."""
        job = new_job(clock() - timedelta(hours=1))
        added_at = clock()
        store.add(job, detail="from /spool/in/a.pdf")
        clock.advance(10)
        store.add_event(job.id, "note", "first note")
        clock.advance(10)
        assert ids(claim(store, clock)) == [job.id]
        clock.advance(10)
        store.transition(job.id, JobState.SENT, event="sent", code=codes.SENT,
                         detail="250 2.0.0 OK", owner=RUNNER_A)
        assert store.history(job.id) == [
            HistoryEvent(job.id, added_at, "accepted", JobState.QUEUED, None,
                         "from /spool/in/a.pdf"),
            HistoryEvent(job.id, added_at + timedelta(seconds=10), "note", None, None,
                         "first note"),
            HistoryEvent(job.id, added_at + timedelta(seconds=20), "sending",
                         JobState.SENDING, None, "attempt 1"),
            HistoryEvent(job.id, added_at + timedelta(seconds=30), "sent", JobState.SENT,
                         codes.SENT, "250 2.0.0 OK"),
        ]
        for event in store.history(job.id):
            assert_utc(event.at)
        assert store.history("no-such-job") == []

    # -- round trip ---------------------------------------------------------------------

    #: Fields the round-trip test leaves to other tests: the store stamps ``updated`` itself,
    #: a new job holds no claim, ``paused_since`` has its own test.
    NOT_ROUND_TRIPPED: ClassVar[frozenset[str]] = frozenset(
        {"updated", "owner", "lease_until", "paused_since"})

    def test_every_field_round_trips(self, store: JobStore, clock: FakeClock) -> None:
        """What is added is what is read back; times are the same instants, as aware UTC,
        to the microsecond, whatever zone they were given in."""
        created = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=BERLIN)
        job = Job(
            id="job-round-trip",
            number=NUMBER,
            state=JobState.FAILED,
            code=codes.DOCUMENT_ENCRYPTED,
            created=created,
            updated=created,
            attempts=3,
            next_attempt_at=datetime(2026, 3, 2, 10, 0, 0, 1, tzinfo=BERLIN),
            recipient=f"{NUMBER}@fax.example.net",
            sender="Fax.Desk@contoso.com",
            subject="Invoice 4711 – ÄÖÜ",
            note="call before sending",
            documents=["a.pdf", "b ü.png", "c/d.tiff"],
            pages=7,
            bytes=123456,
            message_id="<abc@contoso.com>",
            error="the PDF is encrypted",
            last_reply="554 5.6.0 refused",
            source="/spool/in/invoice.pdf",
            age_from=datetime(2026, 3, 1, 8, 0, 0, 999999, tzinfo=UTC),
            cover=True,
            preparing="render-3",
        )
        covered = {f.name for f in dataclasses.fields(Job)} - self.NOT_ROUND_TRIPPED
        expected = {name: getattr(job, name) for name in covered}
        clock.advance(30)
        store.add(dataclasses.replace(job, documents=list(job.documents)))
        got = store.get(job.id)
        assert {name: getattr(got, name) for name in covered} == expected
        assert got.updated == clock()
        assert (got.owner, got.lease_until) == (None, None)
        for value in (got.created, got.updated, got.next_attempt_at, got.age_from):
            assert_utc(value)
        assert got.state is JobState.FAILED and isinstance(got.state, JobState)

    def test_paused_since_round_trips(self, store: JobStore, clock: FakeClock) -> None:
        """A job added while its account is paused keeps when the pause began."""
        since = datetime(2026, 3, 2, 11, 0, 0, 42, tzinfo=BERLIN)
        job = new_job(clock(), paused_since=since)
        store.add(job)
        got = store.get(job.id).paused_since
        assert got == since
        assert_utc(got)

    @pytest.mark.parametrize("cover", [True, False, None])
    def test_cover_round_trips(self, store: JobStore, clock: FakeClock,
                               cover: bool | None) -> None:
        """True, False and None (the service's default) are three different answers."""
        job = new_job(clock(), cover=cover)
        store.add(job)
        assert store.get(job.id).cover is cover

    def test_age_from_defaults_to_created(self, store: JobStore, clock: FakeClock) -> None:
        created = clock() - timedelta(days=2)
        job = new_job(created)
        assert job.age_from is None
        store.add(job)
        assert store.get(job.id).age_from == created

    def test_empty_documents_and_unset_optionals_round_trip(self, store: JobStore,
                                                            clock: FakeClock) -> None:
        job = new_job(clock())
        store.add(job)
        got = store.get(job.id)
        assert got.documents == []
        assert (got.code, got.pages, got.bytes, got.message_id, got.error, got.last_reply,
                got.next_attempt_at, got.paused_since, got.cover, got.preparing) == (None,) * 10

    # -- transitions --------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("source", "target"), list(product(JobState, JobState)),
        ids=[f"{s.value}-to-{t.value}" for s, t in product(JobState, JobState)],
    )
    def test_transition_follows_the_table(self, store: JobStore, clock: FakeClock,
                                          source: JobState, target: JobState) -> None:
        """Every pair of states: allowed per ``TRANSITIONS`` moves the job and records the
        event; anything else raises JobStateError and changes nothing."""
        job = put_in_state(store, clock, source)
        before = store.history(job.id)
        clock.advance(5)
        due = clock() + timedelta(minutes=10) if target is JobState.DEFERRED else None
        if target in TRANSITIONS[source]:
            moved = store.transition(job.id, target, event="move", detail="why",
                                     next_attempt_at=due)
            assert moved.state is target
            assert exactly(moved) == exactly(store.get(job.id))
            assert store.history(job.id) == [
                *before, HistoryEvent(job.id, clock(), "move", target, None, "why")]
        else:
            with pytest.raises(JobStateError):
                store.transition(job.id, target, event="move", next_attempt_at=due)
            assert store.get(job.id) == job
            assert store.history(job.id) == before

    def test_transition_refused_when_not_expected(self, store: JobStore,
                                                  clock: FakeClock) -> None:
        """``expect`` narrows the table: queued → cancelled is allowed, but not when only
        held jobs were expected."""
        job = put_in_state(store, clock, JobState.QUEUED)
        with pytest.raises(JobStateError):
            store.transition(job.id, JobState.CANCELLED, event="cancel",
                             expect=[JobState.HELD])
        assert store.get(job.id) == job
        assert len(store.history(job.id)) == 1
        done = store.transition(job.id, JobState.CANCELLED, event="cancel",
                                expect=(JobState.QUEUED, JobState.HELD))
        assert done.state is JobState.CANCELLED

    def test_transition_records_its_outcome(self, store: JobStore, clock: FakeClock) -> None:
        """code, error and next_attempt_at are set on the job, updated is the store clock's
        time, and the event carries state, code and detail."""
        job = put_in_state(store, clock, JobState.SENDING)
        clock.advance(42)
        due = clock() + timedelta(minutes=15)
        moved = store.transition(job.id, JobState.DEFERRED, event="deferred",
                                 detail="451 4.7.0 try later", code=codes.TRY_LATER,
                                 error="the server asked to try later", next_attempt_at=due,
                                 owner=RUNNER_A)
        got = store.get(job.id)
        assert got == moved
        assert (got.state, got.code, got.error, got.next_attempt_at, got.updated) == (
            JobState.DEFERRED, codes.TRY_LATER, "the server asked to try later", due, clock())
        assert store.history(job.id)[-1] == HistoryEvent(
            job.id, clock(), "deferred", JobState.DEFERRED, codes.TRY_LATER,
            "451 4.7.0 try later")

    def test_count_attempt_adds_one(self, store: JobStore, clock: FakeClock) -> None:
        job = put_in_state(store, clock, JobState.DEFERRED)
        assert job.attempts == 1
        store.transition(job.id, JobState.QUEUED, event="release")
        assert store.get(job.id).attempts == 1
        claim(store, clock)
        done = store.transition(job.id, JobState.SENT, event="sent", count_attempt=True)
        assert done.attempts == 2 and store.get(job.id).attempts == 2

    def test_transition_fields_update_columns(self, store: JobStore, clock: FakeClock) -> None:
        job = put_in_state(store, clock, JobState.SENDING)
        done = store.transition(job.id, JobState.SENT, event="sent", code=codes.SENT,
                                fields={"last_reply": "250 2.0.0 OK <id>", "pages": 4,
                                        "documents": ["fax.tiff"],
                                        "message_id": "<m1@contoso.com>", "preparing": None})
        got = store.get(job.id)
        assert got == done
        assert (got.last_reply, got.pages, got.documents, got.message_id) == (
            "250 2.0.0 OK <id>", 4, ["fax.tiff"], "<m1@contoso.com>")

    @pytest.mark.parametrize(
        "name", ["state", "owner", "lease_until", "updated", "id", "number", "cover",
                 "no_such_column"])
    def test_transition_refuses_unknown_fields(self, store: JobStore, clock: FakeClock,
                                               name: str) -> None:
        """Only :data:`~faxgw.domain.jobs.UPDATABLE` may be set; anything else fails the
        whole transition."""
        assert name not in UPDATABLE
        job = put_in_state(store, clock, JobState.QUEUED)
        with pytest.raises(StoreError):
            store.transition(job.id, JobState.HELD, event="hold", fields={name: "x"})
        assert store.get(job.id) == job
        assert len(store.history(job.id)) == 1

    @pytest.mark.parametrize(
        "target", [JobState.SENT, JobState.DEFERRED, JobState.FAILED, JobState.QUEUED])
    def test_leaving_sending_ends_the_claim(self, store: JobStore, clock: FakeClock,
                                            target: JobState) -> None:
        job = put_in_state(store, clock, JobState.SENDING)
        assert (job.owner, job.lease_until) == (RUNNER_A, clock() + LEASE)
        moved = store.transition(job.id, target, event="out", owner=RUNNER_A,
                                 next_attempt_at=clock() + timedelta(minutes=1))
        got = store.get(job.id)
        assert (moved.owner, moved.lease_until) == (None, None)
        assert (got.state, got.owner, got.lease_until) == (target, None, None)

    def test_transition_of_unknown_job_raises_not_found(self, store: JobStore) -> None:
        with pytest.raises(JobNotFoundError):
            store.transition("no-such-job", JobState.CANCELLED, event="cancel")

    def test_a_write_returns_the_job_as_get_reads_it_after(self, store: JobStore,
                                                           clock: FakeClock) -> None:
        """``transition`` and ``update`` return, field by field, what ``get`` reads right
        after them: the same types, times as the store gives them back (in UTC, to the
        microsecond) though given in another zone and stamped by a clock in another zone,
        with the job named by a prefix of its id."""
        clock.now = clock().astimezone(BERLIN) + timedelta(microseconds=1)
        job = put_in_state(store, clock, JobState.SENDING)
        prefix = job.id[:-1]
        due = datetime(2026, 5, 1, 12, 0, 0, 123457, tzinfo=BERLIN)
        clock.advance(1.5)
        writes: list[Callable[[], Job]] = [
            lambda: store.transition(
                prefix, JobState.DEFERRED, event="deferred", detail="451 4.7.0 try later",
                code=codes.TRY_LATER, error="later", next_attempt_at=due, count_attempt=True,
                owner=RUNNER_A, fields={"last_reply": "451 4.7.0", "documents": ["f.tiff"],
                                        "paused_since": due - timedelta(seconds=1)}),
            lambda: store.update(prefix, event="rendered", detail="4 page(s)", pages=4,
                                 bytes=1234, preparing=None, paused_since=None,
                                 age_from=due - timedelta(hours=1, microseconds=1)),
            lambda: store.update(job.id, notified="deferred:", note=""),
            lambda: store.transition(job.id, JobState.QUEUED, event="released"),
            lambda: store.update(job.id),
        ]
        for write in writes:
            clock.advance(0.25)
            returned = write()
            got = store.get(job.id)
            assert exactly(returned) == exactly(got)
            assert got.updated == clock()
            assert_utc(got.updated)
        [moved] = claim(store, clock)
        clock.advance(1)
        done = store.transition(job.id, JobState.SENT, event="sent", code=codes.SENT,
                                count_attempt=True, owner=RUNNER_A)
        assert exactly(done) == exactly(store.get(job.id))
        assert (done.attempts, done.owner, done.lease_until) == (moved.attempts + 1, None, None)

    # -- claims -------------------------------------------------------------------------

    def test_a_claim_finding_nothing_due_changes_nothing(self, store: JobStore,
                                                         clock: FakeClock) -> None:
        """Jobs being prepared, not yet due, of an excluded sender or in other states: a
        claim takes none of them and writes nothing, neither to the jobs nor to their
        history."""
        put_in_state(store, clock, JobState.DEFERRED, due=clock() + timedelta(seconds=1))
        put_in_state(store, clock, JobState.SENDING, owner=RUNNER_B)
        for state in (JobState.SENT, JobState.HELD, JobState.FAILED):
            put_in_state(store, clock, state)
        deferred = put_in_state(store, clock, JobState.DEFERRED, due=clock())
        store.update(deferred.id, preparing="render-2")
        base = clock() - timedelta(hours=1)
        store.add(new_job(base, preparing="render-1"))
        store.add(new_job(base + timedelta(seconds=1), sender="paused@contoso.com"))
        before = [(exactly(job), store.history(job.id)) for job in store.list_jobs()]
        clock.advance(0.5)
        assert claim(store, clock, exclude_senders=["Paused@Contoso.com"]) == []
        assert [(exactly(job), store.history(job.id)) for job in store.list_jobs()] == before


    def test_claim_takes_due_jobs_oldest_first_up_to_limit(self, store: JobStore,
                                                           clock: FakeClock) -> None:
        """Queued jobs and deferred jobs due by ``now`` (due exactly at ``now`` included),
        ordered by creation time, at most ``limit`` per claim."""
        start = clock()
        base = start - timedelta(hours=1)
        d_old = put_in_state(store, clock, JobState.DEFERRED, created=base,
                             due=start + timedelta(seconds=10))
        d_now = put_in_state(store, clock, JobState.DEFERRED, created=base + timedelta(seconds=2),
                             due=start + timedelta(seconds=20))
        d_later = put_in_state(store, clock, JobState.DEFERRED, created=base - timedelta(seconds=1),
                               due=start + timedelta(seconds=21))
        q2 = put_in_state(store, clock, JobState.QUEUED, created=base + timedelta(seconds=3))
        q1 = put_in_state(store, clock, JobState.QUEUED, created=base + timedelta(seconds=1))
        clock.advance(20)
        assert ids(claim(store, clock, limit=3)) == [d_old.id, q1.id, d_now.id]
        assert ids(claim(store, clock, limit=3)) == [q2.id]
        assert claim(store, clock) == []
        assert store.get(d_later.id).state is JobState.DEFERRED
        clock.advance(1)
        assert ids(claim(store, clock)) == [d_later.id]

    def test_claim_puts_jobs_in_sending_for_the_owner(self, store: JobStore,
                                                      clock: FakeClock) -> None:
        """Returned and stored alike: sending, the owner, the lease; a ``sending`` event
        saying which attempt this is; updated stamped."""
        retried = put_in_state(store, clock, JobState.DEFERRED, due=clock(),
                               created=clock() - timedelta(hours=2))
        fresh = put_in_state(store, clock, JobState.QUEUED)
        clock.advance(60)
        lease = clock() + timedelta(minutes=7)
        claimed = store.claim_due(clock(), 10, owner=RUNNER_B, lease_until=lease)
        assert ids(claimed) == [retried.id, fresh.id]
        for job, attempt in zip(claimed, (2, 1), strict=True):
            stored = store.get(job.id)
            for got in (job, stored):
                assert (got.state, got.owner, got.lease_until) == (
                    JobState.SENDING, RUNNER_B, lease)
            assert stored.updated == clock()
            last = store.history(job.id)[-1]
            assert (last.at, last.event, last.state, last.detail) == (
                clock(), "sending", JobState.SENDING, f"attempt {attempt}")

    def test_claim_never_takes_jobs_that_are_not_due(self, store: JobStore,
                                                     clock: FakeClock) -> None:
        """Deferred not yet due, held, failed, sent, cancelled, and another runner's sending
        job stay where they are; a queued job added after them is taken (the claim works)."""
        waiting = [
            put_in_state(store, clock, JobState.SENDING, owner=RUNNER_B),
            put_in_state(store, clock, JobState.SENT),
            put_in_state(store, clock, JobState.DEFERRED, due=clock() + timedelta(seconds=1)),
            put_in_state(store, clock, JobState.HELD),
            put_in_state(store, clock, JobState.FAILED),
            put_in_state(store, clock, JobState.CANCELLED),
        ]
        assert claim(store, clock) == []
        for job in waiting:
            assert store.get(job.id) == job
        due = put_in_state(store, clock, JobState.QUEUED, created=clock() + timedelta(days=1))
        assert ids(claim(store, clock)) == [due.id]

    def test_claim_leaves_jobs_being_prepared(self, store: JobStore, clock: FakeClock) -> None:
        """``preparing`` set at add or by update keeps a job out of claims, queued or due
        deferred; clearing it with update makes it claimable."""
        base = clock() - timedelta(hours=1)
        at_add = new_job(base, preparing="render-1")
        store.add(at_add)
        deferred = put_in_state(store, clock, JobState.DEFERRED,
                                created=base + timedelta(seconds=1), due=clock())
        later = new_job(base + timedelta(seconds=2))
        store.add(later)
        store.update(deferred.id, preparing="render-2")
        store.update(later.id, preparing="render-2")
        assert claim(store, clock) == []
        assert store.get(at_add.id).preparing == "render-1"
        store.update(later.id, preparing=None)
        assert ids(claim(store, clock)) == [later.id]
        store.update(at_add.id, preparing=None)
        store.update(deferred.id, preparing=None)
        assert ids(claim(store, clock)) == [at_add.id, deferred.id]

    def test_claim_excludes_senders_in_any_case(self, store: JobStore,
                                                clock: FakeClock) -> None:
        base = clock() - timedelta(hours=1)
        paused = new_job(base, sender="Paused@Contoso.com")
        fine = new_job(base + timedelta(seconds=1), sender="fax@contoso.com")
        other = new_job(base + timedelta(seconds=2), sender="other@contoso.com")
        for job in (paused, fine, other):
            store.add(job)
        excluded = iter(["PAUSED@contoso.COM", "OTHER@CONTOSO.COM"])
        assert ids(claim(store, clock, exclude_senders=excluded)) == [fine.id]
        assert store.get(paused.id).state is JobState.QUEUED
        assert ids(claim(store, clock, exclude_senders=["nobody@contoso.com"])) == [
            paused.id, other.id]

    def test_claim_excludes_non_ascii_senders_in_any_case(self, store: JobStore,
                                                          clock: FakeClock) -> None:
        """"Any case" holds beyond ASCII (an internationalised mailbox address)."""
        job = new_job(clock(), sender="FAX@BÜCHER.EXAMPLE")
        store.add(job)
        assert claim(store, clock, exclude_senders=["fax@bücher.example"]) == []
        assert store.get(job.id).state is JobState.QUEUED

    def test_concurrent_claimers_take_every_job_exactly_once(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        """Runners with their own handles claiming small batches at once: every job is
        claimed once, by the runner it was returned to, with one ``sending`` event."""
        seed = make_store()
        base = clock() - timedelta(hours=1)
        wanted: set[str] = set()
        for i in range(120):
            job = new_job(base + timedelta(seconds=i))
            seed.add(job)
            wanted.add(job.id)
        now, lease = clock(), clock() + LEASE
        runners = [f"runner-{i}" for i in range(4)]
        barrier = threading.Barrier(len(runners), timeout=60)
        got: dict[str, list[Job]] = {}
        errors: list[BaseException] = []

        def run(owner: str) -> None:
            try:
                own = make_store()
                try:
                    barrier.wait()
                    mine: list[Job] = []
                    while batch := own.claim_due(now, 5, owner=owner, lease_until=lease):
                        mine.extend(batch)
                    got[owner] = mine
                finally:
                    own.close()
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=run, args=(owner,)) for owner in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        claimed = [job.id for jobs in got.values() for job in jobs]
        assert len(claimed) == len(wanted) and set(claimed) == wanted
        for owner, jobs in got.items():
            for job in jobs:
                stored = seed.get(job.id)
                assert (job.owner, stored.state, stored.owner) == (
                    owner, JobState.SENDING, owner)
                assert [e.event for e in seed.history(job.id)] == ["accepted", "sending"]
        assert seed.counts()[JobState.SENDING] == len(wanted)

    # -- fencing, leases ----------------------------------------------------------------

    def test_outcomes_are_fenced_by_owner(self, make_store: MakeStore,
                                          clock: FakeClock) -> None:
        """An outcome with ``owner=`` is recorded only while the job is that runner's claim:
        not by another runner, not by the old runner after its claim was recovered (even
        where the table would allow the move), and the right owner succeeds."""
        runner_a, runner_b = make_store(), make_store()
        job = put_in_state(runner_a, clock, JobState.SENDING, owner=RUNNER_A)
        with pytest.raises(JobStateError):
            runner_b.transition(job.id, JobState.SENT, event="sent", owner=RUNNER_B)
        assert runner_b.get(job.id) == job
        assert [e.event for e in runner_a.history(job.id)] == ["accepted", "sending"]

        clock.advance(LEASE.total_seconds())
        assert runner_b.recover_sending(lease_ended_by=clock()) == [job.id]
        with pytest.raises(JobStateError):  # queued → failed is allowed, but not for A
            runner_a.transition(job.id, JobState.FAILED, event="failed", owner=RUNNER_A)
        assert ids(claim(runner_b, clock, owner=RUNNER_B)) == [job.id]
        with pytest.raises(JobStateError):
            runner_a.transition(job.id, JobState.SENT, event="sent", owner=RUNNER_A)
        assert runner_a.get(job.id).owner == RUNNER_B
        done = runner_b.transition(job.id, JobState.SENT, event="sent", owner=RUNNER_B)
        assert done.state is JobState.SENT
        assert [e.event for e in runner_a.history(job.id)] == [
            "accepted", "sending", "recovered", "sending", "sent"]

    def test_renew_extends_only_the_owners_sending_claims(self, store: JobStore,
                                                          clock: FakeClock) -> None:
        base = clock() - timedelta(hours=1)
        held = put_in_state(store, clock, JobState.SENDING, created=base)
        finished = put_in_state(store, clock, JobState.SENDING, created=base + timedelta(seconds=1))
        others = put_in_state(store, clock, JobState.SENDING, created=base + timedelta(seconds=2),
                              owner=RUNNER_B)
        store.transition(finished.id, JobState.SENT, event="sent", owner=RUNNER_A)
        later = clock() + timedelta(hours=1)
        still = store.renew(RUNNER_A, [held.id, finished.id, others.id, "no-such-job"], later)
        assert still == [held.id]
        assert store.get(held.id).lease_until == later
        assert store.get(others.id).lease_until == others.lease_until != later
        assert store.get(finished.id).lease_until is None
        assert store.renew(RUNNER_A, [], later) == []

    # -- recovery -----------------------------------------------------------------------

    def test_recover_sending_requeues_every_sending_job(self, store: JobStore,
                                                        clock: FakeClock) -> None:
        base = clock() - timedelta(hours=1)
        mine = put_in_state(store, clock, JobState.SENDING, created=base)
        theirs = put_in_state(store, clock, JobState.SENDING, created=base + timedelta(seconds=1),
                              owner=RUNNER_B)
        deferred = put_in_state(store, clock, JobState.DEFERRED, created=base)
        queued = put_in_state(store, clock, JobState.QUEUED, created=base + timedelta(seconds=2))
        clock.advance(1)
        assert sorted(store.recover_sending()) == sorted([mine.id, theirs.id])
        for job in (mine, theirs):
            got = store.get(job.id)
            assert (got.state, got.owner, got.lease_until, got.updated) == (
                JobState.QUEUED, None, None, clock())
            last = store.history(job.id)[-1]
            assert (last.at, last.event, last.state) == (clock(), "recovered", JobState.QUEUED)
        assert store.get(queued.id) == queued and store.get(deferred.id) == deferred
        assert store.recover_sending() == []
        assert ids(claim(store, clock)) == [mine.id, theirs.id, queued.id]

    def test_recover_sending_by_lease_end(self, store: JobStore, clock: FakeClock) -> None:
        """Only claims whose lease ended by the time given (a lease ending exactly then
        included); the others keep their owner and lease."""
        start = clock()
        leases: dict[int, Job] = {}
        for seconds in (10, 50, 100):
            job = put_in_state(store, clock, JobState.QUEUED)
            claimed = store.claim_due(clock(), 1, owner=RUNNER_A,
                                      lease_until=start + timedelta(seconds=seconds))
            assert ids(claimed) == [job.id]
            leases[seconds] = claimed[0]
        recovered = store.recover_sending(lease_ended_by=start + timedelta(seconds=50))
        assert sorted(recovered) == sorted([leases[10].id, leases[50].id])
        for seconds in (10, 50):
            got = store.get(leases[seconds].id)
            assert (got.state, got.owner, got.lease_until) == (JobState.QUEUED, None, None)
            assert store.history(got.id)[-1].event == "recovered"
        kept = store.get(leases[100].id)
        assert (kept.state, kept.owner, kept.lease_until) == (
            JobState.SENDING, RUNNER_A, start + timedelta(seconds=100))

    def test_a_lease_ending_while_handing_over_leaves_the_job_unconfirmed(
            self, store: JobStore, clock: FakeClock) -> None:
        """A claim whose lease ran out after its runner began handing the message to the
        server may have been sent: the job becomes unconfirmed (a report settles it), never
        queued again. A mark from an earlier claim does not count, a claim that ran out
        before its mark goes back to the queue, and a runner known to be gone (its owner
        named, no lease asked about) is recovered at least once, as on one host."""
        base = clock() - timedelta(hours=1)
        handed = put_in_state(store, clock, JobState.SENDING, created=base)
        store.add_event(handed.id, HANDING_OVER, "to the mail server")
        earlier = put_in_state(store, clock, JobState.SENDING, created=base + timedelta(seconds=1))
        store.add_event(earlier.id, HANDING_OVER, "to the mail server")
        store.transition(earlier.id, JobState.DEFERRED, event="deferred", code=codes.TRY_LATER,
                         count_attempt=True, owner=RUNNER_A, next_attempt_at=clock())
        assert ids(claim(store, clock)) == [earlier.id]  # claimed again, not handed over yet
        gone = put_in_state(store, clock, JobState.SENDING, created=base + timedelta(seconds=2),
                            owner=RUNNER_B)
        store.add_event(gone.id, HANDING_OVER, "to the mail server")
        clock.advance(LEASE.total_seconds() + 1)

        assert store.recover_sending(owners=[RUNNER_B]) == [gone.id]
        assert store.get(gone.id).state is JobState.QUEUED
        recovered = store.recover_sending(lease_ended_by=clock())
        assert sorted(recovered) == sorted([handed.id, earlier.id])
        got = store.get(handed.id)
        assert (got.state, got.code, got.owner, got.lease_until) == (
            JobState.UNCONFIRMED, codes.UNCONFIRMED, None, None)
        last = store.history(handed.id)[-1]
        assert (last.event, last.state, last.code) == (
            "recovered", JobState.UNCONFIRMED, codes.UNCONFIRMED)
        assert "may have been sent" in last.detail
        assert store.get(earlier.id).state is JobState.QUEUED
        assert store.history(earlier.id)[-1].state is JobState.QUEUED
        assert ids(claim(store, clock)) == [earlier.id, gone.id]  # never the unconfirmed one

    def test_recover_preparing_clears_every_mark(self, store: JobStore,
                                                 clock: FakeClock) -> None:
        base = clock() - timedelta(hours=1)
        at_add = new_job(base, preparing="render-1")
        by_update = new_job(base + timedelta(seconds=1))
        plain = new_job(base + timedelta(seconds=2))
        for job in (at_add, by_update, plain):
            store.add(job)
        store.update(by_update.id, preparing="render-2")
        assert sorted(store.recover_preparing()) == sorted([at_add.id, by_update.id])
        for job in (at_add, by_update, plain):
            assert store.get(job.id).preparing is None
        assert store.recover_preparing() == []
        assert ids(claim(store, clock)) == [at_add.id, by_update.id, plain.id]

    def test_claim_owners_names_every_claim_and_mark(self, store: JobStore,
                                                     clock: FakeClock) -> None:
        base = clock() - timedelta(hours=1)
        assert store.claim_owners() == set()
        put_in_state(store, clock, JobState.SENDING, created=base, owner=RUNNER_A)
        store.add(new_job(base + timedelta(seconds=1), preparing="render-1"))
        put_in_state(store, clock, JobState.QUEUED, created=base + timedelta(seconds=2))
        assert store.claim_owners() == {RUNNER_A, "render-1"}

    def test_recover_sending_of_given_owners_only(self, store: JobStore,
                                                  clock: FakeClock) -> None:
        """A runner takes back the claims of runners that are gone, and no others; an empty
        list takes back nothing (not everything)."""
        base = clock() - timedelta(hours=1)
        gone = put_in_state(store, clock, JobState.SENDING, created=base, owner=RUNNER_A)
        alive = put_in_state(store, clock, JobState.SENDING, created=base + timedelta(seconds=1),
                             owner=RUNNER_B)
        assert store.recover_sending(owners=[]) == []
        assert store.recover_sending(owners=[RUNNER_A]) == [gone.id]
        assert store.get(alive.id).state is JobState.SENDING
        assert store.get(gone.id).state is JobState.QUEUED
        assert store.recover_sending(owners=[RUNNER_A, RUNNER_B],
                                     lease_ended_by=clock() - timedelta(days=1)) == []
        assert store.recover_sending(owners=[RUNNER_B],
                                     lease_ended_by=alive.lease_until) == [alive.id]

    def test_recover_preparing_of_given_owners_only(self, store: JobStore,
                                                    clock: FakeClock) -> None:
        base = clock() - timedelta(hours=1)
        gone, alive = new_job(base, preparing="gone"), new_job(base, preparing="alive")
        for job in (gone, alive):
            store.add(job)
        assert store.recover_preparing(owners=[]) == []
        assert store.recover_preparing(owners=["gone"]) == [gone.id]
        assert store.get(alive.id).preparing == "alive"
        assert store.claim_owners() == {"alive"}

    # -- the rest -----------------------------------------------------------------------

    def test_next_due_at_is_the_earliest_deferred_due_time(self, store: JobStore,
                                                           clock: FakeClock) -> None:
        """Only deferred jobs count: a due time kept on a job in another state does not."""
        assert store.next_due_at() is None
        start = clock()
        store.add(new_job(start, state=JobState.FAILED, code=codes.EXPIRED,
                          next_attempt_at=start - timedelta(days=1)))
        assert store.next_due_at() is None
        late = put_in_state(store, clock, JobState.DEFERRED, due=start + timedelta(minutes=5))
        soon = put_in_state(store, clock, JobState.DEFERRED, due=start + timedelta(minutes=1))
        store.add(new_job(start, next_attempt_at=start - timedelta(days=2)))
        assert store.next_due_at() == start + timedelta(minutes=1)
        assert_utc(store.next_due_at())
        store.transition(soon.id, JobState.HELD, event="hold",
                         next_attempt_at=start + timedelta(seconds=1))
        assert store.next_due_at() == start + timedelta(minutes=5)
        store.transition(late.id, JobState.CANCELLED, event="cancel")
        assert store.next_due_at() is None

    def test_update_sets_fields_and_optionally_records_an_event(
        self, store: JobStore, clock: FakeClock
    ) -> None:
        """Without ``event`` no history is written; with one, an event without a state."""
        job = put_in_state(store, clock, JobState.QUEUED)
        clock.advance(3)
        updated = store.update(job.id, note="checked", pages=2)
        got = store.get(job.id)
        assert got == updated
        assert (got.note, got.pages, got.state, got.updated) == (
            "checked", 2, JobState.QUEUED, clock())
        assert len(store.history(job.id)) == 1
        clock.advance(3)
        store.update(job.id, event="rendered", detail="2 pages", bytes=5000)
        assert store.get(job.id).bytes == 5000
        assert store.history(job.id)[-1] == HistoryEvent(
            job.id, clock(), "rendered", None, None, "2 pages")

    @pytest.mark.parametrize("via", ["update", "transition"])
    def test_every_updatable_field_can_be_set(self, store: JobStore, clock: FakeClock,
                                              via: str) -> None:
        """Each name in :data:`~faxgw.domain.jobs.UPDATABLE` is a column the store sets,
        through ``update`` and through ``transition(fields=…)``."""
        when = datetime(2026, 5, 1, 12, 0, 0, 7, tzinfo=BERLIN)
        values: dict[str, Any] = {
            "recipient": "+4940999@fax.example.net", "sender": "other@contoso.com",
            "subject": "new subject", "note": "new note", "documents": ["x.pdf", "y.pdf"],
            "pages": 9, "bytes": 99999, "message_id": "<m2@contoso.com>", "error": "oops",
            "code": codes.REJECTED, "next_attempt_at": when, "attempts": 5,
            "created": when - timedelta(days=1), "last_reply": "550 no",
            "age_from": when - timedelta(hours=1), "paused_since": when - timedelta(minutes=1),
            "preparing": "render-9", "notify": "someone@contoso.com",
            "notified": "failed:540",
        }
        assert set(values) == UPDATABLE
        job = put_in_state(store, clock, JobState.QUEUED)
        if via == "update":
            returned = store.update(job.id, **values)
        else:
            # code, error and next_attempt_at are the transition's own arguments.
            fields = {name: value for name, value in values.items()
                      if name not in ("code", "error", "next_attempt_at")}
            returned = store.transition(job.id, JobState.HELD, event="hold", fields=fields,
                                        code=codes.REJECTED, error="oops", next_attempt_at=when)
        got = store.get(job.id)
        assert {name: getattr(got, name) for name in values} == values
        assert exactly(returned) == exactly(got)

    @pytest.mark.parametrize("name", ["state", "owner", "lease_until", "updated", "id",
                                      "no_such_column"])
    def test_update_refuses_unknown_fields(self, store: JobStore, clock: FakeClock,
                                           name: str) -> None:
        job = put_in_state(store, clock, JobState.QUEUED)
        with pytest.raises(StoreError):
            store.update(job.id, event="edit", note="changed", **{name: "x"})
        assert store.get(job.id) == job
        assert len(store.history(job.id)) == 1

    def test_update_of_unknown_job_raises_not_found(self, store: JobStore) -> None:
        with pytest.raises(JobNotFoundError):
            store.update("no-such-job", note="x")

    def test_add_event_appends_to_history(self, store: JobStore, clock: FakeClock) -> None:
        """The event carries its code and detail, leaves the job itself alone."""
        job = put_in_state(store, clock, JobState.QUEUED)
        clock.advance(7)
        store.add_event(job.id, "reply", "250 2.0.0 queued as ABC", code=codes.SENT)
        store.add_event(job.id, "note")
        assert store.history(job.id)[1:] == [
            HistoryEvent(job.id, clock(), "reply", None, codes.SENT, "250 2.0.0 queued as ABC"),
            HistoryEvent(job.id, clock(), "note", None, None, ""),
        ]
        assert store.get(job.id) == job

    def test_purge_deletes_finished_jobs_changed_before(self, store: JobStore,
                                                        clock: FakeClock) -> None:
        """Sent, failed and cancelled jobs last changed before the time (strictly) go, with
        their history; unfinished jobs go never, however old; a finished job changed since
        (an update) stays."""
        old = {state: put_in_state(store, clock, state) for state in (
            JobState.SENT, JobState.DEFERRED, JobState.SENDING, JobState.FAILED,
            JobState.CANCELLED, JobState.HELD, JobState.CONFIRMED, JobState.UNCONFIRMED,
            JobState.QUEUED)}
        touched = put_in_state(store, clock, JobState.FAILED)
        clock.advance(86400)
        store.update(touched.id, note="looked at")
        at_cutoff = put_in_state(store, clock, JobState.CANCELLED)
        cutoff = clock()
        clock.advance(1)
        recent = put_in_state(store, clock, JobState.CANCELLED)
        gone = {old[state].id for state in (JobState.SENT, JobState.FAILED, JobState.CANCELLED,
                                            JobState.CONFIRMED, JobState.UNCONFIRMED)}
        assert sorted(store.purge(cutoff)) == sorted(gone)
        for job_id in gone:
            assert not store.exists(job_id)
            assert store.history(job_id) == []
            with pytest.raises(JobNotFoundError):
                store.get(job_id)
        kept = [job for state, job in old.items() if not state.finished]
        for job in [*kept, touched, at_cutoff, recent]:
            assert store.exists(job.id) and store.history(job.id)
        assert store.purge(cutoff) == []
        assert sum(store.counts().values()) == len(kept) + 3

    # -- what came back: reports, cursors, unconfirmed, notifications -----------------------

    @staticmethod
    def _report(key: str, clock: FakeClock, *, job_id: str | None = None) -> Report:
        return Report(key=key, mailbox="fax@contoso.com", received=clock(),
                      sender="confirmations@interfax.example", subject="Fax confirmation",
                      kind="interfax-csv", outcome=Outcome.DELIVERED, code=codes.CONFIRMED,
                      job_id=job_id, matched_by=MatchedBy.MESSAGE_ID if job_id else
                      MatchedBy.NONE, summary="delivered, 2 pages", raw=b"raw\r\nbytes\x00\xff")

    def test_a_report_is_recorded_once_and_round_trips(self, store: JobStore,
                                                       clock: FakeClock) -> None:
        assert isinstance(store, ReportStore)
        job = put_in_state(store, clock, JobState.SENT)
        report = self._report("fax@contoso.com/7:1", clock, job_id=job.id)
        assert store.add_report(report) is True
        assert store.add_report(dataclasses.replace(report, summary="again")) is False
        assert store.get_report(report.key) == report
        assert store.get_report("fax@contoso.com/7:2") is None
        assert store.reports(job_id=job.id) == [report]

    def test_reports_newest_first_and_the_unmatched_alone(self, store: JobStore,
                                                         clock: FakeClock) -> None:
        assert isinstance(store, ReportStore)
        job = put_in_state(store, clock, JobState.SENT)
        store.add_report(self._report("m/1", clock, job_id=job.id))
        clock.advance(1)
        store.add_report(self._report("m/2", clock))
        clock.advance(1)
        store.add_report(self._report("m/3", clock, job_id=job.id))
        assert [r.key for r in store.reports()] == ["m/3", "m/2", "m/1"]
        assert [r.key for r in store.reports(limit=2)] == ["m/3", "m/2"]
        assert [r.key for r in store.reports(unmatched=True)] == ["m/2"]
        assert [r.key for r in store.reports(job_id=job.id)] == ["m/3", "m/1"]

    def test_purge_takes_a_jobs_reports_and_old_unmatched_ones(self, store: JobStore,
                                                               clock: FakeClock) -> None:
        assert isinstance(store, ReportStore)
        job = put_in_state(store, clock, JobState.CONFIRMED)
        store.add_report(self._report("m/1", clock, job_id=job.id))
        store.add_report(self._report("m/2", clock))
        clock.advance(10)
        store.add_report(self._report("m/3", clock))
        assert store.purge(clock() - timedelta(seconds=5)) == [job.id]
        assert [r.key for r in store.reports()] == ["m/3"]

    def test_inbox_cursor_per_mailbox_any_case(self, store: JobStore, clock: FakeClock) -> None:
        assert isinstance(store, ReportStore)
        assert store.inbox_cursor("fax@contoso.com") is None
        store.save_inbox_cursor("fax@contoso.com", "17:4")
        store.save_inbox_cursor("FAX@Contoso.com", "17:9")
        store.save_inbox_cursor("other@contoso.com", "3:1")
        assert store.inbox_cursor("fax@contoso.com") == "17:9"
        assert store.inbox_cursor("other@contoso.com") == "3:1"

    def test_sent_before_lists_only_sent_jobs_changed_before(self, store: JobStore,
                                                            clock: FakeClock) -> None:
        old = put_in_state(store, clock, JobState.SENT)
        put_in_state(store, clock, JobState.CONFIRMED)
        cutoff = clock() + timedelta(seconds=1)
        clock.advance(2)
        put_in_state(store, clock, JobState.SENT)
        assert [job.id for job in store.sent_before(cutoff)] == [old.id]

    def test_to_notify_until_the_outcome_is_told(self, store: JobStore,
                                                 clock: FakeClock) -> None:
        told = put_in_state(store, clock, JobState.FAILED)
        quiet = put_in_state(store, clock, JobState.FAILED)
        store.update(told.id, notify="someone@contoso.com")
        waiting = put_in_state(store, clock, JobState.QUEUED)
        store.update(waiting.id, notify="someone@contoso.com")
        assert [j.id for j in store.to_notify([JobState.FAILED])] == [told.id]
        assert store.to_notify([JobState.CONFIRMED]) == []
        assert store.to_notify([]) == []
        store.update(told.id, notified=f"failed:{codes.INVALID_NUMBER}")
        assert store.to_notify([JobState.FAILED]) == []
        assert quiet.notify == ""

    def test_unknown_names_the_ids_without_a_job(self, store: JobStore,
                                                 clock: FakeClock) -> None:
        known = [put_in_state(store, clock, JobState.FAILED).id for _ in range(3)]
        strangers = [f"0193a4f2c1d0-{n:08x}" for n in range(1200)]  # more than one batch
        assert store.unknown([*known, *strangers, known[0]]) == set(strangers)
        assert store.unknown(known) == set()
        assert store.unknown([]) == set()
        assert store.unknown([known[0][:8]]) == {known[0][:8]}  # exact ids, not prefixes
