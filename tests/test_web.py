"""The web console over HTTP, against the real app (Starlette's TestClient): log-in and its
cookie, the pause after failed log-ins, CSRF, the API's tokens, health and metrics, and the
``[web]`` configuration with ``faxgw web password`` / ``token``."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from faxgw.app.submit import submit
from faxgw.app.wiring import open_spool, store_open
from faxgw.cli.context import CliContext
from faxgw.cli.web import web as web_command
from faxgw.config import Config
from faxgw.domain.errors import ConfigError
from faxgw.domain.jobs import JobState
from faxgw.intake.register import register
from faxgw.web import credentials
from faxgw.web.routes import CSP, WebState, create_app
from faxgw.web.sessions import LoginThrottle

from .conftest import MakeConfig

ADMIN = "admin password for the console"
PAGES = ["/server", "/jobs", "/send", "/codes", "/signin", "/jobs/0000"]
NAV = ["Email server", "Job status", "Send a fax", "Codes", "Log out"]


@pytest.fixture
def config(make_config: MakeConfig, tmp_path: Path) -> Config:
    built = make_config(web={"admin_password_file": str(tmp_path / "web" / "password"),
                             "api_token_file": str(tmp_path / "web" / "tokens")})
    credentials.set_password(built.web.admin_password_file, ADMIN)
    return built


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    with TestClient(create_app(config), follow_redirects=False) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def log_in(client: TestClient, password: str = ADMIN) -> str:
    """Log in; the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "password": password})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/send").text)


def queue_job(config: Config, document: Path, subject: str = "") -> str:
    spool = open_spool(config)
    spool.ensure()
    intake = spool.submit("+4930123456", [document], subject=subject)
    with store_open(config) as store:
        return register(intake, config=config, store=store, documents=spool).id


@pytest.mark.parametrize("path", PAGES)
def test_every_page_but_log_in_needs_a_session(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    login = client.get("/login")
    assert 'for="password">Password</label>' in login.text
    assert '<button type="submit" class="primary">Log in</button>' in login.text


def test_log_in_gives_a_strict_http_only_cookie_and_the_navigation(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "password": ADMIN})
    assert answer.status_code == 303 and answer.headers["location"] == "/server"
    cookie = answer.headers["set-cookie"]
    assert "faxgw_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; under TLS it is Secure
    page = client.get("/server").text
    for link in NAV:
        assert f">{link}</a>" in page
    for row in ("Authentication method", "Email service", "Current status",
                "Authenticated account", "Sender&#39;s email address", "SMTP server address",
                "SMTP server port number", "Secure connection", "Certificate validation"):
        assert f">{row}</th>" in page
    assert client.get("/logout").headers["location"] == "/login"
    assert client.get("/server").status_code == 303


def test_a_wrong_password_is_refused_and_repeated_failures_pause(client: TestClient) -> None:
    statuses = []
    for _ in range(4):
        token = csrf_of(client.get("/login").text)
        statuses.append(client.post("/login", data={"csrf": token, "password": "guess"}))
    assert [a.status_code for a in statuses[:3]] == [401, 401, 401]
    assert "Wrong password." in statuses[0].text
    # The third failure earned a pause: the next try is not even checked.
    assert statuses[3].status_code == 429 and "Too many failed log-ins" in statuses[3].text
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"csrf": token, "password": ADMIN}).status_code == 429


def test_the_pause_grows() -> None:
    now = [0.0]
    throttle = LoginThrottle(lambda: now[0])
    pauses = [throttle.failed("10.0.0.1") for _ in range(6)]
    assert pauses == [0, 0, 1, 2, 4, 8]
    assert throttle.wait_seconds("10.0.0.1") == 8 and throttle.wait_seconds("10.0.0.2") == 0
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_seconds("10.0.0.1") == 0


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, config: Config,
                                                 samples: Path) -> None:
    job_id = queue_job(config, samples / "note.txt")
    csrf = log_in(client)
    assert client.post(f"/jobs/{job_id}/hold").status_code == 403
    assert client.post(f"/jobs/{job_id}/hold", data={"csrf": "forged"}).status_code == 403
    assert client.post("/login", data={"password": ADMIN}).status_code == 403
    answer = client.post("/send", data={"to": "+4930123456"})
    assert answer.status_code == 403 and "security token" in answer.text
    done = client.post(f"/jobs/{job_id}/hold", data={"csrf": csrf})
    assert done.status_code == 303
    assert f"Hold: job {job_id} is now held." in client.get(done.headers["location"]).text


