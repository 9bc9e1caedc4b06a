"""The worker end to end: real files, a real SMTP server with STARTTLS, the job store."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from pypdf import PdfReader

from faxgw.app.wiring import build_worker
from faxgw.config import Config
from faxgw.domain import codes
from faxgw.domain.errors import ConfigError, StoreError
from faxgw.domain.jobs import JobState
from faxgw.engine.outcomes import RunSummary
from faxgw.engine.worker import Worker
from faxgw.intake.register import register, register_all
from faxgw.intake.spool import Spool
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, FakeClock, MakeConfig


def _submit(config: Config, worker: Worker, number: str, *files: Path, **kw: str) -> str:
    intake = worker.spool.submit(number, list(files), **kw)
    return register(intake, config=config, store=worker.store, documents=worker.spool).id


def _run(worker: Worker):  # type: ignore[no-untyped-def]
    return asyncio.run(worker.run_once())


def _pdf_pages(data: bytes) -> int:
    return len(PdfReader(io.BytesIO(data)).pages)


def _attachment(message) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    [part] = list(message.iter_attachments())
    return part.get_filename(), part.get_content()


def test_three_intake_paths_each_become_one_email(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = make_config(smtp_server, limits={"connections": 1})
    worker = build_worker(config)
    submitted = _submit(config, worker, "+4930123456", samples / "letter.pdf",
                        samples / "note.txt", subject="Contract", note="Please sign.")
    drop = worker.spool.layout.outgoing / "089 7654321"
    drop.mkdir()
    shutil.copy(samples / "scan.jpg", drop / "scan.jpg")
    out = worker.spool.layout.outgoing
    shutil.copy(samples / "logo.png", out / "logo.png")
    shutil.copy(samples / "fax-g4.tif", out / "fax-g4.tif")
    (out / "order.fax").write_text('to = "+12125558596"\nfiles = ["logo.png", "fax-g4.tif"]\n')

    summary = _run(worker)
    assert (summary.taken, summary.sent, summary.failed) == (2, 3, 0)

    by_to = {m.message["To"]: m for m in smtp_server.messages}
    assert set(by_to) == {"+4930123456@fax.example.net", "+49897654321@fax.example.net",
                          "+12125558596@fax.example.net"}
    letter = by_to["+4930123456@fax.example.net"]
    name, data = _attachment(letter.message)
    assert name == f"fax-{submitted}.pdf" and _pdf_pages(data) == 3
    assert letter.message["Subject"] == "Contract"
    assert letter.message.get_body().get_content().strip() == "Please sign."
    assert letter.message["Message-ID"] == f"<faxgw.{submitted}@contoso.com>"
    assert letter.message["From"] == USER and letter.mail_from == USER
    assert letter.tls and letter.auth_user == USER
    assert _pdf_pages(_attachment(by_to["+12125558596@fax.example.net"].message)[1]) == 3
    assert _pdf_pages(_attachment(by_to["+49897654321@fax.example.net"].message)[1]) == 1

    jobs = worker.store.list_jobs()
    assert {(j.state, j.code) for j in jobs} == {(JobState.SENT, codes.SENT)}
    job = worker.store.get(submitted)
    assert job.pages == 3 and job.bytes and job.attempts == 1
    assert job.last_reply and job.last_reply.startswith("250")
    events = [e.event for e in worker.store.history(submitted)]
    assert events == ["accepted", "sending", "rendered", "handing-over", "sent"]
    # One authenticated session carried all three messages.
    assert sum(1 for _, line in smtp_server.commands if line.startswith("AUTH")) == 1


@pytest.mark.parametrize(
    ("fault", "reply", "state", "code"),
    [
        ("MAIL", "451 4.3.0 Temporary server error", JobState.DEFERRED, codes.TRY_LATER),
        ("RCPT", "550 5.1.1 Recipient unknown", JobState.FAILED, codes.REJECTED),
        ("DATA_END", "552 5.3.4 Message size exceeds fixed limit", JobState.FAILED,
         codes.TOO_LARGE),
        ("DATA_END", "554 5.2.252 SendAsDenied; fax@contoso.com not allowed to send as x",
         JobState.FAILED, codes.SEND_AS_DENIED),
        ("CONNECT", "421 4.3.2 Service not active", JobState.DEFERRED, codes.TRY_LATER),
    ],
)
def test_server_replies_end_in_state_and_code(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, clock: FakeClock,
    fault: str, reply: str, state: JobState, code: int,
) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config, clock=clock)
    job_id = _submit(config, worker, "+4930123456", samples / "letter.pdf")
    smtp_server.faults.reply(fault, reply, times=1)
    _run(worker)
    job = worker.store.get(job_id)
    assert (job.state, job.code) == (state, code)
    assert job.last_reply == reply
    assert reply in (job.error or "")
    assert smtp_server.messages == []
    if state is JobState.DEFERRED:
        assert job.next_attempt_at is not None
        wait = (job.next_attempt_at - clock()).total_seconds()
        assert 54 <= wait <= 66  # first backoff step, 60 s ± 10 % jitter
        clock.advance(wait + 1)
        _run(worker)
        job = worker.store.get(job_id)
        assert (job.state, job.attempts) == (JobState.SENT, 2)
        assert len(smtp_server.messages) == 1


def test_connection_lost_after_data_is_ambiguous_and_retried(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, clock: FakeClock
) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config, clock=clock)
    job_id = _submit(config, worker, "+4930123456", samples / "note.txt")
    smtp_server.faults.drop("DATA_END", times=1)
    _run(worker)
    job = worker.store.get(job_id)
    assert (job.state, job.code) == (JobState.DEFERRED, codes.NO_CONNECTION)
    events = [e.event for e in worker.store.history(job_id)]
    assert "possibly-delivered" in events
    clock.advance(3600)
    _run(worker)
    assert worker.store.get(job_id).state is JobState.SENT


def test_no_server_means_360_and_the_job_waits(
    make_config: MakeConfig, samples: Path, clock: FakeClock
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(smtp={"host": "127.0.0.1", "port": port})
    worker = build_worker(config, clock=clock)
    first = _submit(config, worker, "+4930123456", samples / "note.txt")
    second = _submit(config, worker, "+4930123457", samples / "note.txt")
    _run(worker)
    for job_id in (first, second):
        job = worker.store.get(job_id)
        assert (job.state, job.code, job.attempts) == (JobState.DEFERRED, codes.NO_CONNECTION, 1)


def test_gives_up_after_max_attempts(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, clock: FakeClock
) -> None:
    config = make_config(smtp_server, retry={"max_attempts": 2, "backoff": [10]})
    worker = build_worker(config, clock=clock)
    job_id = _submit(config, worker, "+4930123456", samples / "note.txt")
    smtp_server.faults.reply("MAIL", "451 4.3.0 Try later", times=None)
    _run(worker)
    clock.advance(20)
    _run(worker)
    job = worker.store.get(job_id)
    assert (job.state, job.code, job.attempts) == (JobState.FAILED, codes.EXPIRED, 2)
    assert "gave up after 2 attempts" in (job.error or "")


def test_hostile_inputs_fail_with_originals_kept_and_good_jobs_still_go(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, tmp_path: Path
) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.pdf").write_bytes(b"")
    (bad / "truncated.pdf").write_bytes((samples / "letter.pdf").read_bytes()[:600])
    (bad / "really-a-png.pdf").write_bytes((samples / "logo.png").read_bytes())
    (bad / "garbage.bin").write_bytes(b"\x00\x01\x02 not a document \xff" * 20)
    expected = {
        "empty.pdf": codes.DOCUMENT_UNREADABLE,
        "truncated.pdf": codes.DOCUMENT_UNREADABLE,
        "really-a-png.pdf": codes.DOCUMENT_UNSUPPORTED,
        "garbage.bin": codes.DOCUMENT_UNSUPPORTED,
    }
    ids = {name: _submit(config, worker, "+4930123456", bad / name) for name in expected}
    good = _submit(config, worker, "+4930123456", samples / "letter.pdf")
    link_dir = worker.spool.layout.outgoing / "+4930123456"
    link_dir.mkdir()
    (link_dir / "link.pdf").symlink_to(samples / "letter.pdf")
    wrong = worker.spool.layout.outgoing / "12"
    wrong.mkdir()
    shutil.copy(samples / "note.txt", wrong / "note.txt")

    summary = _run(worker)
    assert summary.sent == 1 and len(smtp_server.messages) == 1
    for name, code in expected.items():
        job = worker.store.get(ids[name])
        assert (job.state, job.code) == (JobState.FAILED, code), (name, job.error)
        assert name in (job.error or "")
        kept = worker.spool.layout.failed / job.id / "docs" / name
        assert kept.read_bytes() == (bad / name).read_bytes()
    assert worker.store.get(good).state is JobState.SENT
    refused = {j.source: j for j in worker.store.list_jobs([JobState.FAILED])}
    link_job = refused["outgoing/+4930123456/link.pdf"]
    assert link_job.code == codes.INPUT_REFUSED and "symbolic link" in (link_job.error or "")
    assert (worker.spool.layout.failed / link_job.id / "docs" / "link.pdf").is_symlink()
    number_job = refused["outgoing/12/note.txt"]
    assert number_job.code == codes.INVALID_NUMBER
    assert (worker.spool.layout.failed / number_job.id / "docs" / "note.txt").exists()


def test_job_left_in_sending_is_recovered(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, clock: FakeClock
) -> None:
    config = make_config(smtp_server)
    first = build_worker(config, clock=clock)
    job_id = _submit(config, first, "+4930123456", samples / "note.txt")
    [claimed] = first._claim()  # then the process "dies"
    assert (claimed.id, claimed.owner) == (job_id, first.owner)
    first.close()
    second = build_worker(config, clock=clock)
    _run(second)
    assert second.store.get(job_id).state is JobState.SENT
    events = [e.event for e in second.store.history(job_id)]
    assert events.index("recovered") < events.index("sent")


def test_job_folder_without_record_is_registered_again(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = make_config(smtp_server)
    spool = Spool(config.spool.dir)
    spool.ensure()
    intake = spool.submit("+4930123456", [samples / "note.txt"])  # no store record
    worker = build_worker(config)
    _run(worker)
    assert worker.store.get(intake.id).state is JobState.SENT


def test_wrong_password_waits_with_code_and_password_never_logged(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path,
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = make_config(smtp_server)
    (tmp_path / "smtp-password").write_text("wrong-password-xyz")
    worker = build_worker(config)
    job_id = _submit(config, worker, "+4930123456", samples / "note.txt")
    _run(worker)
    job = worker.store.get(job_id)
    assert (job.state, job.code, job.attempts) == (JobState.DEFERRED, codes.AUTH_REJECTED, 0)
    (tmp_path / "smtp-password").write_text(PASSWORD)
    worker.store.transition(job_id, JobState.QUEUED, event="test: due now")
    _run(worker)
    assert worker.store.get(job_id).state is JobState.SENT
    dump = "\n".join(sqlite3.connect(config.spool.dir / "state" / "faxgw.db").iterdump())
    for secret in (PASSWORD, "wrong-password-xyz"):
        assert secret not in caplog.text
        assert secret not in dump
        assert all(secret not in line for _, line in smtp_server.commands)


def test_credentials_never_cross_a_plaintext_connection(
    make_config: MakeConfig, samples: Path
) -> None:
    with FaxSMTPServer(tls="none", users={USER: PASSWORD}) as server:
        config = make_config(server, smtp={"security": "starttls"})
        worker = build_worker(config)
        job_id = _submit(config, worker, "+4930123456", samples / "note.txt")
        _run(worker)
        job = worker.store.get(job_id)
        # The server offers no STARTTLS: faxgw stops before AUTH instead of falling back.
        assert (job.state, job.code) == (JobState.DEFERRED, codes.NO_CONNECTION)
        assert "STARTTLS" in (job.error or "") or "starttls" in (job.error or "").lower()
        assert not server.credentials_seen_in_clear
        assert server.messages == []


def test_security_none_with_credentials_is_a_config_error(make_config: MakeConfig) -> None:
    with pytest.raises(ConfigError, match=r"\[smtp\] security: .*clear text"):
        make_config(smtp={"security": "none"})
    assert make_config(smtp={"security": "none"}, auth={"method": "none"}).smtp.security == "none"


def test_untrusted_certificate_is_refused(make_config: MakeConfig, samples: Path) -> None:
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}) as server:
        config = make_config(server, smtp={"ca_file": ""})  # system CAs only
        worker = build_worker(config)
        job_id = _submit(config, worker, "+4930123456", samples / "note.txt")
        _run(worker)
        job = worker.store.get(job_id)
        assert (job.state, job.code) == (JobState.DEFERRED, codes.NO_CONNECTION)
        assert "certificate" in (job.error or "")
        assert not server.credentials_seen_in_clear and server.messages == []


def test_one_worker_serves_several_event_loops(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    """Each asyncio.run() has its own loop: a worker used by two runs must not break."""
    config = make_config(smtp_server)
    worker = build_worker(config)
    for round_number in range(2):
        for index in range(6):  # more than render at once
            folder = worker.spool.layout.outgoing / f"+49301234{round_number}{index}"
            folder.mkdir()
            shutil.copy(samples / "note.txt", folder / "note.txt")
        summary = _run(worker)
        assert (summary.taken, summary.sent) == (6, 6)
    assert len(smtp_server.messages) == 12


@pytest.mark.parametrize("buffer_bytes", [None, 0], ids=["built-at-intake", "built-at-send"])
def test_each_message_carries_its_own_jobs_attachment(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, buffer_bytes: int | None,
) -> None:
    """Messages are built with the render while there is room in memory, else just before
    they are sent; a job not sent in its run (here: deferred) is built again later."""
    import faxgw.engine.preparer as preparer_module

    if buffer_bytes is not None:
        monkeypatch.setattr(preparer_module, "MESSAGE_BUFFER_BYTES", buffer_bytes)
    config = make_config(smtp_server, retry={"backoff": [10], "jitter": 0},
                         limits={"connections": 1})
    worker = build_worker(config, clock=clock)
    for number, document in (("+4930123456", "letter.pdf"), ("+4930123457", "scan.jpg"),
                             ("+4930123458", "note.txt")):
        folder = worker.spool.layout.outgoing / number
        folder.mkdir()
        shutil.copy(samples / document, folder / document)
    smtp_server.faults.reply("MAIL", "451 4.3.0 Temporary server error", times=1)
    clock.advance(1)  # the files are settled

    first = _run(worker)
    assert (first.taken, first.sent, first.deferred) == (3, 2, 1)
    clock.advance(30)
    second = _run(worker)
    assert second.sent == 1

    received = {m.message["X-Faxgw-Job"]: m.message for m in smtp_server.messages}
    jobs = worker.store.list_jobs()
    assert sorted(received) == sorted(job.id for job in jobs)
    for job in jobs:
        assert job.state is JobState.SENT
        name, data = _attachment(received[job.id])
        assert data == (worker.spool.job_dir(job.id) / name).read_bytes()
        assert received[job.id]["To"] == job.recipient


def test_a_job_another_runner_prepares_is_not_claimed_until_it_is_ready(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    """The stored ``preparing`` mark, not one process's memory, keeps every runner from
    sending a job before its attachment exists."""
    config = make_config(smtp_server)
    worker = build_worker(config)
    worker.startup()
    intake = worker.spool.submit("+4930123456", [samples / "note.txt"])
    job = register(intake, config=config, store=worker.store, documents=worker.spool,
                   preparing="another-runner")
    assert _run(worker).sent == 0
    assert worker.store.get(job.id).state is JobState.QUEUED
    assert smtp_server.messages == []
    worker.store.update(job.id, preparing=None)  # the other runner is done with it
    assert _run(worker).sent == 1
    assert worker.store.get(job.id).state is JobState.SENT
    worker.close()


def test_a_mark_left_by_a_stopped_runner_is_cleared_at_start_up(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = make_config(smtp_server)
    first = build_worker(config)
    first.startup()
    intake = first.spool.submit("+4930123456", [samples / "note.txt"])
    job = register(intake, config=config, store=first.store, documents=first.spool,
                   preparing=first.owner)
    first.close()  # stopped before it rendered the job
    second = build_worker(config)
    assert _run(second).sent == 1
    history = second.store.history(job.id)
    assert second.store.get(job.id).state is JobState.SENT
    assert [e.event for e in history].count("rendered") == 1  # rendered when it was sent
    second.close()


def test_certificate_checks_off_are_said_loudly(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(smtp_server, smtp={"verify_certificate": False})
    with caplog.at_level("WARNING", logger="faxgw.transport"):
        worker = build_worker(config)
    worker.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "faxgw.transport"]
    assert len(warnings) == 1 and "certificate is NOT checked" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="faxgw.transport"):
        build_worker(make_config(smtp_server)).close()
    assert not [r for r in caplog.records if r.name == "faxgw.transport"]


def test_a_stop_while_files_are_still_taken_ends_the_round_cleanly(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    """A stop that comes while the intake is still taking and rendering ends the round with
    its summary (never a cancellation out of it); every file is a job or still waits."""
    config = make_config(smtp_server, spool={"settle_seconds": 0},
                         limits={"messages_per_minute": 0})
    worker = build_worker(config)
    drop = worker.spool.layout.outgoing / "+4930123456"
    drop.mkdir(parents=True)
    for n in range(60):
        (drop / f"note-{n:02d}.txt").write_text(f"note {n}\n")

    async def stop_early() -> tuple[int, int]:
        round_task = asyncio.create_task(worker.run_once())
        while not worker.store.list_jobs() and not round_task.done():
            await asyncio.sleep(0.005)
        worker.stopping = True
        summary = await round_task
        return summary.taken, summary.sent

    taken, sent = asyncio.run(stop_early())
    assert sent < 60 and taken == len(worker.store.list_jobs())
    assert taken + len(list(drop.iterdir())) == 60  # nothing lost, nothing taken twice
    worker.stopping = False
    _run(worker)
    assert len(smtp_server.messages) == 60
    assert {j.state for j in worker.store.list_jobs()} == {JobState.SENT}
    worker.close()


def test_a_batch_one_of_which_is_stored_already_registers_the_others_one_by_one(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    """Taken folders are registered in one transaction; when the store refuses one of them,
    none is stored that way, and each is then registered (and answered) on its own."""
    config = make_config(smtp_server)
    worker = build_worker(config)
    worker.startup()
    intakes = [worker.spool.submit("+4930123456", [samples / "note.txt"]) for _ in range(3)]
    register(intakes[1], config=config, store=worker.store, documents=worker.spool)
    with pytest.raises(StoreError):
        register_all(intakes, config=config, store=worker.store, documents=worker.spool)
    assert not worker.store.exists(intakes[0].id) and not worker.store.exists(intakes[2].id)

    summary = RunSummary()
    queued = worker._register_batch(intakes, summary)
    assert [job.id for job in queued] == [intakes[0].id, intakes[2].id]
    assert summary.taken == 2
    for intake in intakes:
        assert [e.event for e in worker.store.history(intake.id)] == ["accepted"]
    for job in queued:  # not rendered here: rendered when they are sent, as after a stop
        worker._unmark(job.id)
    assert _run(worker).sent == 3
    worker.close()
