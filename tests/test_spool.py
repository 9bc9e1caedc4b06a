"""The spool: three ways in, settling, refusal of links and device files, claims, recovery."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from faxgw.domain import codes
from faxgw.domain.errors import InputError
from faxgw.intake.layout import JOB_FILE
from faxgw.intake.scanner import BATCH
from faxgw.intake.spool import Intake, Spool


class Tick:
    """A settle clock the test moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tick() -> Tick:
    return Tick()


@pytest.fixture
def spool(tmp_path: Path, tick: Tick) -> Spool:
    spool = Spool(tmp_path / "spool", settle_seconds=2, clock=tick)
    spool.ensure()
    return spool


def _settle(tick: Tick) -> None:
    tick.now = time.time() + 3


def test_submit_copies_into_a_complete_job_folder(spool: Spool, samples: Path) -> None:
    intake = spool.submit(
        "+4930123456", [samples / "letter.pdf", samples / "note.txt"], subject="S", note="N"
    )
    folder = spool.layout.job_dir(intake.id)
    assert Intake.from_file(folder / JOB_FILE).documents == ["letter.pdf", "note.txt"]
    assert [p.name for p in spool.documents(intake.id)] == ["letter.pdf", "note.txt"]
    assert (samples / "letter.pdf").exists()  # submit copies; the original stays
    assert list(spool.layout.tmp.iterdir()) == []


def test_submit_refuses_a_missing_file(spool: Spool, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        spool.submit("+4930123456", [tmp_path / "missing.pdf"])
    assert list(spool.layout.jobs.iterdir()) == []


def test_number_folder_drop_waits_until_settled(spool: Spool, samples: Path, tick: Tick) -> None:
    folder = spool.layout.outgoing / "+4930123456"
    folder.mkdir()
    shutil.copy(samples / "scan.jpg", folder / "scan.jpg")
    tick.now = time.time()
    assert spool.scan() == []  # just written: not yet
    assert (folder / "scan.jpg").exists()
    _settle(tick)
    [intake] = spool.scan()
    assert intake.number == "+4930123456" and intake.documents == ["scan.jpg"]
    assert intake.source == "outgoing/+4930123456/scan.jpg"
    assert not (folder / "scan.jpg").exists()
    assert (spool.layout.job_dir(intake.id) / "docs" / "scan.jpg").exists()


def test_ignored_names_are_left_alone(spool: Spool, samples: Path, tick: Tick) -> None:
    folder = spool.layout.outgoing / "+4930123456"
    folder.mkdir()
    for name in (".hidden.pdf", "scan.pdf.part", "scan.tmp"):
        shutil.copy(samples / "letter.pdf", folder / name)
    _settle(tick)
    assert spool.scan() == []
    assert len(list(folder.iterdir())) == 3


def test_manifest_takes_its_files(spool: Spool, samples: Path, tick: Tick) -> None:
    out = spool.layout.outgoing
    shutil.copy(samples / "logo.png", out / "a.png")
    shutil.copy(samples / "letter.pdf", out / "b.pdf")
    shutil.copy(samples / "note.txt", out / "unrelated.txt")
    (out / "job1.fax").write_text(
        'to = "+4930123456"\nfiles = ["b.pdf", "a.png"]\nsubject = "Hello"\nnote = "Body"\n'
    )
    _settle(tick)
    [intake] = spool.scan()
    assert intake.documents == ["b.pdf", "a.png"] and intake.subject == "Hello"
    assert intake.error is None
    assert sorted(p.name for p in out.iterdir()) == ["unrelated.txt"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("to = ", "not valid TOML"),
        ('files = ["a.pdf"]\n', "missing to"),
        ('to = "+4930123456"\n', "missing files"),
        ('to = "+4930123456"\nfiles = ["../etc/passwd"]\n', "not a plain file name"),
        ('to = "+4930123456"\nfiles = ["nothere.pdf"]\n', "which is not in outgoing"),
        ('to = "+4930123456"\nfiles = ["a.pdf"]\ncolour = "red"\n', "unknown key 'colour'"),
    ],
)
def test_bad_manifest_fails_with_its_reason_and_is_kept(
    spool: Spool, tick: Tick, samples: Path, text: str, expected: str
) -> None:
    shutil.copy(samples / "letter.pdf", spool.layout.outgoing / "a.pdf")
    (spool.layout.outgoing / "bad.fax").write_text(text)
    _settle(tick)
    [intake] = spool.scan()
    assert intake.error_code == codes.BAD_MANIFEST
    assert intake.error is not None and intake.error.startswith("bad.fax: ")
    assert re.search(expected, intake.error), intake.error
    assert (spool.layout.job_dir(intake.id) / "bad.fax").exists()


def test_symlink_is_refused_and_kept_not_followed(spool: Spool, tmp_path: Path, tick: Tick) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(b"%PDF-1.4 private")
    folder = spool.layout.outgoing / "+4930123456"
    folder.mkdir()
    (folder / "evil.pdf").symlink_to(secret)
    _settle(tick)
    [intake] = spool.scan()
    assert intake.error_code == codes.INPUT_REFUSED
    assert "symbolic link" in (intake.error or "")
    kept = spool.layout.job_dir(intake.id) / "docs" / "evil.pdf"
    assert kept.is_symlink()  # the link itself was taken, not its target
    assert secret.read_bytes() == b"%PDF-1.4 private"


