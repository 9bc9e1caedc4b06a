"""Send as me over HTTP, against the local identity provider: a person who is not the admin
signs in with their own mailbox (who they are comes from the sign-in), must be in
``[web] user_domains``, and then sees and acts on their own jobs only; the proof of their
sign-in lets their console jobs through ``[intake] allowed_senders`` (408), and nothing else."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from faxgw.app import signin
from faxgw.app.submit import submit
from faxgw.app.wiring import open_spool, store_open
from faxgw.config import Config, config_from_dict
from faxgw.domain import codes
from faxgw.domain.errors import InputError
from faxgw.domain.jobs import JobState
from faxgw.intake.register import record_signed_in, register
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.web import credentials
from faxgw.web.routes import create_app

from .test_oauth_delivery import ACCOUNT, CLIENT_ID, OTHER, SCOPE, STRANGER
from .test_web import ADMIN, csrf_of, log_in, queue_job

OUTSIDER = "guest@fabrikam.com"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.device_interval = 0
        yield server


@pytest.fixture
def config(tmp_path: Path, idp: LocalIdentityProvider) -> Config:
    built = config_from_dict({
        "spool": {"dir": "spool", "settle_seconds": 0},
        "smtp": {"sender": ACCOUNT},
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                 "ca_file": str(idp.ca_file), "token_cache": "state/tokens.json",
                 "http_timeout_seconds": 5},
        "web": {"user_domains": ["Contoso.com"]},
    }, base=tmp_path)
    credentials.set_password(built.web.admin_password_file, ADMIN)
    return built


@pytest.fixture
def app(config: Config) -> Iterator[object]:
    built = create_app(config)
    yield built
    built.state.web.close()


def _client(app: object) -> TestClient:
    return TestClient(app, follow_redirects=False)  # type: ignore[arg-type]


def send_as_me(client: TestClient, idp: LocalIdentityProvider, account: str) -> str:
    """Sign in with "Send as me" as ``account``; the last page (the session's Send a fax when
    it worked, else the Send as me page with its refusal)."""
    login = client.get("/login").text
    assert 'href="/login/me">Send as me</a>' in login
    token = csrf_of(client.get("/login/me").text)
    assert client.post("/login/me", data={"csrf": token, "action": "start"}).status_code == 303
    waiting = client.get("/login/me").text
    match = re.search(r'<span class="usercode">([^<]+)</span>', waiting)
    assert match, waiting
    idp.approve(match.group(1), account)
    deadline = time.monotonic() + 15
    while True:
        answer = client.get("/login/me")
        if answer.status_code == 303:
            assert answer.headers["location"] == "/send"
            return html.unescape(client.get("/send").text)
        if 'role="alert"' in answer.text:
            assert match.group(1) not in answer.text
            return html.unescape(answer.text)
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.05)


def _someone_elses_job(config: Config, document: Path, sender: str) -> str:
    spool = open_spool(config)
    spool.ensure()
    intake = spool.submit("+4930123456", [document], sender=sender)
    record_signed_in(spool, intake)
    with store_open(config) as store:
        return register(intake, config=config, store=store, documents=spool).id


def test_a_user_sends_as_themselves_and_sees_only_their_own_jobs(
        app: object, config: Config, idp: LocalIdentityProvider, samples: Path) -> None:
    admin = _client(app)
    admin_csrf = log_in(admin)
    admins_job = queue_job(config, samples / "note.txt", "the admin's")
    others_job = _someone_elses_job(config, samples / "note.txt", STRANGER)

    user = _client(app)
    page = send_as_me(user, idp, OTHER.upper())  # the domain is compared without case
    assert f"Signed in as {OTHER.upper()}" in page and "your own mailbox" in page
    assert 'href="/server"' not in page  # no Email server link for a user
    for link in ("Job status", "Send a fax", "Log out"):
        assert f">{link}</a>" in page
    csrf = csrf_of(page)

    # A fax from the console goes out as the user: no allowed_senders entry needed (408).
    sent = user.post("/send", data={"csrf": csrf, "to": "+4930123456", "action": "send"},
                     files=[("files", ("note.txt", (samples / "note.txt").read_bytes(),
                                       "text/plain"))])
    assert sent.status_code == 303, sent.text
    mine = sent.headers["location"].rsplit("/", 1)[1]
    with store_open(config) as store:
        job = store.get(mine)
    assert job.state is JobState.QUEUED and job.sender.lower() == OTHER
    job_file = open_spool(config).job_dir(mine) / "job.json"
    assert json.loads(job_file.read_text())["sender_signed_in"] is True

    # Job status: their own jobs only.
    listing = user.get("/jobs").text
    assert mine in listing and admins_job not in listing and others_job not in listing
    assert "Cancel" in user.get(f"/jobs/{mine}").text
    for job_id in (admins_job, others_job):
        assert user.get(f"/jobs/{job_id}").status_code == 404
        assert user.get(f"/jobs/{job_id}/fax").status_code == 404
        assert user.get(f"/jobs/{job_id[:12]}").status_code == 404
        refused = user.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
        assert refused.status_code == 404
        with store_open(config) as store:
            assert store.get(job_id).state is JobState.QUEUED

    # The admin's pages and actions are not theirs.
    for path in ("/server", "/signin"):
        answer = user.get(path)
        assert answer.status_code == 403 and "administrator" in answer.text
    assert user.post("/server/signout", data={"csrf": csrf}).status_code == 403
    assert user.post("/signin", data={"csrf": csrf, "action": "start"}).status_code == 403
    assert signin.statuses(config)  # nothing was signed out

    # The admin still sees everything and was not logged out; the gateway account untouched.
    listing = admin.get("/jobs").text
    assert all(job_id in listing for job_id in (mine, admins_job, others_job))
    assert admin.get("/server").status_code == 200
    assert admin_csrf
    states = {s.account.lower(): s.state for s in signin.statuses(config)}
    assert states[OTHER] == "signed in" and states[ACCOUNT] == "sign-in needed"

    # Log out ends the session, not the mailbox's sign-in (the admin removes that).
    assert user.get("/logout").status_code == 303
    assert user.get("/jobs").headers["location"] == "/login"
    assert OTHER in {s.account.lower() for s in signin.statuses(config)}


def test_a_user_outside_user_domains_is_refused_after_the_sign_in(
        app: object, config: Config, idp: LocalIdentityProvider) -> None:
    user = _client(app)
    page = send_as_me(user, idp, OUTSIDER)
    assert "fabrikam.com is not one of the domains allowed" in page
    assert "user_domains: contoso.com" in page
    assert "Solution:" not in page  # not a sign-in fault: nothing to fix by signing in again
    assert user.get("/send").headers["location"] == "/login"  # no session
    assert OUTSIDER not in {s.account.lower() for s in signin.statuses(config)}


def test_the_gateway_account_cannot_send_as_me(
        app: object, config: Config, idp: LocalIdentityProvider) -> None:
    user = _client(app)
    page = send_as_me(user, idp, ACCOUNT)
    assert "the gateway's own account" in page
    assert user.get("/send").headers["location"] == "/login"
    assert signin.statuses(config)[0].state == "sign-in needed"  # its tokens were not kept


def test_nobody_may_send_as_me_when_user_domains_is_empty(
        tmp_path: Path, config: Config, idp: LocalIdentityProvider) -> None:
    closed = config.model_copy(update={"web": config.web.model_copy(
        update={"user_domains": []})})
    app = create_app(closed)
    try:
        user = _client(app)
        assert "user_domains is empty" in html.unescape(user.get("/login/me").text)
        page = send_as_me(user, idp, OTHER)
        assert "'Send as me' is off on this gateway" in page
        assert user.get("/send").headers["location"] == "/login"
    finally:
        app.state.web.close()


def test_the_send_as_me_form_needs_its_token(app: object) -> None:
    user = _client(app)
    user.get("/login/me")
    answer = user.post("/login/me", data={"csrf": "forged", "action": "start"})
    assert answer.status_code == 403 and "too old" in answer.text


def test_a_signed_in_users_address_is_still_refused_408_elsewhere(
        app: object, config: Config, idp: LocalIdentityProvider, samples: Path) -> None:
    """Signing in proves the sender for that console session's jobs only: a dropped manifest
    or ``faxgw submit --sender`` naming the same address is refused as before."""
    assert "Signed in as" in send_as_me(_client(app), idp, OTHER)
    spool = open_spool(config)
    spool.ensure()
    (spool.layout.outgoing / "doc.txt").write_bytes((samples / "note.txt").read_bytes())
    (spool.layout.outgoing / "job.fax").write_text(
        f'to = "+4930123456"\nfiles = ["doc.txt"]\nsender = "{OTHER}"\n')
    [intake] = spool.scan()
    assert intake.sender_signed_in is False
    with store_open(config) as store:
        job = register(intake, config=config, store=store, documents=spool)
    assert (job.state, job.code) == (JobState.FAILED, codes.SENDER_NOT_ALLOWED)
    assert job.sender == ACCOUNT

    # A manifest cannot claim the proof itself.
    (spool.layout.outgoing / "doc2.txt").write_bytes((samples / "note.txt").read_bytes())
    (spool.layout.outgoing / "claim.fax").write_text(
        f'to = "+4930123456"\nfiles = ["doc2.txt"]\nsender = "{OTHER}"\n'
        "sender_signed_in = true\n")
    [claimed] = spool.scan()
    with store_open(config) as store:
        job = register(claimed, config=config, store=store, documents=spool)
    assert job.state is JobState.FAILED and job.sender == ACCOUNT

    with pytest.raises(InputError) as refused:
        submit(config, "+4930123456", [samples / "note.txt"], sender=OTHER)
    assert refused.value.code == codes.SENDER_NOT_ALLOWED


def test_a_recovered_console_job_keeps_its_proof(config: Config, samples: Path) -> None:
    """job.json carries the proof, so a job registered again from its folder (recovery) is
    not refused 408."""
    spool = open_spool(config)
    spool.ensure()
    intake = spool.submit("+4930123456", [samples / "note.txt"], sender=OTHER)
    record_signed_in(spool, intake)
    from faxgw.intake.job_file import Intake

    again = Intake.from_file(spool.job_dir(intake.id) / "job.json")
    assert again.sender_signed_in is True
    with store_open(config) as store:
        job = register(again, config=config, store=store, documents=spool)
    assert job.state is JobState.QUEUED and job.sender == OTHER


def test_send_as_me_leaves_the_admins_sign_in_under_way_alone(
        app: object, config: Config, idp: LocalIdentityProvider) -> None:
    admin = _client(app)
    csrf = log_in(admin)
    assert admin.post("/signin", data={"csrf": csrf, "action": "start"}).status_code == 303
    before = re.search(r'<span class="usercode">([^<]+)</span>', admin.get("/signin").text)
    assert before
    assert "Signed in as" in send_as_me(_client(app), idp, OTHER)
    page = admin.get("/signin").text
    assert before.group(1) in page and 'http-equiv="refresh"' in page  # still waiting
    idp.approve(before.group(1), ACCOUNT)
    deadline = time.monotonic() + 15
    while "Signed in</span>" not in admin.get("/signin").text:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    states = {s.account.lower(): s.state for s in signin.statuses(config)}
    assert states == {ACCOUNT: "signed in", OTHER: "signed in"}


def _start(client: TestClient) -> object:
    token = csrf_of(client.get("/login/me").text)
    return client.post("/login/me", data={"csrf": token, "action": "start"})


def test_send_as_me_sign_ins_under_way_are_limited(
        app: object, idp: LocalIdentityProvider) -> None:
    from faxgw.web.signin_flow import MAX_PENDING

    idp.device_interval = 1  # nobody finishes: every sign-in stays under way
    clients = [_client(app) for _ in range(MAX_PENDING + 1)]
    for client in clients[:MAX_PENDING]:
        assert _start(client).status_code == 303  # type: ignore[attr-defined]
        assert '<span class="usercode">' in client.get("/login/me").text
    refused = _start(clients[-1])
    assert refused.status_code == 429  # type: ignore[attr-defined]
    page = html.unescape(refused.text)  # type: ignore[attr-defined]
    assert "Too many people are signing in" in page and "Try again in a minute" in page
    assert 'role="alert"' in page and 'class="usercode"' not in page
    pending = app.state.web.pending  # type: ignore[attr-defined]
    assert pending.waiting() == MAX_PENDING
    # A browser that already waits keeps its own sign-in (its page still shows the code).
    assert _start(clients[0]).status_code == 303  # type: ignore[attr-defined]
    assert '<span class="usercode">' in clients[0].get("/login/me").text
    # One gives up: there is room for the next.
    token = csrf_of(clients[0].get("/login/me").text)
    clients[0].post("/login/me", data={"csrf": token, "action": "cancel"})
    assert pending.waiting() == MAX_PENDING - 1
    assert _start(clients[-1]).status_code == 303  # type: ignore[attr-defined]
    assert '<span class="usercode">' in clients[-1].get("/login/me").text


def test_the_pending_table_refuses_beyond_its_limit_and_stays_bounded(
        config: Config) -> None:
    from faxgw.web.signin_flow import MAX_KEPT, PendingSignIns, TooManySignIns

    pending = PendingSignIns(config, limit=2)
    first, _ = pending.new()
    pending.new()
    with pytest.raises(TooManySignIns):
        pending.new()
    assert pending.pop(first) is not None
    pending.new()  # room again
    assert pending.waiting() == 2
    assert pending.cancel_all() == 2 and pending.waiting() == 0
    unlimited = PendingSignIns(config, limit=MAX_KEPT * 2)
    for _ in range(MAX_KEPT + 5):
        _, flows = unlimited.new()
        flows.cancel()
        flows._view = flows._view.__class__(state="cancelled")  # ended, never collected
    assert len(unlimited._flows) <= MAX_KEPT
    unlimited.close()


def test_sign_out_signs_out_every_mailbox_and_ends_users_sessions(
        app: object, config: Config, idp: LocalIdentityProvider) -> None:
    admin = _client(app)
    csrf = log_in(admin)
    assert admin.post("/signin", data={"csrf": csrf, "action": "start"}).status_code == 303
    code = re.search(r'<span class="usercode">([^<]+)</span>', admin.get("/signin").text)
    assert code
    idp.approve(code.group(1), ACCOUNT)
    deadline = time.monotonic() + 15
    while "Signed in</span>" not in admin.get("/signin").text:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    user = _client(app)
    assert "Signed in as" in send_as_me(user, idp, OTHER)
    assert user.get("/send").status_code == 200
    waiting = _client(app)  # someone in the middle of a Send as me sign-in
    assert _start(waiting).status_code == 303  # type: ignore[attr-defined]
    states = {s.account.lower(): s.state for s in signin.statuses(config)}
    assert states == {ACCOUNT: "signed in", OTHER: "signed in"}
    server = admin.get("/server").text
    assert "every mailbox" in server

    assert admin.post("/server/signout", data={}).status_code == 403  # CSRF
    assert len(signin.statuses(config)) >= 2
    answer = admin.post("/server/signout", data={"csrf": csrf})
    assert answer.status_code == 303
    page = html.unescape(admin.get("/server").text)
    assert f"Signed out {ACCOUNT}" in page and f"Signed out {OTHER}" in page
    assert "Ended 1 console session(s)" in page
    assert "Stopped 1 Send as me sign-in(s)" in page
    assert {s.account.lower(): s.state for s in signin.statuses(config)} == {
        ACCOUNT: "sign-in needed"}  # the gateway's account is expected; nobody's tokens
    # The user's console session is gone; the admin's is not.
    gone = user.get("/send")
    assert gone.status_code == 303 and gone.headers["location"] == "/login"
    assert admin.get("/jobs").status_code == 200
    assert 'class="usercode"' not in waiting.get("/login/me").text


def test_signing_out_one_users_mailbox_ends_only_their_sessions(
        app: object, config: Config, idp: LocalIdentityProvider) -> None:
    admin = _client(app)
    csrf = log_in(admin)
    user = _client(app)
    assert "Signed in as" in send_as_me(user, idp, OTHER)
    second = _client(app)
    assert "Signed in as" in send_as_me(second, idp, "clerk@contoso.com")
    answer = admin.post("/server/signout", data={"csrf": csrf, "account": OTHER})
    assert answer.status_code == 303
    assert "Ended 1 console session(s)" in html.unescape(admin.get("/server").text)
    assert user.get("/send").status_code == 303
    assert second.get("/send").status_code == 200
    accounts = {s.account.lower() for s in signin.statuses(config)}
    assert "clerk@contoso.com" in accounts and OTHER not in accounts
