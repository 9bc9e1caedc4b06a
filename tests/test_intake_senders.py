"""Senders are allowed, not chosen: ``[intake] allowed_senders`` decides which sender a
manifest or ``faxgw submit --sender`` may name (code 408); texts that would break a header
are refused (407) before anything is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faxgw.app.wiring import open_spool, open_store
from faxgw.config import Config
from faxgw.domain import codes
from faxgw.domain.jobs import Job, JobState
from faxgw.intake.register import register
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import USER, MakeConfig
from .test_cli import _config_file, faxgw


def _manifest_job(config: Config, samples: Path, sender: str) -> Job:
    spool = open_spool(config)
    spool.ensure()
    (spool.layout.outgoing / "doc.txt").write_bytes((samples / "note.txt").read_bytes())
    (spool.layout.outgoing / "job.fax").write_text(
        f'to = "+4930123456"\nfiles = ["doc.txt"]\nsender = {json.dumps(sender)}\n')
    [intake] = spool.scan()
    store = open_store(config)
    try:
        return register(intake, config=config, store=store, documents=spool)
    finally:
        store.close()


@pytest.mark.parametrize(("allowed", "sender", "allowed_as"), [
    ([], USER, USER),                                # the configured sender itself
    ([], "FAX@Contoso.com", "fax@contoso.com"),      # … written another way
    (["sales@contoso.com"], "Sales@contoso.com", "sales@contoso.com"),
    (["@contoso.com"], "anyone@contoso.com", "anyone@contoso.com"),
    (["@contoso.com"], "", USER),                    # naming none is always allowed
])
def test_an_allowed_sender_is_taken(make_config: MakeConfig, samples: Path,
                                    allowed: list[str], sender: str, allowed_as: str) -> None:
    config = make_config(intake={"allowed_senders": allowed})
    job = _manifest_job(config, samples, sender)
    assert job.state is JobState.QUEUED and job.sender.lower() == allowed_as


@pytest.mark.parametrize(("allowed", "sender"), [
    ([], "ceo@contoso.com"),
    (["sales@contoso.com"], "ceo@contoso.com"),
    (["@contoso.com"], "ceo@contoso.com.evil.example"),
    (["@contoso.com"], "ceo@sub.contoso.com"),
    (["@contoso.com"], "@contoso.com"),
])
def test_a_sender_not_allowed_fails_the_job_408_original_kept(
        make_config: MakeConfig, samples: Path, allowed: list[str], sender: str) -> None:
    config = make_config(intake={"allowed_senders": allowed})
    job = _manifest_job(config, samples, sender)
    assert (job.state, job.code) == (JobState.FAILED, codes.SENDER_NOT_ALLOWED)
    assert sender in (job.error or "")
    assert job.sender == USER  # the record does not carry a sender that was not granted
    kept = open_spool(config).layout.failed / job.id
    assert (kept / "job.fax").exists() and (kept / "docs" / "doc.txt").exists()


@pytest.fixture
def configured(tmp_path: Path, smtp_server: FaxSMTPServer) -> Path:
    return _config_file(tmp_path, smtp_server)


def _no_job_made(config: Path, tmp_path: Path) -> None:
    assert json.loads(faxgw("jobs", "--json", config=config).stdout) == []
    for folder in ("jobs", "tmp", "failed"):  # refused before the spool was even made
        path = tmp_path / "spool" / folder
        assert not path.exists() or list(path.iterdir()) == []


def test_submit_refuses_a_sender_not_allowed_and_makes_nothing(
        configured: Path, samples: Path, tmp_path: Path) -> None:
    refused = faxgw("submit", "--to", "+4930123456", "--sender", "ceo@contoso.com",
                    str(samples / "note.txt"), config=configured, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "code 408" in refused.stderr and "ceo@contoso.com" in refused.stderr
    assert "Traceback" not in refused.stderr
    _no_job_made(configured, tmp_path)
    with configured.open("a") as file:
        file.write('[intake]\nallowed_senders = ["ceo@contoso.com"]\n')
    job_id = faxgw("submit", "--to", "+4930123456", "--sender", "ceo@contoso.com",
                   str(samples / "note.txt"), config=configured).stdout.strip()
    shown = json.loads(faxgw("show", job_id, "--json", config=configured).stdout)
    assert (shown["state"], shown["sender"]) == ("queued", "ceo@contoso.com")


@pytest.mark.parametrize(("option", "value"), [
    ("--subject", "Hi\r\nBcc: victim@example.com"),
    ("--note", "escape \x1b[31m red"),
    ("--subject", "one\u2028two"),
    ("--sender", f"{USER}\nX-Evil: 1"),
])
def test_submit_refuses_control_characters_and_makes_nothing(
        configured: Path, samples: Path, tmp_path: Path, option: str, value: str) -> None:
    refused = faxgw("submit", "--to", "+4930123456", option, value,
                    str(samples / "note.txt"), config=configured, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "code 407" in refused.stderr and "Traceback" not in refused.stderr
    _no_job_made(configured, tmp_path)


def test_submit_refuses_a_file_name_with_a_line_break(
        configured: Path, samples: Path, tmp_path: Path) -> None:
    odd = tmp_path / "line\nbreak.txt"
    odd.write_bytes((samples / "note.txt").read_bytes())
    refused = faxgw("submit", "--to", "+4930123456", str(odd), config=configured, check=False)
    assert refused.returncode == 2 and "code 407" in refused.stderr
    _no_job_made(configured, tmp_path)
