"""Exchange-aware delivery: each classification row, pacing, account pauses, queue control."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from faxgw.app import control
from faxgw.app.wiring import build_worker
from faxgw.config import Config
from faxgw.domain import codes
from faxgw.domain.errors import JobStateError
from faxgw.domain.jobs import JobState
from faxgw.engine.pacing import MailboxPacer
from faxgw.engine.worker import Worker
from faxgw.intake.register import register
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, FakeClock, MakeConfig
from .documents import text_pdf

OTHER = "sales@contoso.com"


def _submit(config: Config, worker: Worker, path: Path, *, sender: str = "") -> str:
    intake = worker.spool.submit("+4930123456", [path], sender=sender)
    return register(intake, config=config, store=worker.store, documents=worker.spool).id


def _run(worker: Worker):  # type: ignore[no-untyped-def]
    return asyncio.run(worker.run_once())


@pytest.fixture
def page(tmp_path: Path) -> Path:
    return text_pdf(tmp_path / "page.pdf")


# Each row of the classification, driven by a real server reply.
ROWS = [
    # (fault point, reply, state, code, next attempt in seconds (None: none), attempts)
    ("MAIL", "421 4.7.0 Try again later, closing connection", JobState.DEFERRED,
     codes.TRY_LATER, 60, 1),
    ("DATA", "451 4.7.500 Server busy. Please try again later", JobState.DEFERRED,
     codes.TRY_LATER, 60, 1),
    ("DATA_END", "451 4.4.2 Timeout waiting for data", JobState.DEFERRED, codes.TRY_LATER,
     60, 1),
    ("RCPT", "452 4.5.3 Too many recipients", JobState.DEFERRED, codes.TRY_LATER, 60, 1),
    ("DATA_END", "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
     JobState.DEFERRED, codes.DAILY_QUOTA, 0, 0),
    ("DATA_END", "554 5.2.2 mailbox full; STOREDRV.Submission.Exception", JobState.DEFERRED,
     codes.MAILBOX_FULL, 0, 0),
    ("DATA_END", "552 5.3.4 Message size exceeds fixed maximum message size",
     JobState.FAILED, codes.TOO_LARGE, None, 1),
    ("RCPT", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
     JobState.FAILED, codes.REJECTED, None, 1),
    ("MAIL", "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
     JobState.FAILED, codes.SEND_AS_DENIED, None, 1),
    ("AUTH", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
     "for the Tenant", JobState.DEFERRED, codes.SMTP_AUTH_DISABLED, 0, 0),
    ("AUTH", "535 5.7.3 Authentication unsuccessful", JobState.DEFERRED, codes.AUTH_REJECTED,
     0, 0),
    ("CONNECT", "421 4.3.2 Service not active", JobState.DEFERRED, codes.TRY_LATER, 60, 1),
]


@pytest.mark.parametrize(("point", "reply", "state", "code", "wait", "attempts"), ROWS,
                         ids=[row[1][:24] for row in ROWS])
def test_classification_row(smtp_server: FaxSMTPServer, make_config: MakeConfig, page: Path,
                            clock: FakeClock, point: str, reply: str, state: JobState,
                            code: int, wait: float | None, attempts: int) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config, clock=clock)
    job_id = _submit(config, worker, page)
    smtp_server.faults.reply(point, reply, times=1)
    _run(worker)
    job = worker.store.get(job_id)
    assert (job.state, job.code, job.attempts) == (state, code, attempts)
    assert job.last_reply == reply
    history = worker.store.history(job_id)
    assert reply in history[-1].detail  # the server's words are kept
    if wait is None:
        assert job.next_attempt_at is None
    else:
        assert job.next_attempt_at is not None
        seconds = (job.next_attempt_at - clock()).total_seconds()
        assert wait * 0.9 - 0.01 <= seconds <= wait * 1.1 + 0.01
    assert smtp_server.messages == []


def test_throttle_432_is_retried_on_fewer_connections(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, page: Path, clock: FakeClock
) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config, clock=clock)
    ids = [_submit(config, worker, page) for _ in range(6)]
    smtp_server.faults.reply(
        "AUTH", "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/"
        "concurrent_sending for more information.", times=1)
    _run(worker)
    assert {worker.store.get(i).state for i in ids} == {JobState.SENT}
    assert len(smtp_server.messages) == 6
    assert all(worker.store.get(i).attempts == 1 for i in ids)


def test_refused_connection_and_timeout_before_greeting_are_360(
    make_config: MakeConfig, page: Path, clock: FakeClock
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(smtp={"host": "127.0.0.1", "port": port})
    worker = build_worker(config, clock=clock)
    refused = _submit(config, worker, page)
    _run(worker)
    assert worker.store.get(refused).code == codes.NO_CONNECTION
    worker.close()
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=1.5) as slow:
        config = make_config(slow, smtp={"timeout_seconds": 0.5})
        worker = build_worker(config, clock=clock)
        late = _submit(config, worker, page)
        _run(worker)
        job = worker.store.get(late)
        assert (job.state, job.code) == (JobState.DEFERRED, codes.NO_CONNECTION)
        assert "did not answer in time" in (job.error or "")


def test_tls_handshake_failure_is_360(make_config: MakeConfig, page: Path,
                                      clock: FakeClock) -> None:
    # The server speaks TLS from the first byte; the client waits for a plain greeting.
    with FaxSMTPServer(tls="tls", users={USER: PASSWORD}) as server:
        config = make_config(server, smtp={"timeout_seconds": 1})
        worker = build_worker(config, clock=clock)
        job_id = _submit(config, worker, page)
        _run(worker)
        job = worker.store.get(job_id)
        assert (job.state, job.code) == (JobState.DEFERRED, codes.NO_CONNECTION)
        assert server.messages == [] and not server.credentials_seen_in_clear


def test_burst_of_300_respects_exchange_limits(
    make_config: MakeConfig, page: Path, clock: FakeClock
) -> None:
    """300 jobs for one mailbox against 3 connections / 30 messages a minute: no 432."""
    virtual = [0.0]

    def monotonic() -> float:
        return virtual[0]

    async def sleep(seconds: float) -> None:
        virtual[0] += seconds  # minutes of pacing pass in an instant
        await asyncio.sleep(0)

    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, max_connections_per_user=3,
                       messages_per_minute_per_user=30, clock=monotonic) as server:
        config = make_config(server)
        worker = build_worker(config, clock=clock, pacer_factory=lambda: MailboxPacer(
            connections=3, messages_per_minute=30, clock=monotonic, sleep=sleep))
        ids = [_submit(config, worker, page) for _ in range(300)]
        summary = _run(worker)
        assert summary.sent == 300 and summary.failed == 0 and summary.deferred == 0
        assert server.refused_connections == 0 and server.rate_refusals == 0
        assert not any(line.startswith("432") for _, line in server.replies)
        assert server.max_concurrent_sessions <= 3
        assert len({m.message["Message-ID"] for m in server.messages}) == 300
        assert virtual[0] >= 9 * 60  # 300 messages at 30 a minute take 9+ minutes
        assert {worker.store.get(i).state for i in ids} == {JobState.SENT}


def test_auth_problem_pauses_one_account_and_logs_once(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, page: Path, clock: FakeClock,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD, OTHER: "other-secret"}) as server:
        config = make_config(server, auth={"username": ""},  # user = each job's sender
                             intake={"allowed_senders": [OTHER]})
        (tmp_path / "smtp-password").write_text("other-secret")  # right for OTHER only
        worker = build_worker(config, clock=clock)
        waiting = [_submit(config, worker, page, sender=USER) for _ in range(5)]
        going = [_submit(config, worker, page, sender=OTHER) for _ in range(2)]
        summary = _run(worker)
        assert summary.sent == 2 and summary.waiting_for_auth == 5
        for job_id in waiting:
            job = worker.store.get(job_id)
            assert (job.state, job.code, job.attempts) == (JobState.DEFERRED,
                                                           codes.AUTH_REJECTED, 0)
        assert {worker.store.get(i).state for i in going} == {JobState.SENT}
        pauses = [r for r in caplog.records if "paused" in r.getMessage()]
        assert len(pauses) == 1 and USER in pauses[0].getMessage()
        # Another run while nothing changed: the account is not even tried again.
        auths_before = sum(1 for _, c in server.commands if c.startswith("AUTH"))
        _run(worker)
        assert sum(1 for _, c in server.commands if c.startswith("AUTH")) == auths_before
        # The credentials change: the waiting jobs go out in the next run, by themselves.
        clock.advance(3 * 86400)  # days of waiting do not count towards max_age
        (tmp_path / "smtp-password").write_text(PASSWORD + "\n")
        summary = _run(worker)
        assert summary.sent == 5
        assert {worker.store.get(i).state for i in waiting} == {JobState.SENT}
        assert all(worker.store.get(i).attempts == 1 for i in waiting)
        assert any("sends again" in r.getMessage() for r in caplog.records)


def test_queue_control(smtp_server: FaxSMTPServer, make_config: MakeConfig, page: Path,
                       clock: FakeClock) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config, clock=clock)
    held, cancelled, kept = (_submit(config, worker, page) for _ in range(3))
    control.hold(worker.store, worker.spool, held)
    control.cancel(worker.store, worker.spool, cancelled)
    _run(worker)
    assert worker.store.get(held).state is JobState.HELD
    assert (worker.store.get(cancelled).state, worker.store.get(cancelled).code) == (
        JobState.CANCELLED, codes.CANCELLED)
    assert worker.store.get(kept).state is JobState.SENT
    with pytest.raises(JobStateError, match="is sent: cannot cancel it"):
        control.cancel(worker.store, worker.spool, kept)
    with pytest.raises(JobStateError, match="is held: cannot hold it"):
        control.hold(worker.store, worker.spool, held)
    with pytest.raises(JobStateError, match="is queued: cannot release it"):
        control.release(worker.store, worker.spool, control.release(
            worker.store, worker.spool, held).id)
    _run(worker)
    assert worker.store.get(held).state is JobState.SENT
    events = [e.event for e in worker.store.history(held)]
    assert events[:3] == ["accepted", "held", "released"]


def test_retry_resets_attempts_and_age(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, page: Path, clock: FakeClock
) -> None:
    config = make_config(smtp_server, retry={"max_attempts": 1})
    worker = build_worker(config, clock=clock)
    job_id = _submit(config, worker, page)
    smtp_server.faults.reply("MAIL", "451 4.3.0 Try later", times=1)
    _run(worker)
    job = worker.store.get(job_id)
    assert (job.state, job.code) == (JobState.FAILED, codes.EXPIRED)
    clock.advance(7 * 86400)
    control.retry(worker.store, worker.spool, job_id)
    job = worker.store.get(job_id)
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)
    _run(worker)
    assert worker.store.get(job_id).state is JobState.SENT
    with pytest.raises(JobStateError, match="is sent: cannot retry it"):
        control.retry(worker.store, worker.spool, job_id)


def test_purge_removes_finished_jobs_after_retention(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, page: Path, clock: FakeClock
) -> None:
    config = make_config(smtp_server, limits={"retention": "2d"})
    worker = build_worker(config, clock=clock)
    job_id = _submit(config, worker, page)
    _run(worker)
    assert worker.purge() == []
    clock.advance(3 * 86400)
    waiting = _submit(config, worker, page)
    worker.store.transition(waiting, JobState.HELD, event="held")
    assert worker.purge() == [job_id]
    assert not worker.spool.layout.job_dir(job_id).exists()
    assert worker.store.get(waiting).state is JobState.HELD
