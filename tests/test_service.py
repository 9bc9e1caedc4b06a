"""``faxgw run`` as a service: wakes on new files, stops cleanly, survives SIGKILL."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faxgw.app.wiring import open_store
from faxgw.config import load_config
from faxgw.intake.register import register
from faxgw.intake.spool import Spool
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER
from .documents import text_pdf


def _config(tmp_path: Path, server: FaxSMTPServer, **limits: object) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir(exist_ok=True)
    (folder / "pw").write_text(PASSWORD)
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in limits.items())
    path = folder / "faxgw.toml"
    path.write_text(
        f'[spool]\ndir = "../spool"\nsettle_seconds = 0.2\n'
        f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nca_file = "{server.ca_file}"\n'
        f'sender = "{USER}"\ntimeout_seconds = 10\n'
        f'[auth]\nmethod = "password"\nusername = "{USER}"\npassword_file = "pw"\n'
        f"[limits]\nmessages_per_minute = 0\n{lines}\n"
    )
    return path


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "faxgw", "--config", str(config), "-v", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _one_page(tmp_path: Path) -> Path:
    return text_pdf(tmp_path / "page.pdf")


def _queue(config_path: Path, document: Path, count: int) -> list[str]:
    config = load_config(config_path)
    spool = Spool(config.spool.dir)
    spool.ensure()
    store = open_store(config)
    try:
        return [register(spool.submit(f"+49301234{n:03d}", [document]), config=config,
                         store=store, documents=spool).id for n in range(count)]
    finally:
        store.close()


def _states(config_path: Path) -> collections.Counter[str]:
    database = load_config(config_path).spool.dir / "state" / "faxgw.db"
    with sqlite3.connect(database) as db:
        return collections.Counter(row[0] for row in db.execute("SELECT state FROM jobs"))


def test_service_notices_a_dropped_file_within_seconds_and_stops_cleanly(
    tmp_path: Path, smtp_server: FaxSMTPServer, samples: Path
) -> None:
    config = _config(tmp_path, smtp_server)
    service = _start(config)
    try:
        time.sleep(1.0)  # the service is up and idle
        drop = tmp_path / "spool" / "outgoing" / "+4930123456"
        drop.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / "note.txt", drop / "note.txt")
        dropped_at = time.monotonic()
        smtp_server.wait_until(lambda: len(smtp_server.messages) == 1, timeout=15)
        assert time.monotonic() - dropped_at < 5
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    assert "faxgw stopped" in stderr and "Traceback" not in stderr
    assert _states(config) == {"sent": 1}


def test_sigterm_during_a_burst_finishes_the_message_under_way(tmp_path: Path) -> None:
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=0.02) as slow:
        config = _config(tmp_path, slow, connections=1)
        ids = _queue(config, _one_page(tmp_path), 60)
        service = _start(config)
        slow.wait_until(lambda: len(slow.messages) >= 5, timeout=30)
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
        assert service.returncode == 0, stderr
        states = _states(config)
        assert states["sending"] == 0
        assert states["sent"] == len(slow.messages) and 5 <= states["sent"] < len(ids)
        assert states["sent"] + states["queued"] == len(ids)


@pytest.mark.slow
def test_sigkill_during_200_jobs_loses_none(tmp_path: Path) -> None:
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=0.005) as server:
        config = _config(tmp_path, server)
        ids = _queue(config, _one_page(tmp_path), 200)
        service = _start(config)
        server.wait_until(lambda: len(server.messages) >= 60, timeout=60)
        os.kill(service.pid, signal.SIGKILL)
        service.communicate(timeout=30)
        assert service.returncode == -signal.SIGKILL
        before = collections.Counter(_states(config))
        assert before["sent"] < 200  # killed mid-run

        rerun = subprocess.run([sys.executable, "-m", "faxgw", "--config", str(config), "run",
                                "--once", "--json"], capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert _states(config) == {"sent": 200}

        received = collections.Counter(m.message["Message-ID"] for m in server.messages)
        database = load_config(config).spool.dir / "state" / "faxgw.db"
        with sqlite3.connect(database) as db:
            recovered = {row[0] for row in db.execute(
                "SELECT job_id FROM history WHERE event IN ('recovered', 'possibly-delivered')")}
        for job_id in ids:
            copies = received[f"<faxgw.{job_id}@contoso.com>"]
            assert copies >= 1, f"{job_id} lost"
            if copies > 1:  # a duplicate only where the history says it may be one
                assert job_id in recovered, f"{job_id} sent {copies} times without a record"
