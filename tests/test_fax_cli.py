"""``faxgw profiles`` and ``faxgw preview``, driven as commands.

Until the commands are registered in the main group they are run with click's CliRunner on
the command objects; the subprocess tests at the end run ``python -m faxgw`` and skip
themselves while the commands are not reachable that way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from PIL import Image
from PIL.TiffImagePlugin import TiffImageFile
from pypdf import PdfReader

from faxgw.cli.context import CliContext
from faxgw.cli.send import preview, profiles

from . import documents as docs

SAMPLES = Path(__file__).resolve().parent.parent / "faxgw" / "samples"
ALL_SAMPLES = [str(SAMPLES / name) for name in
               ("letter.pdf", "scan.jpg", "logo.png", "fax-g4.tif", "note.txt")]


def write_config(tmp_path: Path, service: str = "", numbers: str = "") -> Path:
    path = tmp_path / "faxgw.toml"
    path.write_text(f'[spool]\ndir = "spool"\n[service]\n{service}\n[numbers]\n{numbers}\n',
                    encoding="utf-8")
    return path


def invoke(command: Any, args: list[str], config: Path) -> Result:
    return CliRunner().invoke(command, args, obj=CliContext(config_path=config))


# -- faxgw profiles ------------------------------------------------------------------------

def test_profiles_lists_rules_and_sources(tmp_path: Path) -> None:
    result = invoke(profiles, [], write_config(tmp_path, 'profile = "interfax"'))
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("generic", "rfc3192", "interfax  (active)"):
        assert name in out
    assert "FAX={e164}@{domain}" in out
    assert "100 pages, 20 MB, subject 60 characters" in out
    assert "RFC 3192" in out and "InterFAX" in out


def test_profiles_json(tmp_path: Path) -> None:
    result = invoke(profiles, ["--json"], write_config(tmp_path, 'profile = "rfc3192"'))
    assert result.exit_code == 0
    listing = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert listing["rfc3192"]["active"] is True
    assert listing["generic"]["active"] is False
    assert listing["interfax"]["max_pages"] == 100
    assert listing["rfc3192"]["attach_as"] == "tiff"
    assert all(entry["source"] for entry in listing.values())


def test_profiles_without_a_config_still_lists(tmp_path: Path) -> None:
    result = invoke(profiles, ["--json"], tmp_path / "missing.toml")
    assert result.exit_code == 0
    assert not any(entry["active"] for entry in json.loads(result.stdout))
    assert "configuration not used" in result.stderr


# -- faxgw preview -------------------------------------------------------------------------

@pytest.mark.parametrize(("service", "kind", "address"), [
    ('address = "{digits}@fax.example.org"', "PDF", "4930123456@fax.example.org"),
    ('profile = "interfax"', "PDF", "+4930123456@fax.tc"),
    ('profile = "rfc3192"\naddress = "{e164}@gw.example.org"', "TIFF (group3",
     "FAX=+4930123456@gw.example.org"),
])
def test_preview_of_the_samples_for_each_profile(tmp_path: Path, service: str, kind: str,
                                                 address: str) -> None:
    result = invoke(preview, [*ALL_SAMPLES, "--to", "+49 30 123456"],
                    write_config(tmp_path, service))
    assert result.exit_code == 0, result.output
    out = result.output
    # letter 2 + scan 1 + logo 1 + fax TIFF 2 + note 1
    assert f"attachment  {kind}" in out and "7 pages" in out
    assert f"to          +4930123456 -> {address}" in out
    assert "encoded in the email" in out
    assert "within every limit" in out


def test_preview_json_and_out_pdf(tmp_path: Path) -> None:
    out = tmp_path / "preview.pdf"
    result = invoke(preview, [str(SAMPLES / "letter.pdf"), "--to", "+4930123456", "--cover",
                              "--note", "Grüße an Łukasz", "--out", str(out), "--json"],
                    write_config(tmp_path, 'profile = "interfax"'))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["attachment"]["pages"] == 3 and report["attachment"]["cover"] is True
    assert report["attachment"]["bytes"] == out.stat().st_size
    assert report["attachment"]["encoded_bytes"] > report["attachment"]["bytes"] * 4 / 3
    assert report["to"] == {"number": "+4930123456", "address": "+4930123456@fax.tc"}
    first = PdfReader(out).pages[0].extract_text()
    assert "Grüße an Łukasz" in first and "+4930123456" in first


def test_preview_out_tif_for_a_pdf_service(tmp_path: Path) -> None:
    out = tmp_path / "looks-like.tif"
    result = invoke(preview, [str(SAMPLES / "letter.pdf"), "--out", str(out)],
                    write_config(tmp_path))
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert isinstance(image, TiffImageFile)
        assert image.n_frames == 2 and image.size[0] == 1728


def test_preview_over_a_limit_exits_1_and_names_it(tmp_path: Path) -> None:
    many = docs.text_pdf(tmp_path / "many.pdf", 5)
    result = invoke(preview, [str(many), "--subject", "x" * 75],
                    write_config(tmp_path, 'profile = "interfax"\nmax_pages = 4'))
    assert result.exit_code == 1
    assert "would fail  5 pages, limit 4 ([service] max_pages) [421 too-many-pages]" in (
        result.output)
    assert "subject 75 characters, limit 60 (interfax profile) [422 subject-too-long]" in (
        result.output)
    assert "Traceback" not in result.output


def test_preview_refused_number(tmp_path: Path) -> None:
    result = invoke(preview, [str(SAMPLES / "note.txt"), "--to", "+49 900 1234567", "--json"],
                    write_config(tmp_path, numbers='allow = ["+49"]'))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["to"] is None
    assert report["problems"] == [{
        "code": 401, "name": "number-refused",
        "message": "+499001234567 is a premium-rate number (default deny list for DE)"}]


def test_preview_bad_file_is_one_line(tmp_path: Path) -> None:
    broken = docs.truncated(tmp_path / "broken.pdf", SAMPLES / "letter.pdf")
    result = invoke(preview, [str(broken)], write_config(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("faxgw: broken.pdf: the PDF is damaged")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_preview_warns_when_the_note_would_be_lost(tmp_path: Path) -> None:
    result = invoke(preview, [str(SAMPLES / "note.txt"), "--note", "call me"],
                    write_config(tmp_path, 'profile = "interfax"'))
    assert result.exit_code == 0
    assert "the note is not sent" in result.output


def test_preview_rejects_an_unknown_out_type(tmp_path: Path) -> None:
    result = invoke(preview, [str(SAMPLES / "note.txt"), "--out", str(tmp_path / "x.png")],
                    write_config(tmp_path))
    assert result.exit_code == 2
    assert "--out" in result.output


# -- through the real command line ---------------------------------------------------------

def run_faxgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "faxgw", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def registered() -> None:
    help_text = run_faxgw("--help").stdout
    if "preview" not in help_text or "profiles" not in help_text:
        pytest.skip("faxgw profiles / preview are not registered in the main group yet")


@pytest.mark.slow
@pytest.mark.usefixtures("registered")
def test_subprocess_profiles_and_preview(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'profile = "interfax"')
    listed = run_faxgw("--config", str(config), "profiles", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {entry["name"] for entry in json.loads(listed.stdout)} >= {"generic", "interfax"}
    shown = run_faxgw("--config", str(config), "preview", str(SAMPLES / "letter.pdf"),
                      "--to", "+4930123456")
    assert shown.returncode == 0, shown.stderr
    assert "+4930123456@fax.tc" in shown.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("registered")
def test_subprocess_preview_bad_file(tmp_path: Path) -> None:
    broken = docs.garbage(tmp_path / "broken.pdf")
    result = run_faxgw("--config", str(write_config(tmp_path)), "preview", str(broken))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("faxgw: broken.pdf")