def test_job_status_escapes_what_it_shows(client: TestClient, config: Config,
                                          samples: Path) -> None:
    job_id = queue_job(config, samples / "note.txt", subject="<script>alert(1)</script>")
    log_in(client)
    table = client.get("/jobs").text
    for column in ("ID", "State", "Code", "Number", "Pages", "Attempts", "Updated",
                   "Last error"):
        assert f"<th>{column}</th>" in table
    assert job_id in table
    page = client.get(f"/jobs/{job_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert ">Cancel</button>" in page and ">Hold</button>" in page
    assert ">Release</button>" not in page
    assert client.get("/jobs?state=sent").text.count("/jobs/" + job_id) == 0


def test_every_answer_has_a_strict_content_security_policy(client: TestClient) -> None:
    for path in ("/login", "/server", "/static/style.css", "/healthz"):
        assert client.get(path).headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "script-src 'self';" in CSP
    assert "unsafe" not in CSP


def test_send_a_fax_gives_the_command_line_s_words_for_bad_input(
        client: TestClient, samples: Path) -> None:
    csrf = log_in(client)
    document = (samples / "note.txt").read_bytes()
    answer = client.post("/send", data={"csrf": csrf, "to": "12", "action": "send"},
                         files=[("files", ("note.txt", document, "text/plain"))])
    assert answer.status_code == 400 and "(code 400)" in answer.text
    preview = client.post("/send", data={"csrf": csrf, "to": "+4930123456",
                                         "action": "preview"},
                          files=[("files", ("note.txt", document, "text/plain"))])
    assert preview.status_code == 200 and "within every limit" in preview.text
    sent = client.post("/send", data={"csrf": csrf, "to": "+4930123456", "action": "send",
                                      "subject": "Order 4711"},
                       files=[("files", ("note.txt", document, "text/plain"))])
    assert sent.status_code == 303 and sent.headers["location"].startswith("/jobs/")
    job_page = client.get(sent.headers["location"]).text
    assert "Order 4711" in job_page and ">View the attachment</a>" in job_page
    fax = client.get(sent.headers["location"] + "/fax")
    assert fax.headers["content-type"] == "application/pdf"
    assert fax.content.startswith(b"%PDF") and "inline" in fax.headers["content-disposition"]
    assert client.get("/jobs/nothing-like-it/fax").status_code == 404


def test_the_api_needs_a_bearer_token(client: TestClient, config: Config,
                                      samples: Path) -> None:
    for method, path in (("GET", "/api/status"), ("GET", "/api/jobs"),
                         ("GET", "/api/jobs/x"), ("POST", "/api/jobs"),
                         ("POST", "/api/jobs/x/retry")):
        answer = client.request(method, path)
        assert answer.status_code == 401 and answer.json()["code"] is None
    assert client.get("/api/jobs", headers={"Authorization": "Bearer faxgw_wrong"}
                      ).status_code == 401
    token = credentials.add_api_token(config.web.api_token_file, "test")
    assert token not in config.web.api_token_file.read_text()
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/jobs", headers=auth, data={"to": "+4930123456",
                                                            "subject": "API"},
                          files=[("files", ("note.txt", (samples / "note.txt").read_bytes(),
                                            "text/plain"))])
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    rows = client.get("/api/jobs?state=queued", headers=auth).json()
    assert [row["id"] for row in rows] == [job_id] and rows[0]["subject"] == "API"
    assert client.get(f"/api/jobs/{job_id}", headers=auth).json()["history"]
    assert client.post(f"/api/jobs/{job_id}/hold", headers=auth).json()["state"] == "held"
    refused = client.post(f"/api/jobs/{job_id}/hold", headers=auth)
    assert refused.status_code == 409 and "cannot hold" in refused.json()["error"]
    assert client.get("/api/jobs/nothing-like-it", headers=auth).status_code == 404
    bad = client.post("/api/jobs", headers=auth, data={"to": "110"},
                      files=[("files", ("note.txt", b"hello", "text/plain"))])
    assert bad.status_code == 400 and bad.json()["code"] == 401
    assert client.get("/api/status", headers=auth).json()["queue"]["held"] == 1


