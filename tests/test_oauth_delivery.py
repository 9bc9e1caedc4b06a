"""OAuth2 delivery end to end: sign-in, XOAUTH2 sending, every sign-in failure ending in its code.

The peers are real: the local identity provider (msal talks HTTPS to it) and the Exchange-like
SMTP server, which accepts XOAUTH2 only after STARTTLS and only with unexpired tokens that this
identity provider issued. The gateway runs as a user runs it (``python -m faxgw --config FILE``
in a subprocess, with a real TOML file) or, where the test needs to look inside, as the worker
and the service in this process. Nothing is mocked; faults are switched on in the peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from faxgw.app.wiring import build_worker, open_store
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, load_config
from faxgw.domain import codes
from faxgw.domain.jobs import Job, JobState
from faxgw.engine.outcomes import RunSummary
from faxgw.engine.scheduler import Service
from faxgw.engine.worker import Worker
from faxgw.intake.register import register
from faxgw.intake.spool import Spool
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.testing.smtp_server import FaxSMTPServer

from .certificates import app_certificate

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "fax@contoso.com"
OTHER = "reception@contoso.com"
STRANGER = "sales@contoso.com"  # never signs in
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SCOPE = "https://outlook.office.com/SMTP.Send"
APP_SCOPE = "https://outlook.office365.com/.default"
CLIENT_SECRET = "local-client-secret~0123456789abcdefghij"
NUMBER = "+4930123456"
AUTH_DISABLED = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
                 "for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.")
TOKEN_REFUSED = "535 5.7.3 Authentication unsuccessful"
NOTHING = {"taken": 0, "sent": 0, "deferred": 0, "failed": 0, "waiting_for_auth": 0}


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    # JSON's strings, numbers, booleans and lists of strings are valid TOML values.
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class Gateway:
    """One gateway installation: a TOML config, a spool, the two peers, and what it printed."""

    def __init__(self, root: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer,
                 caplog: pytest.LogCaptureFixture) -> None:
        self.root = root
        self.idp = idp
        self.smtp = smtp
        self.caplog = caplog
        self.spool = root / "spool"
        self.token_cache = self.spool / "state" / "tokens.json"
        self.config_file = root / "etc" / "faxgw.toml"
        self.config_file.parent.mkdir()
        #: stdout and stderr of every command run, for the "no token text" checks.
        self.outputs: list[str] = []
        self.configure()

    def configure(self, **sections: dict[str, Any]) -> None:
        """(Re)write the config file; keyword sections add to or override the defaults."""
        raw: dict[str, dict[str, Any]] = {
            "spool": {"dir": "../spool", "settle_seconds": 0},
            "service": {"address": "{e164}@fax.example.net", "region": "DE"},
            "smtp": {"host": self.smtp.host, "port": self.smtp.port,
                     "ca_file": str(self.smtp.ca_file), "sender": ACCOUNT,
                     "timeout_seconds": 5},
            "auth": {"method": "oauth2", "provider": "custom", "authority": self.idp.authority,
                     "scopes": [SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                     "ca_file": str(self.idp.ca_file),
                     "token_cache": "../spool/state/tokens.json", "http_timeout_seconds": 5},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        self.config_file.write_text(_toml(raw), encoding="utf-8")

    @property
    def config(self) -> Config:
        return load_config(self.config_file)

    # -- the command line, as a user runs it ----------------------------------------------

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "faxgw", "--config", str(self.config_file), *args]

    @staticmethod
    def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
        """This environment without faxgw's own variables or a CA bundle override."""
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("FAXGW_") and k not in ("REQUESTS_CA_BUNDLE",
                                                            "CURL_CA_BUNDLE")}
        return {**clean, "PYTHONPATH": str(REPO), **(extra or {})}

    def cli(self, *args: str, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=60,
                              cwd=self.root, env=self.environment(env), check=False)
        self.outputs += [done.stdout, done.stderr]
        if check:
            assert done.returncode == 0, f"faxgw {' '.join(args)}: exit {done.returncode}\n" \
                                         f"{done.stdout}\n{done.stderr}"
        return done

    def login(self, account: str | None = None) -> subprocess.CompletedProcess[str]:
        """``faxgw auth login [--account ADDR]``; the IdP approves as ``account``."""
        self.idp.auto_approve_account = account or ACCOUNT
        done = self.cli("auth", "login", *(["--account", account] if account else []))
        assert f"Signed in as {account or ACCOUNT}." in done.stdout
        return done

    def submit(self, document: Path, sender: str | None = None,
               env: dict[str, str] | None = None) -> str:
        """``faxgw submit --to NUMBER FILE [--sender ADDR] --json``: the job's id."""
        args = ["submit", "--to", NUMBER, str(document), "--json"]
        args += ["--sender", sender] if sender else []
        return str(json.loads(self.cli(*args, env=env).stdout)["id"])

    def run_once(self, env: dict[str, str] | None = None) -> dict[str, int]:
        """``faxgw -vv run --once --json`` (its log goes to stderr, checked for tokens)."""
        done = self.cli("-vv", "run", "--once", "--json", env=env)
        return dict(json.loads(done.stdout))

    def jobs(self) -> dict[str, dict[str, Any]]:
        """``faxgw jobs --json``, by job id."""
        return {row["id"]: row for row in json.loads(self.cli("jobs", "--json").stdout)}

    def auth_status(self) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("auth", "status", "--json").stdout))

    # -- the same gateway, in this process ------------------------------------------------

    def sign_in(self, account: str = ACCOUNT) -> None:
        """A device code sign-in through the provider (what ``faxgw auth login`` does)."""
        self.idp.auto_approve_account = account
        with OAuth2Provider(self.config, poll_interval_override=0) as provider:
            flow = provider.start_device_flow(account)
            assert provider.finish_device_flow(flow) == account

    def queue(self, document: Path, sender: str = "") -> str:
        """Put a job in the spool and the store, as ``faxgw submit`` does."""
        config = self.config
        spool = Spool(config.spool.dir, settle_seconds=0)
        spool.ensure()
        intake = spool.submit(NUMBER, [document], sender=sender)
        store = open_store(config)
        try:
            return register(intake, config=config, store=store, documents=spool).id
        finally:
            store.close()

    def worker(self, config: Config | None = None) -> Worker:
        return build_worker(config or self.config)

    def run_worker(self) -> RunSummary:
        """One burst run of a fresh worker (a fresh msal application too)."""
        worker = self.worker()
        try:
            return asyncio.run(worker.run_once())
        finally:
            worker.close()

    def job(self, job_id: str) -> Job:
        store = open_store(self.config)
        try:
            return store.get(job_id)
        finally:
            store.close()

    # -- secrets ---------------------------------------------------------------------------

    def assert_no_token_text(self) -> None:
        """No access or refresh token in logs, command output, the job database, job.json;
        the token cache and its state file are private to the gateway's user (0600)."""
        secrets = [token[:32] for token in self.idp.issued_tokens() + self.idp.refresh_tokens()]
        assert secrets, "the scenario issued no token: nothing was checked"
        database = self.spool / "state" / "faxgw.db"
        with contextlib.closing(sqlite3.connect(database)) as db:
            dump = "\n".join(db.iterdump())
        job_files = "\n".join(path.read_text(encoding="utf-8")
                              for path in sorted(self.spool.rglob("job.json")))
        places = {
            "the captured log": self.caplog.text,
            "command output": "\n".join(self.outputs),
            "the job database": dump,
            "job.json files": job_files,
            "the SMTP transcript": "\n".join(line for _, line in self.smtp.commands),
        }
        for where, text in places.items():
            for secret in secrets:
                assert secret not in text, f"token text in {where}"
        for private in (self.token_cache, self.token_cache.with_name("tokens.state.json")):
            if private.exists():
                assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.auto_approve_account = ACCOUNT
        server.device_interval = 0  # `faxgw auth login` polls at the IdP's pace: no waiting
        yield server


