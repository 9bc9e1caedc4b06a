"""Recovery touches only what processes that are gone left in ``tmp/``: a job another live
process is assembling is left alone; a stopped manifest job is finished whole or fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from faxgw.domain import codes
from faxgw.intake.layout import JOB_FILE
from faxgw.intake.spool import Intake, Spool

REPO = Path(__file__).resolve().parent.parent

#: A process that begins a job, takes a file into it, says so, and waits to be killed.
ASSEMBLER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from faxgw.intake.spool import Intake, Spool
    spool = Spool(Path(sys.argv[1]))
    out = spool.layout.outgoing / "+4930123456"
    intake = Intake(id=sys.argv[2], number="+4930123456",
                    source="outgoing/+4930123456/a.pdf", documents=["a.pdf"],
                    source_paths=[str(out / "a.pdf")])
    assembly = spool._begin(intake)
    os.rename(out / "a.pdf", assembly.path / "docs" / "a.pdf")
    print("assembling", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", settle_seconds=0)
    spool.ensure()
    return spool


def test_a_job_another_live_process_assembles_is_left_alone_until_it_is_gone(
        spool: Spool, samples: Path) -> None:
    folder = spool.layout.outgoing / "+4930123456"
    folder.mkdir()
    shutil.copy(samples / "letter.pdf", folder / "a.pdf")
    job_id = "0000000000cc-deadbeef"
    other = subprocess.Popen([sys.executable, "-c", ASSEMBLER, str(spool.layout.root), job_id],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert other.stdout is not None and other.stdout.readline() == "assembling\n"
        work = spool.layout.tmp / job_id
        # Another process starting now (a cron run beside the service) must not touch it.
        assert spool.recover() == []
        assert (work / "docs" / "a.pdf").exists() and (work / JOB_FILE).exists()
        assert list(spool.layout.jobs.iterdir()) == []
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
        if other.stdout is not None:
            other.stdout.close()
    # Its process is gone (killed: no chance to clean up): now it is finished.
    [found] = spool.recover()
    assert found.id == job_id and found.documents == ["a.pdf"] and found.error is None
    assert (spool.layout.job_dir(job_id) / "docs" / "a.pdf").exists()
    assert os.listdir(spool.layout.tmp) == []  # no folder, no lock file left


def _half_taken_manifest(spool: Spool, samples: Path) -> tuple[Intake, Path]:
    """What a process leaves when it dies after renaming a manifest and its first file."""
    out = spool.layout.outgoing
    shutil.copy(samples / "letter.pdf", out / "a.pdf")
    shutil.copy(samples / "logo.png", out / "b.png")
    intake = Intake(id="0000000000dd-deadbeef", number="+4930123456", source="outgoing/x.fax",
                    documents=["a.pdf", "b.png"],
                    source_paths=[str(out / "a.pdf"), str(out / "b.png")])
    assembly = spool._begin(intake)
    (assembly.path / "x.fax").write_text('to = "+4930123456"\nfiles = ["a.pdf", "b.png"]\n')
    os.rename(out / "a.pdf", assembly.path / "docs" / "a.pdf")
    assembly.abandon()
    return intake, assembly.path


def test_a_manifest_job_whose_document_is_gone_fails_whole(spool: Spool, samples: Path) -> None:
    intake, _ = _half_taken_manifest(spool, samples)
    (spool.layout.outgoing / "b.png").unlink()  # gone while the gateway was down
    [found] = spool.recover()
    assert found.id == intake.id and found.error_code == codes.BAD_MANIFEST
    assert "'b.png'" in (found.error or "") and "nothing of the job was sent" in (found.error or "")
    assert (spool.layout.job_dir(intake.id) / "docs" / "a.pdf").exists()  # kept


def test_a_link_taken_just_before_a_stop_is_refused_at_recovery(
        spool: Spool, samples: Path, tmp_path: Path) -> None:
    """The stopped process had moved the entry but not yet judged it."""
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(b"%PDF-1.4 secret")
    intake, work = _half_taken_manifest(spool, samples)
    (spool.layout.outgoing / "b.png").unlink()
    (spool.layout.outgoing / "b.png").symlink_to(secret)
    [found] = spool.recover()
    assert found.error_code == codes.INPUT_REFUSED and "b.png" in (found.error or "")
    assert (spool.layout.job_dir(intake.id) / "docs" / "b.png").is_symlink()


def test_lock_files_without_a_folder_are_swept_and_old_folders_recovered(
        spool: Spool, samples: Path) -> None:
    tmp = spool.layout.tmp
    (tmp / "0000000000ee-deadbeef.lock").write_text("")  # its process died before the folder
    # A folder left by a version without locks: recovered as its process is surely gone.
    intake, work = _half_taken_manifest(spool, samples)
    (tmp / f"{work.name}.lock").unlink()
    [found] = spool.recover()
    assert found.id == intake.id and found.documents == ["a.pdf", "b.png"]
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("source", ["submit", "smtp from 127.0.0.1, MAIL FROM <scanner@x.example>"])
def test_a_submission_cut_off_while_assembled_is_discarded(spool: Spool, samples: Path,
                                                           source: str) -> None:
    """A copy (``faxgw submit``, the console, a device over SMTP) stopped half-way is
    discarded: its submitter saw no id (a device got no 250) and still has the originals, so
    finishing it would send the fax twice when it is submitted again."""
    intake = Intake(id="0000000000ee-deadbeef", number="+4930123456", source=source,
                    documents=["a.pdf"])
    assembly = spool._begin(intake)
    shutil.copy(samples / "letter.pdf", assembly.path / "docs" / "a.pdf")
    assembly.abandon()  # as a process that died: its lock is free now
    assert spool.recover() == []
    assert list(spool.layout.jobs.iterdir()) == [] and os.listdir(spool.layout.tmp) == []


def test_start_up_reads_only_the_job_folders_marked_unregistered(
        spool: Spool, samples: Path) -> None:
    """After the first start, a start looks only at folders marked as not yet registered:
    a registered job's folder is not read (here its job.json is unreadable, and nothing
    minds), an unregistered one is found by its mark, and registering it removes the mark."""
    assert spool.recover() == []  # the first start: every folder looked at, marks made
    assert spool.layout.unregistered.is_dir()
    registered = spool.submit("+4930123456", [samples / "note.txt"])
    spool.registered([registered.id])
    (spool.layout.job_dir(registered.id) / JOB_FILE).write_text("not json")
    orphan = spool.submit("+4930123456", [samples / "note.txt"])  # the store never told
    assert sorted(os.listdir(spool.layout.unregistered)) == [orphan.id]
    asked: list[list[str]] = []

    def unknown(ids: object) -> set[str]:
        names = sorted(ids)  # type: ignore[call-overload]
        asked.append(names)
        return set(names)

    found = spool.recover(unknown)
    assert asked == [[orphan.id]]
    assert [intake.id for intake in found] == [orphan.id]
    spool.registered([orphan.id])
    assert os.listdir(spool.layout.unregistered) == []


def test_a_mark_of_a_job_the_store_knows_is_removed_at_start(
        spool: Spool, samples: Path) -> None:
    """A stop between the store's write and the mark's removal leaves a stale mark: the next
    start asks the store, which knows the job, and the mark goes without a registration."""
    spool.recover()
    intake = spool.submit("+4930123456", [samples / "note.txt"])
    assert spool.recover(lambda ids: set()) == []
    assert os.listdir(spool.layout.unregistered) == []
    assert (spool.layout.job_dir(intake.id) / JOB_FILE).exists()


def test_a_spool_from_before_the_marks_has_every_folder_looked_at_once(
        spool: Spool, samples: Path) -> None:
    """A spool an older faxgw kept has no marks folder: its first start looks at every job
    folder and marks the unknown ones, so that they are found again if it stops before
    registering them."""
    intake = spool.submit("+4930123456", [samples / "note.txt"])
    assert not spool.layout.unregistered.exists()
    found = spool.recover(lambda ids: set(ids))
    assert [i.id for i in found] == [intake.id]
    assert os.listdir(spool.layout.unregistered) == [intake.id]
    assert [i.id for i in spool.recover(lambda ids: set(ids))] == [intake.id]