def test_metrics_parse_and_the_probes_answer(client: TestClient, config: Config,
                                             samples: Path) -> None:
    queue_job(config, samples / "note.txt")
    broken = samples / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 and then nothing")
    assert submit(config, "+4930123456", [broken]).state is JobState.FAILED
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/readyz").status_code == 200
    text = client.get("/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    jobs = {sample.labels["state"]: sample.value for sample in families["faxgw_jobs"].samples}
    assert jobs["queued"] == 1 and jobs["sent"] == 0
    assert families["faxgw_store_up"].samples[0].value == 1
    assert families["faxgw_oldest_waiting_seconds"].samples[0].value >= 0
    finished = families["faxgw_jobs_finished"].samples
    assert [(f.labels["state"], f.value) for f in finished] == [("failed", 1)]


def test_readyz_says_when_the_store_cannot_be_read(config: Config) -> None:
    config.spool.dir.mkdir(parents=True, exist_ok=True)
    (config.spool.dir / "state").write_text("not a folder")
    with TestClient(create_app(config, WebState(config))) as test_client:
        assert test_client.get("/readyz").status_code == 503


def test_web_configuration(make_config: MakeConfig, tmp_path: Path) -> None:
    assert make_config().web.listen == ""
    with pytest.raises(ConfigError, match=r"\[web\]: listen: '0.0.0.0:8025' is not a loopback"):
        make_config(web={"listen": "0.0.0.0:8025"})
    with pytest.raises(ConfigError, match="host:port"):
        make_config(web={"listen": "localhost"})
    tls = make_config(web={"listen": "0.0.0.0:8443", "certificate_file": "c.pem",
                           "key_file": "k.pem", "api_token_file": "t"})
    assert tls.web.certificate_file == tmp_path / "c.pem"
    assert tls.web.api_token_file == tmp_path / "t"
    assert make_config(web={"listen": "[::1]:8025"}).web.listen == "[::1]:8025"


def test_web_password_and_token_commands(config: Config) -> None:
    path = config.web.admin_password_file
    path.unlink()
    done = CliRunner().invoke(web_command, ["password"], input="s3cret words\n",
                              obj=CliContext(_config=config))
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in path.read_text() and path.read_text().startswith("$argon2")
    assert credentials.check_password(path, "s3cret words")
    assert not credentials.check_password(path, "s3cret word")
    made = CliRunner().invoke(web_command, ["token", "--name", "nagios"],
                              obj=CliContext(_config=config))
    token = made.stdout.strip()
    assert made.exit_code == 0 and token.startswith("faxgw_")
    assert token not in config.web.api_token_file.read_text()
    assert credentials.check_api_token(config.web.api_token_file, token)
    assert stat.S_IMODE(config.web.api_token_file.stat().st_mode) == 0o600


def test_under_tls_the_session_cookie_is_secure(make_config: MakeConfig, tmp_path: Path) -> None:
    config = make_config(web={"listen": "0.0.0.0:8443", "certificate_file": "c.pem",
                              "key_file": "k.pem",
                              "admin_password_file": str(tmp_path / "password")})
    credentials.set_password(config.web.admin_password_file, ADMIN)
    with TestClient(create_app(config), base_url="https://testserver",
                    follow_redirects=False) as test_client:
        token = csrf_of(test_client.get("/login").text)
        answer = test_client.post("/login", data={"csrf": token, "password": ADMIN})
        assert answer.status_code == 303 and "Secure" in answer.headers["set-cookie"]


def test_without_an_admin_password_nobody_logs_in(config: Config,
                                                  client: TestClient) -> None:
    config.web.admin_password_file.unlink()
    login = client.get("/login")
    assert "No admin password is set yet" in login.text
    answer = client.post("/login", data={"csrf": csrf_of(login.text), "password": ""})
    assert answer.status_code == 401 and "faxgw web password" in answer.text
    assert client.get("/no/such/page").status_code == 404
