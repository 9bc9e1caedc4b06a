"""The web console end to end in a real browser: Debian's chromium driven by Playwright,
against the console served by uvicorn on a real port, the local identity provider and the
Exchange-like SMTP server. A person logs in, signs the gateway in with the device code, sends
a fax by upload and sees it sent, and retries a failed one; a user signs in with "Send as me"
and faxes from their own mailbox without seeing the admin's job. Each page is kept as a screenshot
(under the test's folder, and copied to ``test-artifacts/screenshots/`` in the checkout, or to
``$FAXGW_SCREENSHOTS``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from faxgw.app.wiring import build_worker
from faxgw.config import Config, config_from_dict
from faxgw.engine.outcomes import RunSummary
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.web import credentials
from faxgw.web.server import bind, serve

from .test_oauth_delivery import ACCOUNT, CLIENT_ID, OTHER, SCOPE

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
#: Where the screenshots of a run are kept to be looked at (git ignores the folder).
SHOTS = Path(os.environ.get("FAXGW_SCREENSHOTS")
             or Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots")
ADMIN = "the console's admin password"
NUMBER = "+4930123456"

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow


class Console:
    """The console served by uvicorn in a thread of its own, on a free loopback port."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sock = bind(config, "127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="console", daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(serve(self.config, self.stop, sock=self.sock))

    def __enter__(self) -> Console:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        self.loop.close()


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(directory=tmp_path) as server:
        server.device_interval = 1
        yield server


