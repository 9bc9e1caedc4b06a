"""Did the fax arrive: reports read from the sending mailbox end each job in its state.

The peers are real: jobs go out through the test SMTP server (XOAUTH2 with tokens from the
test identity provider); the reports are delivered into a real Dovecot mailbox, which the
gateway reads by IMAP with XOAUTH2 (Dovecot asks the same identity provider whether each
token is good). The submitter's notification arrives at the test SMTP server. The only thing
the tests move by hand is the clock that decides when a job is ``unconfirmed``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from faxgw.app.reports import Checker, CheckSummary
from faxgw.app.submit import submit
from faxgw.app.wiring import build_worker, open_store
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, config_from_dict
from faxgw.domain import codes
from faxgw.domain.jobs import Job, JobState, utcnow
from faxgw.testing.dovecot import DovecotServer
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.testing.smtp_server import FaxSMTPServer
from tests import report_fixtures as fx

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "fax@contoso.com"
SUBMITTER = "doctor@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        yield server


@pytest.fixture
def smtp(idp: LocalIdentityProvider) -> Iterator[FaxSMTPServer]:
    with FaxSMTPServer(tls="starttls", token_validator=idp.validate) as server:
        yield server


@pytest.fixture
def dovecot(idp: LocalIdentityProvider) -> Iterator[DovecotServer]:
    with DovecotServer(idp=idp, scope=IMAP_SCOPE) as server:
        yield server


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, dict):
                inline = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{{inline}}}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def config_file(tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer,
                dovecot: DovecotServer) -> Path:
    raw: dict[str, dict[str, Any]] = {
        "spool": {"dir": str(tmp_path / "spool"), "settle_seconds": 0},
        # InterFAX's formats, and free-text rules of the kind a smaller service needs.
        "service": {"profile": "interfax", "region": "DE",
                    "confirm_success": [r"fax to .* was delivered"],
                    "confirm_failure": {r"is not a fax machine": codes.REMOTE_NOT_FAX}},
        "smtp": {"host": smtp.host, "port": smtp.port, "ca_file": str(smtp.ca_file),
                 "sender": ACCOUNT, "timeout_seconds": 5},
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SMTP_SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                 "ca_file": str(idp.ca_file), "http_timeout_seconds": 5,
                 "token_cache": str(tmp_path / "spool" / "state" / "tokens.json")},
        "inbox": {"method": "imap", "host": dovecot.host, "port": dovecot.port,
                  "ca_file": str(dovecot.ca_file), "confirm_within": "6h"},
        "notify": {"on": ["failed", "confirmed", "unconfirmed"]},
    }
    path = tmp_path / "faxgw.toml"
    path.write_text(_toml(raw), encoding="utf-8")
    return path


@pytest.fixture
def config(config_file: Path, tmp_path: Path) -> Config:
    import tomllib

    made = config_from_dict(tomllib.loads(config_file.read_text()), base=tmp_path)
    with OAuth2Provider(made, poll_interval_override=0) as provider:
        assert provider.finish_device_flow(provider.start_device_flow(ACCOUNT)) == ACCOUNT
    return made


def _send(config: Config, document: Path, number: str, *, notify: str = "") -> Job:
    job = submit(config, number, [document], notify=notify)
    worker = build_worker(config)
    try:
        asyncio.run(worker.run_once())
    finally:
        worker.close()
    return _job(config, job.id)


def _job(config: Config, job_id: str) -> Job:
    store = open_store(config)
    try:
        return store.get(job_id)
    finally:
        store.close()


def _round(config: Config, *, at: datetime | None = None) -> CheckSummary:
    async def main() -> CheckSummary:
        checker = Checker(config, clock=(lambda: at) if at else utcnow)
        try:
            return await checker.round()
        finally:
            await checker.close()
    return asyncio.run(main())


def _subject(smtp: FaxSMTPServer, job: Job) -> str:
    """The subject the fax email went out with (the job's token in it, InterFAX profile)."""
    sent = [m for m in smtp.messages if m.message["X-Faxgw-Job"] == job.id]
    subject = str(sent[-1].message["Subject"])
    assert subject.endswith(f"[faxgw {job.id.rpartition('-')[2]}]")
    return subject


def _notifications(smtp: FaxSMTPServer) -> list[Any]:
    return [m for m in smtp.messages if "X-Faxgw-Notification" in m.message]


def test_each_report_ends_its_job_and_the_rest_are_listed(
        config: Config, config_file: Path, dovecot: DovecotServer, smtp: FaxSMTPServer,
        samples: Path) -> None:
    letter = samples / "letter.pdf"
    ndr = _send(config, letter, "+49301234561", notify=SUBMITTER)
    dsn = _send(config, letter, "+49301234562")
    csv_ok = _send(config, letter, "+49301234563")
    csv_busy = _send(config, letter, "+49301234564")
    xml_partial = _send(config, letter, "+49301234565")
    text_ok = _send(config, letter, "+49301234566")
    text_voice = _send(config, letter, "+49301234567")
    quiet = _send(config, letter, "+49301234568", notify=SUBMITTER)
    jobs = [ndr, dsn, csv_ok, csv_busy, xml_partial, text_ok, text_voice, quiet]
    assert [job.state for job in jobs] == [JobState.SENT] * len(jobs)
    assert len(smtp.messages) == len(jobs)

    def mid(job: Job) -> str:
        assert job.message_id
        return job.message_id

    for raw in (
        fx.delayed_dsn(ndr.id, mid(ndr), ndr.number),
        fx.exchange_ndr(ndr.id, mid(ndr), ndr.number),
        fx.mta_dsn(dsn.id, mid(dsn), dsn.number),
        fx.interfax_csv(csv_ok.number, status=0, description="OK",
                        subject=_subject(smtp, csv_ok)),
        fx.interfax_csv(csv_busy.number, status=3931, description="Busy", sent=0),
        fx.interfax_xml(xml_partial.number, status=3912, description="Transmission incomplete",
                        sent=2, subject=_subject(smtp, xml_partial)),
        fx.free_text(f"Your fax to {text_ok.number} was delivered (1 page).",
                     in_reply_to=mid(text_ok)),
        fx.free_text(f"Sorry: {text_voice.number} is not a fax machine.",
                     in_reply_to=mid(text_voice)),
        fx.out_of_office(mid(quiet)),
        fx.newsletter(),
    ):
        dovecot.append(ACCOUNT, "INBOX", raw)

    summary = _round(config)
    assert summary.poll is not None
    assert (summary.poll.seen, summary.poll.matched, summary.poll.unmatched) == (10, 8, 2)

    expected = {
        ndr.id: (JobState.FAILED, codes.BOUNCED),
        dsn.id: (JobState.FAILED, codes.BOUNCED),
        csv_ok.id: (JobState.CONFIRMED, codes.CONFIRMED),
        csv_busy.id: (JobState.DEFERRED, codes.REMOTE_BUSY),
        xml_partial.id: (JobState.FAILED, codes.REMOTE_PARTIAL),
        text_ok.id: (JobState.CONFIRMED, codes.CONFIRMED),
        text_voice.id: (JobState.FAILED, codes.REMOTE_NOT_FAX),
        quiet.id: (JobState.SENT, codes.SENT),
    }
    got = {job.id: (_job(config, job.id).state, _job(config, job.id).code) for job in jobs}
    assert got == expected

    # As a user sees it: `faxgw jobs` names the reason, `faxgw reports --unmatched` lists the
    # two that are no report, and the used ones left the inbox for the done folder.
    listed = {row["id"]: row for row in json.loads(_cli(config_file, "jobs", "--json"))}
    assert "5.4.310" in listed[ndr.id]["error"]
    unmatched = json.loads(_cli(config_file, "reports", "--unmatched", "--json"))["reports"]
    assert sorted(r["kind"] for r in unmatched) == ["auto-reply", "bulk"]
    assert all(r["job"] is None for r in unmatched)
    assert len(dovecot.messages(ACCOUNT, "INBOX")) == 2
    assert len(dovecot.messages(ACCOUNT, "faxgw")) == 8
    shown = json.loads(_cli(config_file, "show", ndr.id, "--json"))
    assert [r["kind"] for r in shown["reports"]] == ["ndr", "dsn"]
    matched_by = {r["job"]: r["matched_by"] for r in json.loads(
        _cli(config_file, "reports", "--json"))["reports"] if r["job"]}
    assert matched_by[csv_ok.id] == matched_by[xml_partial.id] == "subject-token"
    assert matched_by[csv_busy.id] == "number-time"
    assert matched_by[dsn.id] == matched_by[text_ok.id] == "message-id"

    # The submitter of the bounced fax is told once, with the bounce attached.
    told = _notifications(smtp)
    assert len(told) == 1
    note = told[0]
    assert note.rcpt_tos == [SUBMITTER] and note.message["X-Faxgw-Notification"] == ndr.id
    assert "(546)" in note.message["Subject"] and note.message["Auto-Submitted"]
    attached = [part.get_content_type() for part in note.message.iter_attachments()]
    assert attached == ["message/rfc822"]

    # Nothing is read or told twice; with no report in time the quiet job is unconfirmed,
    # and its submitter is told that.
    again = _round(config)
    assert again.poll is not None and again.poll.seen == 0 and again.notify.sent == 0
    late = _round(config, at=utcnow() + timedelta(hours=7))
    assert late.poll is not None and late.poll.unconfirmed == 1
    assert (_job(config, quiet.id).state, _job(config, quiet.id).code) == (
        JobState.UNCONFIRMED, codes.UNCONFIRMED)
    assert len(_notifications(smtp)) == 2

    # A report about a notification is not a report about a fax: no job moves, no loop.
    dovecot.append(ACCOUNT, "INBOX", fx.mta_dsn(quiet.id, note.message["Message-ID"],
                                                SUBMITTER))
    bounce = _round(config)
    assert bounce.poll is not None and bounce.poll.matched == 0
    assert len(_notifications(smtp)) == 2


def test_busy_redials_and_the_second_report_confirms(config: Config, dovecot: DovecotServer,
                                                     smtp: FaxSMTPServer,
                                                     samples: Path) -> None:
    job = _send(config, samples / "letter.pdf", "+49301234569")
    dovecot.append(ACCOUNT, "INBOX", fx.interfax_csv(job.number, status=3931,
                                                     description="Busy", sent=0))
    _round(config)
    deferred = _job(config, job.id)
    assert deferred.state is JobState.DEFERRED and deferred.next_attempt_at is not None
    worker = build_worker(config)
    try:
        store = open_store(config)
        store.update(job.id, next_attempt_at=utcnow())
        store.close()
        asyncio.run(worker.run_once())
    finally:
        worker.close()
    assert _job(config, job.id).state is JobState.SENT
    assert len(smtp.messages) == 2
    dovecot.append(ACCOUNT, "INBOX", fx.interfax_csv(job.number, status=0, description="OK",
                                                     transaction="1234567891"))
    _round(config)
    done = _job(config, job.id)
    assert (done.state, done.code, done.attempts) == (JobState.CONFIRMED, codes.CONFIRMED, 2)


def test_a_restarted_reader_misses_nothing_and_repeats_nothing(
        config: Config, dovecot: DovecotServer, samples: Path) -> None:
    first = _send(config, samples / "letter.pdf", "+49301234561")
    second = _send(config, samples / "letter.pdf", "+49301234562")
    assert first.message_id and second.message_id
    dovecot.append(ACCOUNT, "INBOX", fx.exchange_ndr(first.id, first.message_id, first.number))
    dovecot.append(ACCOUNT, "INBOX", fx.newsletter())
    one = _round(config)
    assert one.poll is not None and (one.poll.seen, one.poll.matched) == (2, 1)
    # "down": the reader is not running while this arrives
    dovecot.append(ACCOUNT, "INBOX", fx.mta_dsn(second.id, second.message_id, second.number))
    dovecot.stop()
    dovecot.start()
    two = _round(config)
    assert two.poll is not None and (two.poll.seen, two.poll.matched) == (1, 1)
    assert _job(config, second.id).state is JobState.FAILED
    history = [e.event for e in open_store(config).history(first.id)]
    assert history.count("failed") == 1


def _cli(config_file: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config_file), *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return done.stdout
