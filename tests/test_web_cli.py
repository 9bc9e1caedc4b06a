"""``faxgw web`` as a user runs it: the console alone, stopped cleanly by SIGTERM or Ctrl-C;
a non-loopback address without TLS refused as a configuration error; beside the worker, its
``/metrics`` has the worker's render and send durations."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from faxgw.app.wiring import build_worker
from faxgw.engine.scheduler import Service
from faxgw.intake.layout import SpoolLayout
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.web import credentials
from faxgw.web.server import beside

from .conftest import MakeConfig

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "faxgw.toml"
    path.write_text('[spool]\ndir = "spool"\n[web]\nlisten = "127.0.0.1:8025"\n')
    return path


def _faxgw(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "faxgw", "--config", str(config), *args]


def _env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAXGW_")}
    return {**clean, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_faxgw_web_serves_until_told_to_stop(tmp_path: Path, signum: int) -> None:
    port = _free_port()
    process = subprocess.Popen(_faxgw(_config(tmp_path), "web", "--listen",
                                      f"127.0.0.1:{port}"),
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r)["ready"] is True
                    break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the console did not answer"
                time.sleep(0.1)
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"faxgw web console on http://127.0.0.1:{port}/" in err
    assert "Traceback" not in err


def test_a_public_address_without_tls_is_a_configuration_error(tmp_path: Path) -> None:
    done = subprocess.run(_faxgw(_config(tmp_path), "web", "--listen", "0.0.0.0:8025"),
                          env=_env(), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "configuration error: [web] listen: '0.0.0.0:8025' is not a loopback" in done.stderr


def test_the_console_runs_beside_the_worker_in_one_loop(make_config: MakeConfig,
                                                         smtp_server: FaxSMTPServer,
                                                         samples: Path) -> None:
    """What ``faxgw run`` does with ``[web] listen`` set: the service and the console in one
    event loop, one stop event for both; a fax posted to the API goes out by itself, and
    ``/metrics`` then counts its render and its send."""
    port = _free_port()
    config = make_config(smtp_server, web={"listen": f"127.0.0.1:{port}"})
    token = credentials.add_api_token(config.web.api_token_file)
    console = beside(config)
    assert console is not None and beside(make_config()) is None
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: bytes | None = None,
             content_type: str = "") -> tuple[int, Any]:
        request = urllib.request.Request(base + path, data=body, method=method,
                                         headers={"Authorization": f"Bearer {token}",
                                                  **({"Content-Type": content_type}
                                                     if content_type else {})})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def client(stop: asyncio.Event) -> str:
        try:
            boundary = "faxgw-test-boundary"
            document = (samples / "note.txt").read_bytes()
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n"
                    f"+4930123456\r\n--{boundary}\r\nContent-Disposition: form-data; "
                    f"name=\"files\"; filename=\"note.txt\"\r\nContent-Type: text/plain\r\n\r\n"
                    ).encode() + document + f"\r\n--{boundary}--\r\n".encode()
            status, created = call("POST", "/api/jobs", body,
                                   f"multipart/form-data; boundary={boundary}")
            assert status == 201, created
            # A file dropped into the spool: the worker renders it (a console job is
            # rendered when it is submitted).
            drop = SpoolLayout(config.spool.dir).outgoing / "+4930123457"
            drop.mkdir(parents=True, exist_ok=True)
            (drop / "dropped.txt").write_bytes(document)
            deadline = time.monotonic() + 30
            while True:
                state = call("GET", f"/api/jobs/{created['id']}")[1]["state"]
                done = state == "sent" and len(smtp_server.messages) == 2
                if done or time.monotonic() > deadline:
                    with urllib.request.urlopen(base + "/readyz", timeout=5) as answer:
                        ready = json.load(answer)
                    assert ready["ready"] and ready["worker"] == "ok", ready
                    with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
                        metrics.append(answer.read().decode())
                    return str(state)
                time.sleep(0.2)
        finally:
            loop.call_soon_threadsafe(stop.set)

    async def main() -> str:
        stop = asyncio.Event()
        worker = build_worker(config)
        try:
            service = Service(worker)
            running = [service.run(stop), console(stop, lambda: service.last_round_at,
                                                  worker.observations)]
            outcome, *_ = await asyncio.gather(asyncio.to_thread(client, stop), *running)
        finally:
            worker.close()
        return str(outcome)

    metrics: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == "sent"
    finally:
        loop.close()
    assert len(smtp_server.messages) == 2
    families = {f.name: f for f in text_string_to_metric_families(metrics[0])}
    for name in ("faxgw_send_duration_seconds", "faxgw_render_duration_seconds"):
        assert families[name].type == "histogram"
        samples = {s.name: s for s in families[name].samples if not s.labels}
        assert samples[f"{name}_count"].value >= 1, metrics[0]
        assert samples[f"{name}_sum"].value > 0
        infinite = [s for s in families[name].samples if s.labels.get("le") == "+Inf"]
        assert infinite[0].value == samples[f"{name}_count"].value
    assert families["faxgw_mailbox_sessions"].type == "gauge"
    assert {s.labels["mailbox"] for s in families["faxgw_mailbox_sessions"].samples} == {
        config.smtp.sender.lower()}
