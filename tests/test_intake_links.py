"""No link is ever followed: not when it is there to see, not when it is swapped in at the
moment a file is taken, not as a manifest, not as a number folder."""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from faxgw.domain import codes
from faxgw.intake.layout import JOB_FILE
from faxgw.intake.spool import Intake, Spool


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "private" / "secret.pdf"
    path.parent.mkdir()
    path.write_bytes(b"%PDF-1.4 TOPSECRET-" + secrets.token_hex(8).encode())
    path.chmod(0o600)
    return path


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", settle_seconds=0)
    spool.ensure()
    return spool


def _docs_of(spool: Spool, intake: Intake) -> list[Path]:
    folder = spool.layout.job_dir(intake.id)
    return [folder / "docs" / name for name in os.listdir(folder / "docs")]


def _content(path: Path) -> bytes:
    """A file's bytes, never through a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        return file.read()


def _kinds(spool: Spool, taken: list[Intake]) -> tuple[int, int]:
    """How many links and how many files were taken (the lesser first, for a comparison)."""
    links = sum(1 for intake in taken for doc in _docs_of(spool, intake) if doc.is_symlink())
    files = sum(1 for intake in taken for doc in _docs_of(spool, intake) if doc.is_file()
                and not doc.is_symlink())
    return min(links, files), max(links, files)


def _race(spool: Spool, swap: Callable[[], None], stop: threading.Event,
          enough: Callable[[list[Intake]], bool]) -> list[Intake]:
    """Scan while ``swap`` runs in a thread: at least 300 scans, and on until both links and
    files were taken often enough (the thread's timing is the scheduler's), a minute at most."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            swap()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    swapper = threading.Thread(target=guarded)
    swapper.start()
    taken: list[Intake] = []
    deadline = time.monotonic() + 60
    scans = 0
    try:
        while scans < 300 or (not enough(taken) and time.monotonic() < deadline):
            taken += spool.scan()
            scans += 1
            if scans % 50 == 0:
                time.sleep(0.01)  # let the swapper run: the GIL favours whoever holds it
    finally:
        stop.set()
        swapper.join()
    assert errors == []
    return taken


def test_a_link_swapped_in_while_files_are_taken_never_reaches_a_job(
        spool: Spool, secret: Path) -> None:
    """One thread keeps replacing the dropped file with a link to a secret and back, while
    the spool takes it: hundreds of rounds. Whatever was taken, a link is kept as a link and
    refused (405), and the secret's bytes are never in a job as content."""
    folder = spool.layout.outgoing / "+4930123456"
    folder.mkdir()
    dropped = folder / "scan.pdf"
    stop = threading.Event()

    def swap() -> None:
        # Dot-names are never taken: each entry is made aside and renamed over the drop.
        while not stop.is_set():
            aside = folder / ".file.part"
            aside.write_bytes(b"%PDF-1.4 harmless")
            os.replace(aside, dropped)
            link = folder / ".link.part"
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
            os.replace(link, dropped)

    taken = _race(spool, swap, stop, enough=lambda taken: _kinds(spool, taken) >= (30, 30))
    taken += spool.scan()

    links = files = 0
    for intake in taken:
        [doc] = _docs_of(spool, intake)
        recorded = Intake.from_file(spool.layout.job_dir(intake.id) / JOB_FILE)
        if doc.is_symlink():
            links += 1
            assert recorded.error_code == codes.INPUT_REFUSED, recorded
            assert "symbolic link" in (recorded.error or "")
            assert os.readlink(doc) == str(secret)  # the link itself, never its target
        else:
            files += 1
            assert stat.S_ISREG(doc.lstat().st_mode) and doc.lstat().st_nlink == 1
            assert _content(doc) == b"%PDF-1.4 harmless", recorded
            assert recorded.error is None
    # Both kinds were taken many times: the race was run, not avoided.
    assert links > 20 and files > 20, (links, files)
    assert secret.read_bytes().startswith(b"%PDF-1.4 TOPSECRET-")


