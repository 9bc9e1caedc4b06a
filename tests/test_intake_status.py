"""What the command line shows: secret files others can read are warned about in the status
sheet; texts from outside (numbers, errors) print as they are, never as markup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from faxgw.testing.smtp_server import FaxSMTPServer

from .test_cli import _config_file, faxgw


@pytest.fixture
def configured(tmp_path: Path, smtp_server: FaxSMTPServer) -> Path:
    return _config_file(tmp_path, smtp_server)


def test_status_warns_about_secret_files_others_can_read(configured: Path) -> None:
    password = configured.parent / "pw"
    password.chmod(0o644)
    secret = configured.parent / "client-secret"
    secret.write_text("s3cret")
    secret.chmod(0o640)
    cache = configured.parent.parent / "state" / "tokens.json"
    cache.parent.mkdir()
    cache.write_text("{}")
    cache.chmod(0o604)
    with configured.open("a") as file:
        file.write(f'client_secret_file = "{secret}"\ntoken_cache = "{cache}"\n')

    sheet = json.loads(faxgw("status", "--json", config=configured).stdout)
    warnings = sheet["warnings"]
    assert len(warnings) == 3, warnings
    assert any("[auth] password_file" in w and "its group and all users" in w
               and "0644" in w for w in warnings)
    assert any("[auth] client_secret_file" in w and "its group (mode 0640)" in w
               for w in warnings)
    assert any("token cache" in w and "all users" in w for w in warnings)
    text = faxgw("status", config=configured).stdout
    assert text.count("\nWarning: ") == 3 and f"chmod 600 {password}" in text

    for path in (password, secret, cache):
        path.chmod(0o600)
    assert json.loads(faxgw("status", "--json", config=configured).stdout)["warnings"] == []
    assert "Warning:" not in faxgw("status", config=configured).stdout


def test_the_job_log_prints_markup_from_outside_literally(
        configured: Path, samples: Path, tmp_path: Path) -> None:
    faxgw("run", "--once", config=configured)
    for name in ("[bold]x", "[red]y"):
        folder = tmp_path / "spool" / "outgoing" / name
        folder.mkdir()
        shutil.copy(samples / "note.txt", folder / "note.txt")
    faxgw("run", "--once", config=configured)
    rows = json.loads(faxgw("jobs", "--json", config=configured).stdout)
    assert sorted(row["number"] for row in rows) == ["[bold]x", "[red]y"]
    shown = faxgw("jobs", config=configured)
    assert "[bold]x" in shown.stdout and "[red]y" in shown.stdout, shown.stdout
    assert "Traceback" not in shown.stderr
