"""What the console shows as it changes and as it will be: a preview's pages and a job's
pages as pictures (kept for the session that made them), the Job status table that
refreshes itself (htmx, vendored, under the strict Content-Security-Policy), and the
engine's figures the console's ``/metrics`` reads (render and send durations, sessions per
mailbox) without the engine knowing any metrics library."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
import re
import threading
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from faxgw.app.wiring import build_worker
from faxgw.config import Config
from faxgw.engine.observe import DURATION_BUCKETS, Durations, Observations
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.web import previews
from faxgw.web.api import GatewayCollector
from faxgw.web.routes import CSP, WebState, create_app
from faxgw.web.sessions import Session

from .conftest import MakeConfig
from .documents import letter_pdf
from .test_web import client as client  # noqa: F401 - fixtures
from .test_web import config as config  # noqa: F401
from .test_web import log_in, queue_job

STATIC = Path(__file__).resolve().parent.parent / "faxgw" / "web" / "static"
ENGINE = Path(__file__).resolve().parent.parent / "faxgw" / "engine"
HTMX = "htmx-2.0.4.min.js"


def _preview(client: TestClient, csrf: str, name: str, data: bytes,  # noqa: F811
             kind: str) -> str:
    answer = client.post("/send", data={"csrf": csrf, "to": "+4930123456",
                                        "action": "preview"},
                         files=[("files", (name, data, kind))])
    assert answer.status_code == 200, answer.text
    return answer.text


def _pictures(page: str) -> list[str]:
    return re.findall(r'<img src="(/send/preview/[^"]+\.png)"', page)


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_preview_shows_its_pages_as_pictures_to_its_own_session_only(
        client: TestClient, config: Config, samples: Path) -> None:  # noqa: F811
    csrf = log_in(client)
    page = _preview(client, csrf, "letter.pdf", (samples / "letter.pdf").read_bytes(),
                    "application/pdf")
    [first, *rest] = _pictures(page)
    assert "within every limit" in page and "The fax as it will be sent" in page
    picture = client.get(first)
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.headers["cache-control"] == "no-store"
    image = _png(picture.content)
    assert image.width == 400 and image.height > image.width  # a portrait sheet
    assert image.convert("L").getextrema()[0] < 100  # ink on it, not a blank page
    assert f'width="{image.width}" height="{image.height}"' in page
    assert len(rest) + 1 == int(re.search(r"<th scope=\"row\">Pages</th><td>(\d+)",
                                          page).group(1))  # type: ignore[union-attr]

    # Someone else, even logged in as the admin too, gets nothing; neither does a stranger.
    with TestClient(client.app, follow_redirects=False) as other:
        assert other.get(first).status_code == 303  # no session: to the log-in page
        log_in(other)
        assert other.get(first).status_code == 404
    # A new preview replaces the old one's pictures.
    again = _pictures(_preview(client, csrf, "note.txt", (samples / "note.txt").read_bytes(),
                               "text/plain"))
    assert client.get(first).status_code == 404 and client.get(again[0]).status_code == 200
    assert client.get(again[0].replace("/1.png", "/99.png")).status_code == 404


def test_a_long_fax_shows_its_first_pages_and_says_how_many_more(
        client: TestClient, tmp_path: Path) -> None:  # noqa: F811
    csrf = log_in(client)
    document = letter_pdf(tmp_path / "long.pdf", pages=previews.PAGES_SHOWN + 3)
    page = _preview(client, csrf, "long.pdf", document.read_bytes(), "application/pdf")
    assert len(_pictures(page)) == previews.PAGES_SHOWN
    assert f"The first {previews.PAGES_SHOWN} pages are shown; 3 more pages are not." in page


def test_preview_pictures_expire() -> None:
    now = [1000.0]
    session = Session("id", "csrf", 0.0)
    image = previews.PageImage(b"png", 1, 1)
    stored = previews.keep(session, [image], 1, clock=lambda: now[0])
    assert previews.picture(session, stored.id, 1, clock=lambda: now[0]) is image
    assert previews.picture(session, stored.id, 2, clock=lambda: now[0]) is None
    assert previews.picture(session, "another", 1, clock=lambda: now[0]) is None
    now[0] += previews.KEEP_SECONDS + 1
    assert previews.picture(session, stored.id, 1, clock=lambda: now[0]) is None
    assert session.preview is None  # forgotten, not just hidden


def test_a_fax_tiff_preview_shows_square_pages(make_config: MakeConfig, tmp_path: Path,
                                               samples: Path) -> None:
    from faxgw.web import credentials

    from .test_web import ADMIN

    tiff = make_config(service={"address": "{e164}@fax.example.net", "region": "DE",
                                "attach_as": "tiff"},
                       web={"admin_password_file": str(tmp_path / "web" / "password")})
    credentials.set_password(tiff.web.admin_password_file, ADMIN)
    with TestClient(create_app(tiff), follow_redirects=False) as client:  # noqa: F811
        csrf = log_in(client)
        page = _preview(client, csrf, "letter.pdf", (samples / "letter.pdf").read_bytes(),
                        "application/pdf")
        assert "<td>TIFF</td>" in page
        image = _png(client.get(_pictures(page)[0]).content)
    # A4 is 1:1.414; fine fax lines (196 dpi) against 204 dpi dots, drawn square again.
    assert image.width == 400 and 1.35 < image.height / image.width < 1.48


def test_a_jobs_page_shows_the_fax_as_sent(client: TestClient, config: Config,  # noqa: F811
                                           samples: Path) -> None:
    csrf = log_in(client)
    sent = client.post("/send", data={"csrf": csrf, "to": "+4930123456", "action": "send"},
                       files=[("files", ("letter.pdf", (samples / "letter.pdf").read_bytes(),
                                         "application/pdf"))])
    job = sent.headers["location"]
    page = client.get(job).text
    assert "<h2>The fax as sent</h2>" in page and ">View the attachment</a>" in page
    pictures = re.findall(r'<img src="(/jobs/[^"]+\.png)" alt="Page', page)
    pages = int(re.search(r'<th scope="row">Pages</th><td>(\d+)', page).group(1))  # type: ignore[union-attr]
    assert pictures == [f"{job}/pages/{n}.png" for n in range(1, pages + 1)]
    assert _png(client.get(pictures[-1]).content).width == 400
    assert client.get(f"{job}/pages/{pages + 1}.png").status_code == 404
    assert client.get(f"{job}/pages/0.png").status_code == 404
    # Not rendered yet: no pictures, no link.
    queued = queue_job(config, samples / "note.txt")
    assert "as sent" not in client.get(f"/jobs/{queued}").text
    assert client.get(f"/jobs/{queued}/pages/1.png").status_code == 404


# -- the live job table -------------------------------------------------------------------


def test_htmx_is_vendored_as_recorded() -> None:
    data = (STATIC / HTMX).read_bytes()
    notes = (STATIC / "VENDORED.md").read_text(encoding="utf-8")
    assert f"`{HTMX}`" in notes and "2.0.4" in notes and "Zero-Clause BSD" in notes
    assert hashlib.sha256(data).hexdigest() in notes
    assert b'version:"2.0.4"' in data


def test_the_job_table_refreshes_itself_and_works_without_javascript(
        client: TestClient, config: Config, samples: Path) -> None:  # noqa: F811
    log_in(client)
    first = queue_job(config, samples / "note.txt", "first")
    page = client.get("/jobs?state=queued").text
    assert f'<script src="/static/{HTMX}" defer></script>' in page
    config_meta = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page)
    assert config_meta and '"includeIndicatorStyles":false' in config_meta.group(1)
    assert '"allowEval":false' in config_meta.group(1)
    live = re.search(r'<div id="job-table" hx-get="([^"]+)" hx-trigger="every 5s" '
                     r'hx-swap="outerHTML">', page)
    assert live and live.group(1) == "/jobs/table?page=1&amp;state=queued"
    assert first in page and "<script>" not in page and " style=" not in page
    assert client.get(f"/static/{HTMX}").status_code == 200

    second = queue_job(config, samples / "note.txt", "second")
    table = client.get("/jobs/table?page=1&state=queued", headers={"HX-Request": "true"})
    assert table.status_code == 200
    assert table.text.lstrip().startswith('<div id="job-table"')
    assert "<html" not in table.text and first in table.text and second in table.text
    assert table.headers["content-security-policy"] == CSP
    assert "As of " in table.text


def test_the_job_table_keeps_the_flash_and_sends_strangers_to_log_in(
        client: TestClient, config: Config, samples: Path) -> None:  # noqa: F811
    csrf = log_in(client)
    job = queue_job(config, samples / "note.txt")
    assert client.post(f"/jobs/{job}/hold", data={"csrf": csrf}).status_code == 303
    client.get("/jobs/table")  # a refresh in between
    assert "Hold: job" in client.get(f"/jobs/{job}").text  # the message still shows
    with TestClient(client.app, follow_redirects=False) as stranger:
        answer = stranger.get("/jobs/table", headers={"HX-Request": "true"})
        assert answer.status_code == 401 and answer.headers["hx-redirect"] == "/login"
        assert job not in answer.text
        plain = stranger.get("/jobs/table")
        assert plain.status_code == 303 and plain.headers["location"] == "/login"


def test_the_policy_lets_htmx_ask_the_console_and_nothing_else() -> None:
    assert "connect-src 'self'" in CSP and "img-src 'self';" in CSP
    assert "data:" not in CSP and "unsafe" not in CSP and "style-src 'self';" in CSP


# -- what the engine observes -------------------------------------------------------------


def test_the_engine_knows_no_metrics_library() -> None:
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("prometheus") for n in names), path


def test_durations_count_into_cumulative_buckets_from_many_threads() -> None:
    durations = Durations((0.1, 1.0))
    values = [0.05, 0.1, 0.5, 2.0, -1.0]

    def observe() -> None:
        for value in values * 100:
            durations.observe(value)

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = durations.snapshot()
    assert snapshot.count == 2000
    assert snapshot.buckets == ((0.1, 1200), (1.0, 1600))  # 0.05, 0.1, -1 (as 0); 0.5
    assert snapshot.total_seconds == pytest.approx(400 * (0.05 + 0.1 + 0.5 + 2.0))
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


def test_observations_time_blocks_and_count_sessions() -> None:
    ticks = iter([10.0, 12.5])
    observations = Observations(clock=lambda: next(ticks))
    with pytest.raises(RuntimeError), observations.timed(observations.send):
        raise RuntimeError("a failed send took time too")
    observations.session_opened("Fax@Contoso.com")
    observations.session_opened("fax@contoso.com")
    observations.session_opened("reception@contoso.com")
    observations.session_closed("reception@contoso.com")
    observations.session_closed("reception@contoso.com")  # never below 0
    snapshot = observations.snapshot()
    assert (snapshot.send.count, snapshot.send.total_seconds) == (1, 2.5)
    assert snapshot.sessions == {"fax@contoso.com": 2, "reception@contoso.com": 0}


def test_a_worker_counts_its_renders_sends_and_sessions(make_config: MakeConfig,
                                                        smtp_server: FaxSMTPServer,
                                                        samples: Path) -> None:
    config = make_config(smtp_server)
    queue_job(config, samples / "note.txt")
    queue_job(config, samples / "letter.pdf")
    worker = build_worker(config)
    account = config.smtp.sender.lower()

    async def one_session() -> list[dict[str, int]]:
        session = worker.transport.session(config.smtp.sender)
        seen = [worker.observations.snapshot().sessions]
        await session.open()
        seen.append(worker.observations.snapshot().sessions)
        await session.close()
        await session.close()  # counted once
        seen.append(worker.observations.snapshot().sessions)
        return seen

    try:
        assert asyncio.run(worker.run_once()).sent == 2
        snapshot = worker.observations.snapshot()
        assert snapshot.sessions == {account: 0}  # all closed at the end of the run
        assert asyncio.run(one_session()) == [{account: 0}, {account: 1}, {account: 0}]
    finally:
        worker.close()
    assert snapshot.render.count == 2 and snapshot.send.count == 2
    assert snapshot.send.total_seconds > 0 and snapshot.render.total_seconds > 0
    assert len(smtp_server.messages) == 2

    # The console's collector turns it into Prometheus families.
    registry = CollectorRegistry()
    state = WebState(config, observations=worker.observations)
    try:
        registry.register(GatewayCollector(config, lambda: 0, state.observations))
        text = generate_latest(registry).decode()
    finally:
        state.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    render = {s.name: s.value for s in families["faxgw_render_duration_seconds"].samples
              if not s.labels}
    assert render["faxgw_render_duration_seconds_count"] == 2
    buckets = [s for s in families["faxgw_send_duration_seconds"].samples
               if "le" in s.labels]
    assert [s.labels["le"] for s in buckets][-1] == "+Inf" and buckets[-1].value == 2
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert [s.value for s in families["faxgw_mailbox_sessions"].samples] == [0]