@pytest.fixture
def smtp(idp: LocalIdentityProvider) -> Iterator[FaxSMTPServer]:
    """Exchange's front door: STARTTLS, then XOAUTH2 with tokens this IdP issued."""
    with FaxSMTPServer(tls="starttls", token_validator=idp.validate) as server:
        yield server


@pytest.fixture
def gateway(tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer,
            caplog: pytest.LogCaptureFixture) -> Gateway:
    caplog.set_level(logging.DEBUG)
    return Gateway(tmp_path, idp, smtp, caplog)


def _sent_as(smtp: FaxSMTPServer, account: str, count: int) -> None:
    """``count`` messages, each sent over TLS by a session authenticated as ``account``."""
    mine = [m for m in smtp.messages if m.mail_from == account]
    assert len(mine) == count
    for received in mine:
        assert (received.auth_mechanism, received.auth_user, received.tls) == (
            "XOAUTH2", account, True)
        assert received.message["From"] == account


def _expire_access_tokens(idp: LocalIdentityProvider) -> None:
    """Let every issued access token expire at the IdP (msal's clock does not move, so the
    cached token still looks valid to the gateway: the SMTP server refuses it)."""
    idp.advance(idp.access_token_lifetime + 60)


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until ``condition()``; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


# -- Done when 1: sign in, then run --once sends with XOAUTH2 ------------------------------------


