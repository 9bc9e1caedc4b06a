"""Every drop gets an answer, and one bad item never stops the scan: odd names, odd entries,
texts with control characters, entries that cannot be moved."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faxgw.app.wiring import open_spool, open_store
from faxgw.config import Config
from faxgw.domain import codes
from faxgw.domain.jobs import Job, JobState
from faxgw.intake.layout import JOB_FILE
from faxgw.intake.register import register
from faxgw.intake.spool import Intake, Spool

from .conftest import MakeConfig


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    return make_config()


@pytest.fixture
def spool(config: Config) -> Spool:
    spool = open_spool(config)
    spool.ensure()
    return spool


def _register_all(config: Config, spool: Spool) -> dict[str, Job]:
    """Scan and register everything, as the worker does; the jobs by their recorded source."""
    store = open_store(config)
    try:
        jobs = [register(intake, config=config, store=store, documents=spool)
                for intake in spool.scan()]
        return {job.source: job for job in jobs}
    finally:
        store.close()


def _failed_with(job: Job, code: int, *words: str) -> None:
    assert (job.state, job.code) == (JobState.FAILED, code), (job.code, job.error)
    for word in words:
        assert word in (job.error or ""), job.error


def test_odd_entries_each_get_an_answer_in_one_scan(config: Config, spool: Spool,
                                                    samples: Path) -> None:
    out = spool.layout.outgoing
    number = out / "+4930123456"
    number.mkdir()
    text = (samples / "note.txt").read_bytes()
    (number / "sub.pdf").mkdir()                    # a folder where a file belongs
    (number / "sub.pdf" / "inner.txt").write_bytes(text)
    os.mkfifo(number / "pipe.pdf")                  # a pipe: never opened, never waited on
    (number / "line\nbreak.txt").write_bytes(text)  # a control character in the name
    with open(os.fsencode(number) + b"/latin1-\xe9.txt", "wb") as file:  # not UTF-8
        file.write(text)
    (out / "doc.txt").write_bytes(text)
    (out / "nul.fax").write_text('to = "+4930123456"\nfiles = ["a\\u0000b"]\n')
    (out / "long.fax").write_text(f'to = "+4930123456"\nfiles = ["{"n" * 300}.pdf"]\n')
    (out / "big.fax").write_bytes(b"#" * 100_000)
    (out / "sep.fax").write_text('to = "+4930123456"\nfiles = ["doc.txt"]\n'
                                 'note = "one\\u2028two"\n')
    (out / "crlf.fax").write_text('to = "+4930123456"\nfiles = ["doc.txt"]\n'
                                  'subject = "Hi\\r\\nBcc: victim@example.com"\n')
    (out / "weird\u2028name.fax").mkdir()           # a folder with a manifest's name
    jobs = _register_all(config, spool)

    _failed_with(jobs["outgoing/+4930123456/sub.pdf"], codes.INPUT_REFUSED, "is a folder")
    _failed_with(jobs["outgoing/+4930123456/pipe.pdf"], codes.INPUT_REFUSED, "pipe")
    _failed_with(jobs["outgoing/+4930123456/line\\nbreak.txt"], codes.CONTROL_CHARACTERS,
                 "line\\nbreak.txt")
    _failed_with(jobs["outgoing/nul.fax"], codes.CONTROL_CHARACTERS, "a\\x00b")
    _failed_with(jobs["outgoing/long.fax"], codes.BAD_MANIFEST, "longer than 255 bytes")
    _failed_with(jobs["outgoing/big.fax"], codes.BAD_MANIFEST, "a manifest is a few lines")
    _failed_with(jobs["outgoing/sep.fax"], codes.CONTROL_CHARACTERS, "note", "\\u2028")
    _failed_with(jobs["outgoing/crlf.fax"], codes.CONTROL_CHARACTERS, "subject", "\\r\\n")
    # A name that is not UTF-8 is taken under a name that is, and sent.
    latin = jobs["outgoing/+4930123456/latin1-\ufffd.txt"]
    assert latin.state is JobState.QUEUED and latin.documents == ["latin1-\ufffd.txt"]
    assert spool.documents(latin.id)[0].read_bytes() == text
    # Every failed job keeps what was dropped, the folder with what was in it.
    for job in jobs.values():
        if job.state is JobState.FAILED:
            assert (spool.layout.failed / job.id / JOB_FILE).exists()
            assert job.error is not None and "\n" not in job.error and "\r" not in job.error
    kept = spool.layout.failed / jobs["outgoing/+4930123456/sub.pdf"].id / "docs" / "sub.pdf"
    assert (kept / "inner.txt").read_bytes() == text
    assert stat_is_fifo(spool.layout.failed / jobs["outgoing/+4930123456/pipe.pdf"].id
                        / "docs" / "pipe.pdf")
    left = sorted(os.listdir(out))  # doc.txt waits for a sound manifest; the empty folders
    assert left == ["+4930123456", "doc.txt", "weird\u2028name.fax"]
    assert os.listdir(number) == []


def stat_is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(path.lstat().st_mode)


@pytest.fixture
def pinned() -> Iterator[Callable[[Path], None]]:
    """Make an entry that the gateway cannot move (as root, an immutable file; otherwise a
    folder it may not write), undone afterwards."""
    undo: list[Callable[[], None]] = []

    def pin(path: Path) -> None:
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"chattr +i is not available here: {done.stderr!r}")
            undo.append(lambda: subprocess.run(["chattr", "-i", str(path)], check=True))
        else:
            path.parent.chmod(0o555)
            undo.append(lambda: path.parent.chmod(0o755))

    yield pin
    for step in undo:
        step()


def test_an_entry_that_cannot_be_moved_is_logged_once_and_the_scan_goes_on(
        spool: Spool, samples: Path, pinned: Callable[[Path], None],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="faxgw")
    out = spool.layout.outgoing
    stuck, good = out / "+4930123456", out / "+4989765432"
    stuck.mkdir()
    good.mkdir()
    shutil.copy(samples / "note.txt", stuck / "a.txt")
    pinned(stuck / "a.txt")
    for round_ in range(3):
        shutil.copy(samples / "note.txt", good / f"good{round_}.txt")
        [taken] = spool.scan()  # the good file behind the stuck one is taken every time
        assert taken.source == f"outgoing/+4989765432/good{round_}.txt"
    said = [r for r in caplog.records if "cannot be taken" in r.getMessage()]
    assert len(said) == 1 and "+4930123456/a.txt" in said[0].getMessage()
    assert (stuck / "a.txt").exists()
    assert os.listdir(spool.layout.tmp) == []  # no half job left behind


def test_a_manifest_that_cannot_be_read_is_a_failed_job(spool: Spool) -> None:
    """Not UTF-8 and not TOML are old answers; a manifest that is a FIFO is a new one."""
    os.mkfifo(spool.layout.outgoing / "pipe.fax")
    [intake] = spool.scan()
    assert intake.error_code == codes.INPUT_REFUSED and "pipe" in (intake.error or "")
    assert stat_is_fifo(spool.layout.job_dir(intake.id) / "pipe.fax")


def test_a_job_json_holding_a_name_that_is_not_utf8_reads_back(tmp_path: Path) -> None:
    intake = Intake(id="x", number="+4930123456", source_paths=["/s/latin1-\udce9.txt"])
    (tmp_path / JOB_FILE).write_bytes(intake.to_file())
    assert Intake.from_file(tmp_path / JOB_FILE).source_paths == ["/s/latin1-\udce9.txt"]