@pytest.fixture
def smtp(idp: LocalIdentityProvider) -> Iterator[FaxSMTPServer]:
    with FaxSMTPServer(tls="starttls", token_validator=idp.validate) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, idp: LocalIdentityProvider, smtp: FaxSMTPServer) -> Config:
    built = config_from_dict({
        "spool": {"dir": "spool", "settle_seconds": 0},
        "service": {"address": "{e164}@fax.example.net", "region": "DE"},
        "smtp": {"host": smtp.host, "port": smtp.port, "ca_file": str(smtp.ca_file),
                 "sender": ACCOUNT, "timeout_seconds": 5},
        "auth": {"method": "oauth2", "provider": "custom", "authority": idp.authority,
                 "scopes": [SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                 "ca_file": str(idp.ca_file), "token_cache": "state/tokens.json",
                 "http_timeout_seconds": 5},
        "web": {"listen": "127.0.0.1:8025", "admin_password_file": "state/web-password",
                "user_domains": ["contoso.com"]},
    }, base=tmp_path)
    credentials.set_password(built.web.admin_password_file, ADMIN)
    return built


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():  # .ci/run installs it; without it this test cannot mean much
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def pictures_loaded(page: object) -> None:
    """Wait until every picture on the page has loaded (and none is broken)."""
    images = page.locator("img")  # type: ignore[attr-defined]
    for index in range(images.count()):
        sync_api.expect(images.nth(index)).to_have_js_property("complete", True)
        assert images.nth(index).evaluate("image => image.naturalWidth") > 0


def run_worker(config: Config) -> RunSummary:
    """One worker round, as ``faxgw run --once`` does (in a thread: Playwright's sync API
    owns this thread's event loop)."""

    def once() -> RunSummary:
        worker = build_worker(config)
        try:
            return asyncio.run(worker.run_once())
        finally:
            worker.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(once).result(timeout=60)


def test_an_admin_signs_in_sends_and_retries_in_the_browser(
        config: Config, idp: LocalIdentityProvider, smtp: FaxSMTPServer, browser: object,
        samples: Path, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    expect = sync_api.expect

    with Console(config) as console:
        context = browser.new_context(viewport={"width": 1200, "height": 860})  # type: ignore[attr-defined]
        page = context.new_page()
        # Whatever the Content-Security-Policy blocks, the browser says in its console.
        refused: list[str] = []
        context.on("console", lambda message: refused.append(message.text)
                   if "Content Security Policy" in message.text else None)

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        # Log in: every page sends a stranger to it.
        page.goto(console.url + "/jobs")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        shot("01-log-in")
        page.get_by_label("Password").fill("not it")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong password.")
        page.get_by_label("Password").fill(ADMIN)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Email server")).to_be_visible()
        for link in ("Email server", "Job status", "Send a fax", "Codes", "Log out"):
            expect(page.get_by_role("link", name=link, exact=True)).to_be_visible()
        expect(page.get_by_role("row", name=re.compile("Current status")).first).to_contain_text(
            "Sign-in needed")
        shot("02-email-server-sign-in-needed")

        # Sign in with the device code: the person enters it at the IdP (approve).
        page.get_by_role("button", name="Sign in").click()
        code = page.locator(".usercode")
        expect(code).to_be_visible()
        link = page.locator("main a[target=_blank]")
        assert link.get_attribute("href", timeout=5000).startswith(idp.base_url)
        expect(page.get_by_role("button", name="Copy")).to_be_visible()  # with JavaScript
        shot("03-sign-in-code")
        user_code = code.inner_text().strip()
        assert user_code not in page.url
        idp.approve(user_code, ACCOUNT)
        expect(page.get_by_text("Signed in", exact=True)).to_be_visible(timeout=20_000)
        expect(page.locator("main")).to_contain_text(ACCOUNT)
        assert user_code not in page.content()
        shot("04-signed-in")
        page.get_by_role("button", name="Back to Email server").click()
        expect(page.get_by_role("row", name=re.compile("Current status")).first).to_contain_text(
            "Signed in")
        expect(page.get_by_role("row", name=re.compile("Authenticated account"))
               ).to_contain_text(ACCOUNT)
        shot("05-email-server-signed-in")

        # Send a fax by upload: preview first, then send.
        page.get_by_role("link", name="Send a fax", exact=True).click()
        documents = [str(samples / "letter.pdf"), str(samples / "scan.jpg")]
        page.get_by_label("Fax number").fill(NUMBER)
        page.get_by_label("Documents").set_input_files(documents)
        page.get_by_label("Subject").fill("Order 4711")
        page.get_by_label("Note").fill("Please sign and return.")
        page.get_by_label("Cover page").check()
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("main")).to_contain_text("within every limit")
        pictures = page.get_by_role("img", name=re.compile(r"^Page \d+ of \d+$"))
        expect(pictures.first).to_be_visible()
        count = pictures.count()
        assert count >= 3  # the cover page, the letter, the scan
        for index in range(count):  # each one loaded: the policy lets the console's own in
            pictures.nth(index).scroll_into_view_if_needed()
            expect(pictures.nth(index)).to_have_js_property("complete", True)
            assert pictures.nth(index).evaluate("image => image.naturalWidth") == 400
        shot("06-send-a-fax-preview")
        preview_url = pictures.first.get_attribute("src")
        page.get_by_label("Documents").set_input_files(documents)
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", name=re.compile("^Job "))).to_contain_text("queued")
        sent_id = page.url.rsplit("/", 1)[1]
        expect(page.get_by_role("img", name="Page 1 of", exact=False)).to_be_visible()
        pictures_loaded(page)
        shot("07-job-queued")
        fax = page.request.get(console.url + f"/jobs/{sent_id}/fax")
        assert fax.ok and fax.body().startswith(b"%PDF")

        # Job status refreshes itself: the job turns sent without a reload.
        page.get_by_role("link", name="Job status", exact=True).click()
        row = page.get_by_role("row", name=re.compile(sent_id))
        expect(row).to_contain_text("queued")
        expect(page.get_by_text("This table refreshes by itself")).to_be_visible()
        page.evaluate("window.faxgwSamePage = true")  # gone if the page were loaded again
        assert run_worker(config).sent == 1
        expect(row).to_contain_text("sent", timeout=15_000)
        expect(row).to_contain_text("100")
        assert page.evaluate("window.faxgwSamePage") is True
        shot("07b-job-status-live")
        assert smtp.messages[0].message["Subject"] == "Order 4711"

        # A fax the mail server refuses fails; Retry sends it again.
        smtp.faults.reply("DATA_END", "554 5.2.252 SendAsDenied", times=1)
        page.get_by_role("link", name="Send a fax", exact=True).click()
        page.get_by_label("Fax number").fill(NUMBER)
        page.get_by_label("Documents").set_input_files([str(samples / "note.txt")])
        page.get_by_role("button", name="Send").click()
        failed_id = page.url.rsplit("/", 1)[1]
        run_worker(config)
        page.get_by_role("link", name="Job status", exact=True).click()
        expect(page.get_by_role("row", name=re.compile(failed_id))).to_contain_text("failed")
        shot("08-job-status")
        page.get_by_role("link", name=failed_id).click()
        expect(page.locator("main")).to_contain_text("Solution:")
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
        shot("09-job-failed")
        page.get_by_role("button", name="Retry").click()
        expect(page.get_by_role("heading", name=re.compile("^Job "))).to_contain_text("queued")
        expect(page.locator(".history")).to_contain_text("retry")
        shot("10-job-retried")
        assert run_worker(config).sent == 1
        page.get_by_role("link", name="Job status", exact=True).click()
        expect(page.get_by_role("row", name=re.compile(failed_id))).to_contain_text("sent")

        page.get_by_role("link", name="Codes", exact=True).click()
        expect(page.get_by_role("row", name=re.compile("^372"))).to_contain_text(
            "send-as-denied")
        shot("11-codes")

        # The same console on a phone.
        phone = browser.new_context(viewport={"width": 390, "height": 844},  # type: ignore[attr-defined]
                                    storage_state=context.storage_state())
        page = phone.new_page()
        page.goto(console.url + "/server")
        expect(page.get_by_role("heading", name="Email server")).to_be_visible()
        shot("12-email-server-phone")
        page.goto(console.url + "/jobs")
        expect(page.get_by_text("This table refreshes by itself")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot("13-job-status-phone")
        page.goto(console.url + "/send")
        page.get_by_label("Fax number").fill(NUMBER)
        page.get_by_label("Documents").set_input_files(documents)
        page.get_by_role("button", name="Preview").click()
        expect(page.get_by_role("img", name="Page 1 of", exact=False)).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways
        pictures_loaded(page)
        shot("14-send-a-fax-preview-phone")
        latest = page.get_by_role("img", name="Page 1 of", exact=False).get_attribute("src")
        page.goto(console.url + f"/jobs/{sent_id}")
        expect(page.get_by_role("img", name="Page 1 of", exact=False)).to_be_visible()
        pictures_loaded(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot("15-job-phone")
        phone.close()
        # The session's latest preview replaced the one before; a stranger gets neither.
        assert latest and context.request.get(console.url + latest).ok
        assert preview_url and context.request.get(console.url + preview_url).status == 404
        stranger = browser.new_context()  # type: ignore[attr-defined]
        assert stranger.request.get(console.url + latest).url.endswith("/login")
        stranger.close()
        assert refused == []

        page = context.new_page()
        page.goto(console.url + "/server")
        page.get_by_role("link", name="Log out", exact=True).click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        context.close()

    _keep(shots)


def _keep(shots: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for picture in shots.iterdir():
        shutil.copy(picture, SHOTS / picture.name)


def test_a_user_sends_as_themselves_in_the_browser(
        config: Config, idp: LocalIdentityProvider, smtp: FaxSMTPServer, browser: object,
        samples: Path, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    expect = sync_api.expect

    with Console(config) as console:
        # The admin signs the gateway in and sends a fax first.
        admin = browser.new_context(viewport={"width": 1200, "height": 860})  # type: ignore[attr-defined]
        page = admin.new_page()
        page.goto(console.url + "/login")
        page.get_by_label("Password").fill(ADMIN)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Sign in").click()
        idp.approve(page.locator(".usercode").inner_text().strip(), ACCOUNT)
        expect(page.get_by_text("Signed in", exact=True)).to_be_visible(timeout=20_000)
        page.get_by_role("link", name="Send a fax", exact=True).click()
        page.get_by_label("Fax number").fill(NUMBER)
        page.get_by_label("Documents").set_input_files([str(samples / "note.txt")])
        page.get_by_label("Subject").fill("From the gateway")
        page.get_by_role("button", name="Send").click()
        admins_job = page.url.rsplit("/", 1)[1]
        assert run_worker(config).sent == 1

        # A user: "Send as me" on the log-in page, their own account at the IdP.
        context = browser.new_context(viewport={"width": 1200, "height": 860})  # type: ignore[attr-defined]
        page = context.new_page()

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        page.goto(console.url + "/jobs")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        shot("2x-01-log-in-send-as-me")
        page.get_by_role("link", name="Send as me", exact=True).click()
        expect(page.get_by_role("heading", name="Send as me")).to_be_visible()
        expect(page.locator("main")).to_contain_text("contoso.com")
        shot("2x-02-send-as-me")
        page.get_by_role("button", name="Sign in").click()
        code = page.locator(".usercode")
        expect(code).to_be_visible()
        expect(page.get_by_role("button", name="Copy")).to_be_visible()
        shot("2x-03-send-as-me-code")
        user_code = code.inner_text().strip()
        idp.approve(user_code, OTHER)
        expect(page.get_by_role("heading", name="Send a fax")).to_be_visible(timeout=20_000)
        expect(page.get_by_role("status")).to_contain_text(f"Signed in as {OTHER}")
        expect(page.locator("header")).to_contain_text(OTHER)
        for link in ("Job status", "Send a fax", "Codes", "Log out"):
            expect(page.get_by_role("link", name=link, exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Email server", exact=True)).to_have_count(0)
        assert user_code not in page.content()
        shot("2x-04-user-send-a-fax")

        page.get_by_label("Fax number").fill(NUMBER)
        page.get_by_label("Documents").set_input_files([str(samples / "letter.pdf")])
        page.get_by_label("Subject").fill("From reception")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", name=re.compile("^Job "))).to_contain_text("queued")
        users_job = page.url.rsplit("/", 1)[1]
        assert run_worker(config).sent == 1

        received = [m for m in smtp.messages if m.message["Subject"] == "From reception"]
        assert len(received) == 1
        assert (received[0].mail_from, received[0].auth_mechanism, received[0].auth_user) == (
            OTHER, "XOAUTH2", OTHER)
        assert received[0].message["From"] == OTHER
        gateway = [m for m in smtp.messages if m.message["Subject"] == "From the gateway"]
        assert gateway[0].mail_from == ACCOUNT

        page.get_by_role("link", name="Job status", exact=True).click()
        expect(page.get_by_role("row", name=re.compile(users_job))).to_contain_text("sent")
        expect(page.get_by_role("row", name=re.compile(admins_job))).to_have_count(0)
        shot("2x-05-user-job-status")
        page.goto(console.url + f"/jobs/{admins_job}")
        expect(page.locator("main")).to_contain_text("no job")
        page.goto(console.url + "/server")
        expect(page.get_by_role("heading", name="Administrators only")).to_be_visible()
        shot("2x-06-user-refused-email-server")

        phone = browser.new_context(viewport={"width": 390, "height": 844},  # type: ignore[attr-defined]
                                    storage_state=context.storage_state())
        page = phone.new_page()
        page.goto(console.url + "/jobs")
        shot("2x-07-user-job-status-phone")
        phone.close()

        page = context.new_page()
        page.goto(console.url + "/send")
        page.get_by_role("link", name="Log out", exact=True).click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()

        # A person outside [web] user_domains signs in and is refused, with the reason.
        page.get_by_role("link", name="Send as me", exact=True).click()
        page.get_by_role("button", name="Sign in").click()
        idp.approve(page.locator(".usercode").inner_text().strip(), "guest@fabrikam.com")
        expect(page.get_by_role("alert")).to_contain_text("fabrikam.com is not one of the "
                                                          "domains", timeout=20_000)
        shot("2x-08-send-as-me-refused")
        context.close()

        # The admin's session was not touched: still logged in, seeing both jobs.
        page = admin.new_page()
        page.goto(console.url + "/jobs")
        expect(page.get_by_role("row", name=re.compile(users_job))).to_be_visible()
        expect(page.get_by_role("row", name=re.compile(admins_job))).to_be_visible()
        # The user's mailbox has its own block on Email server, with its own Sign out.
        page.goto(console.url + "/server")
        expect(page.get_by_role("button", name=f"Sign out {OTHER}")).to_be_visible()
        page.screenshot(path=str(shots / "2x-09-admin-email-server-with-user.png"),
                        full_page=True)
        admin.close()

    _keep(shots)
