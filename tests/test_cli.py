"""The real command line, run as a user runs it: ``python -m faxgw`` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER

REPO = Path(__file__).resolve().parent.parent


def faxgw(*args: str, config: Path | None = None, check: bool = True,
          cwd: Path | None = None, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "faxgw"]
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run(command + list(args), capture_output=True, text=True, timeout=120,
                            cwd=cwd, env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _config_file(tmp_path: Path, server: FaxSMTPServer) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "pw").write_text(PASSWORD)
    path = folder / "faxgw.toml"
    path.write_text(
        f'[spool]\ndir = "../spool"\nsettle_seconds = 0\n'
        f'[smtp]\nhost = "{server.host}"\nport = {server.port}\nca_file = "{server.ca_file}"\n'
        f'sender = "{USER}"\ntimeout_seconds = 10\n'
        f'[auth]\nmethod = "password"\nusername = "{USER}"\npassword_file = "pw"\n'
    )
    return path


@pytest.fixture
def configured(tmp_path: Path, smtp_server: FaxSMTPServer) -> Path:
    return _config_file(tmp_path, smtp_server)


def test_submit_run_jobs_show(configured: Path, samples: Path, smtp_server: FaxSMTPServer,
                              tmp_path: Path) -> None:
    result = faxgw("submit", "--to", "+4930123456", str(samples / "letter.pdf"),
                   str(samples / "scan.jpg"), "--subject", "Vertrag", "--json", config=configured)
    job_id = json.loads(result.stdout)["id"]
    plain = faxgw("submit", "--to", "030 1234567", str(samples / "note.txt"), config=configured)
    second_id = plain.stdout.strip()
    drop = tmp_path / "spool" / "outgoing" / "+4989765432"
    drop.mkdir()
    shutil.copy(samples / "logo.png", drop / "logo.png")

    queued = json.loads(faxgw("jobs", "--json", config=configured).stdout)
    assert {row["id"]: row["state"] for row in queued} == {job_id: "queued", second_id: "queued"}

    ran = faxgw("run", "--once", "--json", config=configured)
    assert json.loads(ran.stdout) == {"taken": 1, "sent": 3, "deferred": 0, "failed": 0,
                                      "waiting_for_auth": 0}
    rows = json.loads(faxgw("jobs", "--json", config=configured).stdout)
    assert len(rows) == 3
    for row in rows:
        for key in ("id", "state", "code", "number", "recipient", "attempts", "pages",
                    "created", "updated", "error"):
            assert key in row
        assert (row["state"], row["code"]) == ("sent", 100)
    shown = json.loads(faxgw("show", job_id, "--json", config=configured).stdout)
    assert shown["pages"] == 3 and shown["recipient"] == "+4930123456@fax.example.net"
    assert [e["event"] for e in shown["history"]] == ["accepted", "rendered", "sending", "sent"]
    human = faxgw("show", job_id[:14], config=configured).stdout
    assert "sent" in human and "Sent: the mail server accepted" in human
    table = faxgw("jobs", "--state", "sent", config=configured).stdout
    assert job_id in table and second_id in table
    assert len(smtp_server.messages) == 3


def test_submit_refuses_an_invalid_number(configured: Path, samples: Path) -> None:
    result = faxgw("submit", "--to", "12", str(samples / "note.txt"), config=configured,
                   check=False)
    assert result.returncode == 2
    assert "not a valid number" in result.stderr and "Traceback" not in result.stderr


def test_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nprot = 1\n")
    result = faxgw("jobs", config=bad, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"faxgw: configuration error: {bad}: [smtp] prot: unknown key"


def test_unknown_job_is_exit_1(configured: Path) -> None:
    result = faxgw("show", "no-such-job", config=configured, check=False)
    assert result.returncode == 1 and "no job 'no-such-job'" in result.stderr


def test_codes_lists_the_table() -> None:
    out = faxgw("codes").stdout
    for code in ("100", "360", "361", "370", "400", "410", "411", "412", "420", "500", "510",
                 "520"):
        assert f"\n{code}  " in "\n" + out
    data = json.loads(faxgw("codes", "--json").stdout)
    assert all(entry["solution"] for entry in data)


def test_status_sheet(configured: Path, smtp_server: FaxSMTPServer) -> None:
    out = faxgw("status", config=configured).stdout
    assert f"SMTP host: {smtp_server.host}" in out
    assert "Certificate validation: on" in out and "Security: starttls" in out
    assert "Queue: queued 0" in out
    data = json.loads(faxgw("status", "--json", config=configured).stdout)
    assert data["auth_method"] == "password" and data["queue"]["sent"] == 0


def test_python_dash_m_and_console_script_agree() -> None:
    script = Path(sys.executable).with_name("faxgw")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert result.stdout == faxgw("--help").stdout.replace("python -m faxgw", "faxgw")


@pytest.mark.slow
def test_demo_sends_every_sample(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = faxgw("--config", str(REPO / "config" / "faxgw.toml"), "demo", "--dir", str(out))
    assert "3 sent" in result.stdout and "0 failed" in result.stdout
    emails = sorted((out / "received").glob("*.eml"))
    assert len(emails) == 3
    assert result.stdout.count(" sent ") >= 3
    for pages in ("(3 pages,", "(1 page,"):  # each email's attachment, described
        assert pages in result.stdout
