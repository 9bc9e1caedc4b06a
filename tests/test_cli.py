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
    assert [e["event"] for e in shown["history"]] == ["accepted", "rendered", "sending",
                                                          "handing-over", "sent"]
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


def test_an_os_error_reaching_main_is_one_line_and_its_trace_goes_to_the_log(
        configured: Path, samples: Path, tmp_path: Path) -> None:
    """Whatever escapes a command (here the spool's tmp/ is a file, so nothing can be
    assembled in it) is one line on stderr; the traceback only with -vv."""
    spool = tmp_path / "spool"
    for folder in ("outgoing", "jobs", "failed", "state"):
        (spool / folder).mkdir(parents=True)
    (spool / "tmp").write_text("not a folder")
    args = ("submit", "--to", "+4930123456", str(samples / "note.txt"))
    quiet = faxgw(*args, config=configured, check=False)
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1 and quiet.stderr.startswith("faxgw: ")
    assert str(spool / "tmp") in quiet.stderr and "Traceback" not in quiet.stderr
    loud = faxgw("-vv", *args, config=configured, check=False)
    assert loud.returncode == 1 and "Traceback" in loud.stderr
    assert loud.stderr.rstrip().splitlines()[-1] == quiet.stderr.rstrip()


def test_numbers_are_masked_in_the_log(configured: Path, samples: Path, tmp_path: Path) -> None:
    """[numbers] mask_digits covers every log line: taking a dropped file, queueing, sending."""
    with configured.open("a") as file:
        file.write("[numbers]\nmask_digits = 4\n")
    drop = tmp_path / "spool" / "outgoing" / "+4930123456"
    drop.mkdir(parents=True)
    shutil.copy(samples / "note.txt", drop / "note.txt")
    result = faxgw("-v", "run", "--once", config=configured)
    assert "1 sent" in result.stdout
    assert "taken from outgoing/+493012xxxx/note.txt" in result.stderr
    assert "+4930123456" not in result.stderr and "4930123456" not in result.stderr


def test_notify_names_one_address_or_nothing_is_made(configured: Path, samples: Path,
                                                     tmp_path: Path) -> None:
    """``--notify`` that is not one address is refused with 409 (no job); a manifest's is a
    failed job with 409 and its files kept; a good one is stored with the job."""
    refused = faxgw("submit", "--to", "+4930123456", str(samples / "letter.pdf"), "--notify",
                    "a@b.example, c@d.example", config=configured, check=False)
    assert refused.returncode == 2 and "code 409" in refused.stderr
    assert json.loads(faxgw("jobs", "--json", config=configured).stdout) == []
    good = faxgw("submit", "--to", "+4930123456", str(samples / "letter.pdf"), "--notify",
                 "dr.weber@contoso.com", "--json", config=configured)
    out = tmp_path / "spool" / "outgoing"
    shutil.copy(samples / "note.txt", out / "note.txt")
    (out / "bad.fax").write_text('to = "+4930123456"\nfiles = ["note.txt"]\n'
                                 'notify = "nobody"\n')
    faxgw("run", "--once", config=configured)
    jobs = {row["source"]: row for row in json.loads(faxgw("jobs", "--json",
                                                           config=configured).stdout)}
    assert jobs["outgoing/bad.fax"]["state"] == "failed"
    assert jobs["outgoing/bad.fax"]["code"] == 409 and jobs["outgoing/bad.fax"]["notify"] == ""
    assert jobs["submit"]["id"] == json.loads(good.stdout)["id"]
    assert jobs["submit"]["notify"] == "dr.weber@contoso.com"