@pytest.mark.slow
def test_login_then_run_once_sends_queued_jobs_with_xoauth2(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    before = json.loads(gateway.cli("status", "--json").stdout)
    assert before["sign_in"].startswith("Sign-in needed")

    login = gateway.login()
    assert f"{idp.base_url}/devicelogin" in login.stdout
    assert f"    {idp.last_user_code}\n" in login.stdout
    ids = [gateway.submit(samples / "note.txt"), gateway.submit(samples / "letter.pdf")]

    assert gateway.run_once() == {**NOTHING, "sent": 2}
    _sent_as(smtp, ACCOUNT, 2)
    rows = gateway.jobs()
    assert [(rows[i]["state"], rows[i]["code"]) for i in ids] == [("sent", 100)] * 2
    # The session secured itself before it authenticated.
    verbs = [line.split()[0] for _, line in smtp.commands]
    assert verbs.index("STARTTLS") < verbs.index("AUTH")
    assert "AUTH XOAUTH2 ***" in [line for _, line in smtp.commands]
    assert not smtp.credentials_seen_in_clear and smtp.errors == []
    # One sign-in, no refresh needed: the token from the sign-in was used.
    assert idp.requests["refresh_token"] == 0
    assert f"Sign-in: Signed in as {ACCOUNT}\n" in gateway.cli("status").stdout
    gateway.assert_no_token_text()


# -- Done when 2: a dead refresh token makes jobs wait with 361; a new login sends them ---------


@pytest.mark.slow
@pytest.mark.parametrize("aadsts", [700082, 70008, 50173, 70043])
def test_dead_refresh_token_makes_jobs_wait_with_361_until_login_again(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path,
    aadsts: int,
) -> None:
    gateway.sign_in()
    ids = [gateway.queue(samples / "note.txt"), gateway.queue(samples / "note.txt")]
    _expire_access_tokens(idp)
    assert idp.kill_refresh_tokens(ACCOUNT, aadsts) >= 1

    assert gateway.run_once() == {**NOTHING, "waiting_for_auth": 2}
    assert smtp.messages == []
    rows = gateway.jobs()
    for job_id in ids:
        row = rows[job_id]
        assert (row["state"], row["code"], row["attempts"]) == ("deferred", 361, 0)
        assert f"AADSTS{aadsts}" in row["error"]

    gateway.login()
    assert gateway.run_once() == {**NOTHING, "sent": 2}
    _sent_as(smtp, ACCOUNT, 2)
    assert [gateway.job(i).code for i in ids] == [codes.SENT] * 2
    gateway.assert_no_token_text()


# -- the same in service mode -------------------------------------------------------------------


def test_service_sends_waiting_jobs_by_itself_after_a_new_sign_in(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.sign_in()
    ids = [gateway.queue(samples / "note.txt"), gateway.queue(samples / "note.txt")]
    _expire_access_tokens(idp)
    idp.kill_refresh_tokens(ACCOUNT, 700082)
    worker = gateway.worker()

    def waiting() -> bool:
        jobs = [worker.store.get(job_id) for job_id in ids]
        return all((j.state, j.code) == (JobState.DEFERRED, 361) for j in jobs)

    async def scenario() -> None:
        stop = asyncio.Event()
        service = Service(worker)
        task = asyncio.create_task(service.run(stop))
        try:
            await _until(waiting, 10, "both jobs wait with 361")
            refreshes = idp.requests["refresh_token"]
            await asyncio.sleep(1.5)  # rounds go by: the paused account is not hammered
            assert waiting() and smtp.messages == []
            assert idp.requests["refresh_token"] == refreshes
            assert [worker.store.get(i).attempts for i in ids] == [0, 0]
            # Someone signs in again (here: in a thread, as `faxgw auth login` would in
            # another process). Nothing else is done: the service notices by itself.
            await asyncio.to_thread(gateway.sign_in)
            took = await _until(lambda: len(smtp.messages) == 2, 10, "both jobs sent")
            assert took < 5
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)
        assert task.done() and not task.cancelled() and task.exception() is None
        await asyncio.sleep(0.1)
        leftovers = [t for t in asyncio.all_tasks()
                     if t is not asyncio.current_task() and not t.done()]
        assert leftovers == []
        assert service.rounds >= 3
        assert [worker.store.get(i).state for i in ids] == [JobState.SENT] * 2
        assert worker.store.counts().get(JobState.SENDING, 0) == 0

    try:
        asyncio.run(scenario())
    finally:
        worker.close()
    _sent_as(smtp, ACCOUNT, 2)
    gateway.assert_no_token_text()


@pytest.mark.slow
def test_faxgw_run_sends_waiting_jobs_after_login_and_stops_on_sigterm(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path,
    tmp_path: Path,
) -> None:
    gateway.sign_in()
    ids = [gateway.queue(samples / "note.txt"), gateway.queue(samples / "note.txt")]
    _expire_access_tokens(idp)
    idp.kill_refresh_tokens(ACCOUNT, 70043)
    log_file = tmp_path / "run.log"

    def wait(condition: Callable[[], bool], what: str) -> float:
        return asyncio.run(_until(condition, 15, what))

    with log_file.open("w") as log:
        service = subprocess.Popen(gateway.command("-v", "run"), stdout=log,
                                   stderr=subprocess.STDOUT, cwd=tmp_path,
                                   env=gateway.environment())
        try:
            wait(lambda: all(gateway.job(i).code == 361 for i in ids), "jobs wait with 361")
            assert [gateway.job(i).attempts for i in ids] == [0, 0] and smtp.messages == []
            gateway.login()  # the only thing a person does
            took = wait(lambda: len(smtp.messages) == 2, "both jobs sent")
            assert took < 5
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=15) == 0
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
    output = log_file.read_text(encoding="utf-8")
    gateway.outputs.append(output)
    assert "faxgw stopped" in output and "Traceback" not in output
    assert "faxgw auth login" in output  # the log said what to do
    assert [gateway.job(i).state for i in ids] == [JobState.SENT] * 2
    _sent_as(smtp, ACCOUNT, 2)
    gateway.assert_no_token_text()