def test_a_number_folder_swapped_for_a_link_is_never_entered(
        spool: Spool, secret: Path) -> None:
    """A number folder replaced by a link to a private folder between two looks: the link is
    refused as itself, and nothing is ever taken out of the private folder."""
    outgoing = spool.layout.outgoing
    stop = threading.Event()

    number = outgoing / "+4930123456"

    def aside(path: Path, to: Path) -> None:
        try:
            os.rename(path, to)
        except FileNotFoundError:
            pass  # the spool took it (a link at the top is refused and moved)

    def swap() -> None:
        # Dot-names are never taken: each entry is made aside and renamed into place.
        count = 0
        while not stop.is_set():
            count += 1
            real = outgoing / f".real{count}"
            real.mkdir()
            (real / "a.pdf").write_bytes(b"%PDF-1.4 harmless")
            aside(number, outgoing / f".old{count}a")
            os.rename(real, number)
            link = outgoing / f".link{count}"
            link.symlink_to(secret.parent, target_is_directory=True)
            aside(number, outgoing / f".old{count}b")
            os.rename(link, number)

    taken = _race(spool, swap, stop, enough=lambda taken: _kinds(spool, taken) >= (10, 10))
    assert secret.exists()  # never moved out of its folder
    refused = 0
    for intake in taken:
        for doc in _docs_of(spool, intake):
            if doc.is_symlink():
                refused += 1
                assert intake.error_code == codes.INPUT_REFUSED
            elif doc.is_file():
                assert _content(doc) == b"%PDF-1.4 harmless"
    assert refused > 0 and len(taken) > refused


def test_a_manifest_that_is_a_link_is_kept_and_never_read(spool: Spool, secret: Path) -> None:
    (spool.layout.outgoing / "job.fax").symlink_to(secret)
    [intake] = spool.scan()
    assert intake.error_code == codes.INPUT_REFUSED and "symbolic link" in (intake.error or "")
    assert "TOPSECRET" not in (intake.error or "")
    assert (spool.layout.job_dir(intake.id) / "job.fax").is_symlink()


def test_a_link_a_manifest_names_is_refused_as_itself(spool: Spool, secret: Path) -> None:
    """A link at the top is refused by itself (it might be a number folder elsewhere); the
    manifest naming it then fails too. The link is kept, its target never read."""
    out = spool.layout.outgoing
    (out / "doc.pdf").symlink_to(secret)
    (out / "job.fax").write_text('to = "+4930123456"\nfiles = ["doc.pdf"]\n')
    taken = spool.scan()
    assert sorted(intake.error_code or 0 for intake in taken) == [codes.INPUT_REFUSED,
                                                                   codes.BAD_MANIFEST]
    links = [doc for intake in taken for doc in _docs_of(spool, intake) if doc.is_symlink()]
    assert [link.name for link in links] == ["doc.pdf"]


def test_a_manifest_naming_a_folder_is_refused_and_the_folder_stays(spool: Spool) -> None:
    out = spool.layout.outgoing
    (out / "+4989765432").mkdir()
    (out / "+4989765432" / ".keep").write_text("")  # hidden: never taken itself
    (out / "job.fax").write_text('to = "+4930123456"\nfiles = ["+4989765432"]\n')
    [intake] = spool.scan()
    assert intake.error_code == codes.BAD_MANIFEST and "is a folder" in (intake.error or "")
    assert (out / "+4989765432" / ".keep").exists()  # not moved
    assert os.listdir(spool.layout.job_dir(intake.id) / "docs") == []


def test_a_hard_link_named_by_a_manifest_is_refused(spool: Spool, secret: Path) -> None:
    out = spool.layout.outgoing
    os.link(secret, out / "doc.pdf")
    (out / "job.fax").write_text('to = "+4930123456"\nfiles = ["doc.pdf"]\n')
    [intake] = spool.scan()
    assert intake.error_code == codes.INPUT_REFUSED and "hard link" in (intake.error or "")
