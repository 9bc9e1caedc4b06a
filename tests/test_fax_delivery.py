"""Fax-grade output end to end: what the service receives, and what never leaves."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from PIL import Image

from faxgw.app.submit import prepare
from faxgw.app.wiring import build_worker
from faxgw.domain import codes
from faxgw.domain.jobs import JobState
from faxgw.intake.register import register
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import MakeConfig


def test_rfc3192_job_arrives_as_multipage_fax_tiff(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, tmp_path: Path
) -> None:
    config = make_config(smtp_server, service={"profile": "rfc3192",
                                               "address": "{e164}@fax-gw.example.org"})
    worker = build_worker(config)
    intake = worker.spool.submit("+4930123456", [samples / "letter.pdf", samples / "scan.jpg"],
                                 note="not faxed: simple mode has no body")
    job = register(intake, config=config, store=worker.store, documents=worker.spool)
    job = prepare(worker.store, worker.spool, config, job)
    assert (job.state, job.pages) == (JobState.QUEUED, 3)
    asyncio.run(worker.run_once())
    [received] = smtp_server.messages
    assert received.message["To"] == "FAX=+4930123456@fax-gw.example.org"
    [part] = list(received.message.iter_attachments())
    assert part.get_content_type() == "image/tiff"
    assert part.get_param("application") == "faxbw"
    assert received.message.get_body(("plain",)) is None  # no body in simple mode
    image = Image.open(io.BytesIO(part.get_content()))
    assert image.n_frames == 3
    for frame in range(3):
        image.seek(frame)
        assert image.mode == "1" and image.width == 1728
        assert tuple(round(v) for v in image.info["dpi"]) == (204, 196)
        assert image.info["compression"] == "group3"
    image.seek(0)
    image.convert("L").save(tmp_path / "page1.png")  # kept for a human look when debugging


def test_job_over_a_profile_limit_fails_at_intake_and_nothing_is_sent(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = make_config(smtp_server, service={"profile": "interfax", "max_pages": 2})
    worker = build_worker(config)
    intake = worker.spool.submit("+4930123456", [samples / "letter.pdf", samples / "scan.jpg"],
                                 subject="x" * 61)
    job = prepare(worker.store, worker.spool, config,
                  register(intake, config=config, store=worker.store, documents=worker.spool))
    assert (job.state, job.code) == (JobState.FAILED, codes.TOO_MANY_PAGES)
    assert "3 pages, limit 2 ([service] max_pages)" in (job.error or "")
    assert (worker.spool.layout.failed / job.id / "docs" / "letter.pdf").exists()
    drop = worker.spool.layout.outgoing / "+4930123456"
    drop.mkdir()
    (drop / "long.txt").write_text("\f".join(f"page {n}" for n in range(5)))
    summary = asyncio.run(worker.run_once())
    assert (summary.taken, summary.failed, summary.sent) == (1, 1, 0)
    [dropped] = [j for j in worker.store.list_jobs() if j.id != job.id]
    assert dropped.code == codes.TOO_MANY_PAGES and "5 pages, limit 2" in (dropped.error or "")
    assert smtp_server.messages == []


def test_emergency_and_denied_numbers_fail_with_401(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    config = make_config(smtp_server)
    worker = build_worker(config)
    for number in ("112", "+49 900 1234567"):
        folder = worker.spool.layout.outgoing / number
        folder.mkdir()
        (folder / "n.txt").write_text("hello")
    asyncio.run(worker.run_once())
    jobs = worker.store.list_jobs()
    assert [j.code for j in jobs] == [codes.NUMBER_REFUSED] * 2
    assert smtp_server.messages == []