# -- each error row of the classification: the job is kept with its code ------------------------


def test_never_signed_in_waits_with_370(
    gateway: Gateway, smtp: FaxSMTPServer, samples: Path
) -> None:
    job_id = gateway.queue(samples / "note.txt")
    summary = gateway.run_worker()
    assert (summary.sent, summary.waiting_for_auth) == (0, 1)
    job = gateway.job(job_id)
    assert (job.state, job.code, job.attempts) == (JobState.DEFERRED, codes.SIGN_IN_AGAIN, 0)
    assert "faxgw auth login" in (job.error or "")
    assert smtp.messages == []


@pytest.mark.parametrize(("aadsts", "code"), [
    (65001, codes.CONSENT_MISSING),
    (50076, codes.SIGN_IN_AGAIN),
    (50079, codes.SIGN_IN_AGAIN),
    (53003, codes.SIGN_IN_AGAIN),
    (7000218, codes.APP_REGISTRATION),
    (700016, codes.APP_REGISTRATION),
])
def test_identity_provider_refusal_waits_with_its_code(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path,
    aadsts: int, code: int,
) -> None:
    gateway.sign_in()
    job_id = gateway.queue(samples / "note.txt")
    _expire_access_tokens(idp)
    idp.fail("refresh_token", aadsts)
    summary = gateway.run_worker()
    assert (summary.sent, summary.failed, summary.waiting_for_auth) == (0, 0, 1)
    job = gateway.job(job_id)
    assert (job.state, job.code, job.attempts) == (JobState.DEFERRED, code, 0)
    assert f"AADSTS{aadsts}" in (job.error or "")
    assert smtp.messages == []
    # The cause is fixed and someone signs in: the kept job goes out.
    idp.clear_failures()
    gateway.sign_in()
    assert gateway.run_worker().sent == 1
    assert gateway.job(job_id).state is JobState.SENT
    gateway.assert_no_token_text()


