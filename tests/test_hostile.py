"""Hundreds of hostile drops while ``faxgw run`` runs: it stays up and answers every one.

The figures (items, jobs failed by code, jobs sent) are printed with ``-s`` for the record.
"""

from __future__ import annotations

import collections
import contextlib
import email
import email.policy
import io
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from faxgw.domain import codes
from faxgw.testing.smtp_server import FaxSMTPServer

from . import documents as docs
from .conftest import PASSWORD, USER
from .hostile_inputs import document_drops, manifest_drops, special_drops
from .test_service import _config

MAX_INPUT = 2 * 1024 * 1024


def _jobs(spool: Path) -> list[dict[str, object]]:
    with sqlite3.connect(spool / "state" / "faxgw.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT id, state, code, source FROM jobs")]


def _left_in(outgoing: Path) -> list[str]:
    """What is still waiting in outgoing/ (empty number folders do not count)."""
    left = []
    for root, folders, files in os.walk(outgoing, followlinks=False):
        base = Path(root)
        left += [str((base / name).relative_to(outgoing)) for name in files]
        left += [str((base / name).relative_to(outgoing)) for name in folders
                 if (base / name).is_symlink()]
    return left


def _assembling(spool: Path) -> list[str]:
    """Job folders taken out of outgoing/ and not yet in jobs/."""
    tmp = spool / "tmp"
    return [entry.name for entry in tmp.iterdir() if entry.is_dir()] if tmp.is_dir() else []


def _attachment_texts(raw: bytes) -> list[bytes]:
    """What a fax's attachments hold: the raw bytes, every Flate stream inflated, and the
    text pypdf extracts where it can read the PDF (a secret rendered as text shows up in one
    of them)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    found: list[bytes] = []
    for part in message.iter_attachments():  # type: ignore[attr-defined]
        data = part.get_content()
        found.append(data)
        for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
            with contextlib.suppress(zlib.error):
                found.append(zlib.decompress(stream))
        with contextlib.suppress(PdfReadError, ValueError):
            found += [(page.extract_text() or "").encode()
                      for page in PdfReader(io.BytesIO(data)).pages]
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hostile_drops_while_the_service_runs(tmp_path: Path, samples: Path) -> None:
    marker = f"TOPSECRET-{secrets.token_hex(8)}"
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{marker}\n")
    secret.chmod(0o600)
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}) as server:
        config = _config(tmp_path, server, max_input_bytes=MAX_INPUT, render_seconds="20s")
        spool = tmp_path / "spool"
        log = tmp_path / "service.log"
        # The log goes to a file: hundreds of items fill a pipe nobody reads meanwhile.
        with log.open("w") as log_file:
            service = subprocess.Popen([sys.executable, "-m", "faxgw", "--config", str(config),
                                        "-v", "run"], stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            deadline = time.monotonic() + 30
            while not (spool / "outgoing").is_dir() and time.monotonic() < deadline:
                time.sleep(0.1)
            outgoing = spool / "outgoing"
            drops = (document_drops(outgoing, samples, oversize=MAX_INPUT)
                     + special_drops(outgoing, secret) + manifest_drops(outgoing, secret))
            assert len(drops) >= 500
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                jobs = _jobs(spool) if (spool / "state" / "faxgw.db").exists() else []
                busy = [job for job in jobs if job["state"] in ("queued", "sending", "deferred")]
                # tmp/ too: a batch taken out of outgoing/ may not be registered yet.
                if not _left_in(outgoing) and not _assembling(spool) and jobs and not busy:
                    break
                assert service.poll() is None, "the service stopped"
                time.sleep(0.5)
            assert service.poll() is None, "the service stopped"
            # After all that, a good file still goes out within seconds. Its own job is
            # waited for: a message from a job of the flood proves nothing about it.
            good = outgoing / "+4930123456"
            good.mkdir(exist_ok=True)
            docs.text_pdf(good / "good-after.pdf", label="Good")
            dropped_at = time.monotonic()
            source = "outgoing/+4930123456/good-after.pdf"
            server.wait_until(lambda: any(job["source"] == source and job["state"] == "sent"
                                          for job in _jobs(spool)), timeout=30)
            good_after = time.monotonic() - dropped_at
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
    stderr = log.read_text(errors="replace")
    assert service.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert good_after < 10

    jobs = _jobs(spool)
    left = _left_in(spool / "outgoing")
    assert left == [], left
    states = collections.Counter(str(job["state"]) for job in jobs)
    assert set(states) <= {"sent", "failed"}, states
    failed = [job for job in jobs if job["state"] == "failed"]
    assert all(job["code"] in codes.CODES for job in failed)
    # Every failed job keeps what was dropped (the originals, or the refused entry itself).
    lost = [job["id"] for job in failed if not (spool / "failed" / str(job["id"])).is_dir()]
    assert lost == []
    # Every sent job arrived once, and nothing else did.
    sent = {str(job["id"]) for job in jobs if job["state"] == "sent"}
    received = collections.Counter(m.message["X-Faxgw-Job"] for m in server.messages)
    assert set(received) == sent and set(received.values()) <= {1}
    # Links are never followed: the secret is neither sent nor moved.
    assert secret.read_text() == f"{marker}\n"
    for message in server.messages:
        assert marker.encode() not in message.data
        assert not any(marker.encode() in text for text in _attachment_texts(message.data))
    by_code = collections.Counter(int(job["code"]) for job in failed)  # type: ignore[call-overload]
    print(json.dumps({"items": len(drops), "jobs": len(jobs), "sent": len(sent),
                      "failed": len(failed), "failed_by_code": dict(sorted(by_code.items())),
                      "good_file_sent_after_s": round(good_after, 2)}, indent=1))