def test_hard_link_and_fifo_are_refused(spool: Spool, tmp_path: Path, tick: Tick) -> None:
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"%PDF-1.4 x")
    folder = spool.layout.outgoing / "+4930123456"
    folder.mkdir()
    os.link(outside, folder / "hard.pdf")
    os.mkfifo(folder / "pipe.pdf")
    _settle(tick)
    reasons = sorted(intake.error or "" for intake in spool.scan())
    assert "hard link" in reasons[0] and "device file, pipe" in reasons[1]


def test_number_folder_linked_outside_is_refused(spool: Spool, tmp_path: Path, tick: Tick) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "private.pdf").write_bytes(b"%PDF-1.4")
    (spool.layout.outgoing / "+4930123456").symlink_to(elsewhere, target_is_directory=True)
    _settle(tick)
    [intake] = spool.scan()
    assert intake.error_code == codes.INPUT_REFUSED
    assert (elsewhere / "private.pdf").exists()


def test_two_workers_never_take_the_same_file(tmp_path: Path, samples: Path) -> None:
    root = tmp_path / "spool"
    spools = [Spool(root, settle_seconds=0) for _ in range(4)]
    spools[0].ensure()
    for index in range(60):
        folder = spools[0].layout.outgoing / f"+49301234{index:02d}"
        folder.mkdir()
        shutil.copy(samples / "note.txt", folder / "n.txt")
    results: list[Intake] = []
    lock = threading.Lock()

    def work(spool: Spool) -> None:
        taken = spool.scan()
        with lock:
            results.extend(taken)

    threads = [threading.Thread(target=work, args=(s,)) for s in spools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(i.number for i in results) == sorted(f"+49301234{i:02d}" for i in range(60))
    assert len(list(spools[0].layout.jobs.iterdir())) == 60
    assert list(spools[0].layout.tmp.iterdir()) == []


def _drops(spool: Spool, samples: Path, count: int) -> None:
    for index in range(count):
        folder = spool.layout.outgoing / f"+49301234{index:02d}"
        folder.mkdir()
        shutil.copy(samples / "note.txt", folder / "n.txt")


def test_drops_enter_jobs_in_batches_each_complete_and_marked(
    spool: Spool, samples: Path, tick: Tick
) -> None:
    spool.recover()  # the marks folder exists from the first start on
    _drops(spool, samples, BATCH + 6)
    tick.now += 5
    sizes = []
    for batch in spool.scan_batches():
        sizes.append(len(batch))
        for intake in batch:  # yielded only once complete in jobs/, found again by its mark
            folder = spool.layout.job_dir(intake.id)
            assert Intake.from_file(folder / JOB_FILE).documents == ["n.txt"]
            assert (folder / "docs" / "n.txt").read_bytes() == (samples / "note.txt").read_bytes()
            assert (spool.layout.unregistered / intake.id).exists()
    assert sizes == [BATCH, 6]
    assert list(spool.layout.tmp.iterdir()) == []
    assert not any(spool.layout.outgoing.glob("*/n.txt"))


def test_a_consumer_that_stops_after_a_batch_leaves_the_rest_in_outgoing(
    spool: Spool, samples: Path, tick: Tick
) -> None:
    _drops(spool, samples, BATCH + 6)
    tick.now += 5
    batches = spool.scan_batches()
    first = next(batches)
    batches.close()  # nothing half-taken is left behind in tmp/
    assert len(first) == BATCH and list(spool.layout.tmp.iterdir()) == []
    assert len(list(spool.layout.jobs.iterdir())) == BATCH
    assert len(list(spool.layout.outgoing.glob("*/n.txt"))) == 6
    assert len(spool.scan()) == 6


def test_recover_finishes_a_half_taken_manifest(spool: Spool, samples: Path) -> None:
    out = spool.layout.outgoing
    shutil.copy(samples / "letter.pdf", out / "a.pdf")
    shutil.copy(samples / "logo.png", out / "b.png")
    # The state a process leaves when it dies after renaming the manifest and one file.
    intake = Intake(
        id="0000000000aa-deadbeef",
        number="+4930123456",
        source="outgoing/x.fax",
        documents=["a.pdf", "b.png"],
        source_paths=[str(out / "a.pdf"), str(out / "b.png")],
    )
    assembly = spool._begin(intake)
    work = assembly.path
    (work / "x.fax").write_text('to = "+4930123456"\nfiles = ["a.pdf", "b.png"]\n')
    os.rename(out / "a.pdf", work / "docs" / "a.pdf")
    assembly.abandon()  # the process dies: its lock goes, its files stay
    [found] = spool.recover()
    assert found.id == intake.id and found.documents == ["a.pdf", "b.png"]
    assert not (out / "b.png").exists()
    assert list(spool.layout.tmp.iterdir()) == []


def test_recover_drops_a_claim_that_took_nothing(spool: Spool) -> None:
    intake = Intake(
        id="0000000000bb-deadbeef",
        number="+4930123456",
        source="outgoing/+4930123456/a.pdf",
        documents=["a.pdf"],
        source_paths=["/nonexistent/a.pdf"],
    )
    spool._begin(intake).abandon()
    assert spool.recover() == []
    assert list(spool.layout.tmp.iterdir()) == []