def test_smtp_auth_disabled_is_371_and_the_job_waits(
    gateway: Gateway, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.queue(samples / "note.txt")
    smtp.faults.reply("AUTH", AUTH_DISABLED, times=None)
    summary = gateway.run_worker()
    assert (summary.sent, summary.failed, summary.waiting_for_auth) == (0, 0, 1)
    job = gateway.job(job_id)
    assert (job.state, job.code, job.attempts) == (
        JobState.DEFERRED, codes.SMTP_AUTH_DISABLED, 0)
    assert "5.7.139" in (job.error or "") or "5.7.139" in (job.last_reply or "")
    assert smtp.messages == []
    smtp.faults.clear()  # an administrator enables SMTP AUTH for the mailbox
    assert gateway.run_worker().sent == 1
    gateway.assert_no_token_text()


@pytest.mark.parametrize(("point", "reply"), [
    ("MAIL", "550 5.7.60 SMTP; Client does not have permissions to send as this sender"),
    ("DATA_END", "554 5.2.252 SendAsDenied; fax@contoso.com not allowed to send as "
                 "boss@contoso.com"),
])
def test_send_as_denied_fails_with_372(
    gateway: Gateway, smtp: FaxSMTPServer, samples: Path, point: str, reply: str
) -> None:
    gateway.sign_in()
    job_id = gateway.queue(samples / "note.txt")
    smtp.faults.reply(point, reply, times=None)
    summary = gateway.run_worker()
    assert (summary.sent, summary.failed) == (0, 1)
    job = gateway.job(job_id)
    assert (job.state, job.code) == (JobState.FAILED, codes.SEND_AS_DENIED)
    assert job.last_reply == reply
    assert smtp.messages == []
    gateway.assert_no_token_text()


def test_unreachable_identity_provider_defers_with_360(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.queue(samples / "note.txt")
    idp.stop()
    summary = gateway.run_worker()
    assert (summary.sent, summary.failed, summary.deferred) == (0, 0, 1)
    job = gateway.job(job_id)
    assert (job.state, job.code) == (JobState.DEFERRED, codes.NO_CONNECTION)
    assert "identity provider" in (job.error or "")
    assert job.next_attempt_at is not None and job.next_attempt_at > job.updated
    assert smtp.messages == [] and smtp.commands == []
    gateway.assert_no_token_text()


def test_one_refused_token_is_refreshed_once_and_the_job_sent(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.queue(samples / "note.txt")
    smtp.faults.reply("AUTH", TOKEN_REFUSED, times=1)
    assert gateway.run_worker().sent == 1
    assert idp.requests["refresh_token"] == 1
    assert gateway.job(job_id).state is JobState.SENT
    assert [r for _, r in smtp.replies if r.startswith("535")] == [TOKEN_REFUSED]
    _sent_as(smtp, ACCOUNT, 1)
    gateway.assert_no_token_text()


def test_token_refused_twice_waits_with_370(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.sign_in()
    job_id = gateway.queue(samples / "note.txt")
    smtp.faults.reply("AUTH", TOKEN_REFUSED, times=2)
    summary = gateway.run_worker()
    assert (summary.sent, summary.failed, summary.waiting_for_auth) == (0, 0, 1)
    assert idp.requests["refresh_token"] == 1  # one forced refresh, not a loop
    job = gateway.job(job_id)
    assert (job.state, job.code, job.attempts) == (JobState.DEFERRED, codes.SIGN_IN_AGAIN, 0)
    assert smtp.messages == []
    gateway.assert_no_token_text()


# -- refresh across an access-token expiry mid-queue --------------------------------------------


def test_token_expiring_between_rounds_is_refreshed_silently(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    idp.access_token_lifetime = 600  # short, but longer than the 5-minute refresh margin
    gateway.configure(limits={"connections": 1})
    gateway.sign_in()
    first = gateway.queue(samples / "note.txt")
    worker = gateway.worker()  # one long-lived worker, as in the service

    try:
        assert asyncio.run(worker.run_once()).sent == 1
        assert idp.requests["refresh_token"] == 0
        idp.advance(601)  # the token the worker holds has expired
        rest = [gateway.queue(samples / "note.txt"), gateway.queue(samples / "letter.pdf")]
        summary = asyncio.run(worker.run_once())
    finally:
        worker.close()
    assert (summary.sent, summary.waiting_for_auth, summary.deferred) == (2, 0, 0)
    assert idp.requests["refresh_token"] == 1
    assert idp.requests["device_code"] == 1  # no new sign-in
    assert [gateway.job(i).state for i in [first, *rest]] == [JobState.SENT] * 3
    _sent_as(smtp, ACCOUNT, 3)
    gateway.assert_no_token_text()


# -- two accounts, each sending as itself --------------------------------------------------------


@pytest.mark.slow
def test_two_accounts_send_as_themselves_and_a_third_waits_alone(
    gateway: Gateway, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.configure(intake={"allowed_senders": [OTHER, STRANGER]})
    gateway.login(ACCOUNT)
    gateway.login(OTHER)
    mine = gateway.submit(samples / "note.txt", sender=ACCOUNT)
    theirs = gateway.submit(samples / "note.txt", sender=OTHER)
    stranger = gateway.submit(samples / "note.txt", sender=STRANGER)

    assert gateway.run_once() == {**NOTHING, "sent": 2, "waiting_for_auth": 1}
    _sent_as(smtp, ACCOUNT, 1)
    _sent_as(smtp, OTHER, 1)
    for received in smtp.messages:
        assert received.auth_user == received.mail_from == received.message["From"]
    rows = gateway.jobs()
    assert (rows[mine]["state"], rows[theirs]["state"]) == ("sent", "sent")
    assert (rows[stranger]["state"], rows[stranger]["code"], rows[stranger]["attempts"]) == (
        "deferred", 370, 0)
    assert STRANGER in rows[stranger]["error"]
    gateway.assert_no_token_text()


# -- client credentials --------------------------------------------------------------------------


@pytest.mark.slow
def test_client_credentials_send_as_the_account_without_sign_in(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.configure(auth={"flow": "client_credentials", "scopes": [APP_SCOPE]})
    idp.add_client_secret(CLIENT_ID, CLIENT_SECRET)
    env = {"FAXGW_CLIENT_SECRET": CLIENT_SECRET}
    ids = [gateway.submit(samples / "note.txt"), gateway.queue(samples / "letter.pdf")]
    assert gateway.run_once(env=env) == {**NOTHING, "sent": 2}
    _sent_as(smtp, ACCOUNT, 2)
    assert [gateway.job(i).state for i in ids] == [JobState.SENT] * 2
    assert idp.requests["device_code"] == 0 and idp.requests["client_credentials"] >= 1
    sheet = json.loads(gateway.cli("status", "--json", env=env).stdout)
    assert sheet["sign_in"] == "app-only (client credentials), no sign-in needed"
    assert all(CLIENT_SECRET not in text for text in gateway.outputs)
    assert CLIENT_SECRET not in gateway.caplog.text
    gateway.assert_no_token_text()


@pytest.mark.slow
def test_client_credentials_with_a_certificate_send_without_sign_in(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path,
    tmp_path: Path,
) -> None:
    pem, certificate, key = app_certificate(tmp_path)
    idp.add_client_certificate(CLIENT_ID, certificate)
    gateway.configure(auth={"flow": "client_credentials", "scopes": [APP_SCOPE],
                            "client_certificate_file": str(pem)})
    job = gateway.queue(samples / "note.txt")
    assert gateway.run_once() == {**NOTHING, "sent": 1}
    _sent_as(smtp, ACCOUNT, 1)
    assert gateway.job(job).state is JobState.SENT
    assert idp.requests["client_credentials"] == 1
    key_line = key.decode().splitlines()[1]
    assert all(key_line not in text for text in gateway.outputs)
    gateway.assert_no_token_text()


# -- secrets: no token text anywhere, the cache private ------------------------------------------


@pytest.mark.slow
def test_no_token_text_anywhere_after_a_busy_life(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer, samples: Path
) -> None:
    gateway.login()
    first = gateway.submit(samples / "note.txt")
    assert gateway.run_once()["sent"] == 1
    _expire_access_tokens(idp)
    gateway.cli("-vv", "auth", "test")  # the refused token is refreshed once
    assert idp.requests["refresh_token"] == 1
    _expire_access_tokens(idp)
    idp.kill_refresh_tokens(ACCOUNT, 50173)
    failed = gateway.cli("-vv", "auth", "test", check=False)
    assert failed.returncode == 1 and "code 361" in failed.stderr
    gateway.cli("-vv", "auth", "status")
    gateway.cli("-vv", "show", first, "--json")
    gateway.cli("-vv", "auth", "logout")
    # In this process too, logging at DEBUG into caplog: sign-in, a refused token, a refresh.
    gateway.sign_in()
    gateway.queue(samples / "note.txt")
    _expire_access_tokens(idp)
    assert gateway.run_worker().sent == 1
    assert len(idp.issued_tokens()) >= 4 and len(idp.refresh_tokens()) >= 3
    gateway.assert_no_token_text()


# -- keep-alive ----------------------------------------------------------------------------------


def test_overdue_keepalive_runs_soon_after_the_service_starts(
    gateway: Gateway, idp: LocalIdentityProvider, smtp: FaxSMTPServer
) -> None:
    # A keep-alive interval of under a second: the sign-in below is already overdue for one
    # by the time the service starts (as after a gateway stopped for longer than a week).
    gateway.configure(auth={"keepalive_days": 1e-6})
    gateway.sign_in()
    with OAuth2Provider(gateway.config) as provider:
        [before] = provider.status()
    assert before.last_refresh is not None and before.last_keepalive is None
    time.sleep(0.2)
    worker = gateway.worker()
    service = Service(worker)

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            return await _until(lambda: service.keepalives >= 1, 10,
                                "a keep-alive ran to its end")
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)

    try:
        took = asyncio.run(scenario())
    finally:
        worker.close()
    assert took < 8  # soon after start: not a keep-alive interval later
    assert idp.requests["refresh_token"] >= 1
    assert idp.requests["device_code"] == 1 and smtp.messages == []
    [after] = gateway.auth_status()
    assert after["state"] == "signed in"
    assert after["last_refresh"] is not None
    assert datetime.fromisoformat(after["last_refresh"]) > before.last_refresh
    assert after["last_keepalive"]["ok"] is True
    gateway.assert_no_token_text()
