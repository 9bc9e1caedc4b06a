"""A full disk under the SMTP intake: a real small filesystem (a tmpfs this test mounts) holds
the spool, and it fills up while a device is sending. The device is told ``452`` (try again
later), nothing is half-kept, and once there is room again its retry makes one job.

Mounting needs root (CI runs as root); without it the test fails and says so, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgw.app.wiring import store_open
from faxgw.devices.staging import staging_root
from faxgw.domain.jobs import JobState
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import MakeConfig
from .test_smtp_intake import DEVICE, Listener, _intake_config, _message

DISK_BYTES = 32 * 1024 * 1024
MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs, mounted for this test only."""
    mount = shutil.which("mount")
    assert os.geteuid() == 0 and mount is not None, (
        "the full-disk test mounts a small tmpfs and must run as root (as CI does)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700",
                           "faxgw-test", str(disk)], capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (root with CAP_SYS_ADMIN "
                    f"is needed): {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True, timeout=30,
                       check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Another program fills the disk, leaving ``leave`` bytes."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        remaining = shutil.disk_usage(disk).free - leave
        chunk = b"\0" * MIB
        while remaining > 0:
            remaining -= handle.write(chunk[: min(MIB, remaining)])
    return filler


def test_a_disk_that_fills_up_during_a_message_is_452_and_keeps_nothing(
    small_disk: Path, smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path,
    tmp_path: Path
) -> None:
    config = _intake_config(make_config, smtp_server)
    config = config.model_copy(update={"spool": config.spool.model_copy(
        update={"dir": small_disk / "spool"})})
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(b"%PDF-1.4\n" + os.urandom(2 * MIB))  # larger than what will be left
    with Listener(config) as listener:
        # One message first, so that the spool and the store exist on the small disk.
        with listener.smtp() as client:
            client.send_message(_message("", (samples / "letter.pdf", "application", "pdf")),
                                DEVICE, ["+4930123451@fax.local"])
        with listener.smtp() as client:
            client.ehlo()
            assert client.mail(DEVICE)[0] == 250  # room enough when the message begins
            assert client.rcpt("+4930123452@fax.local")[0] == 250
            filler = _fill(small_disk, MIB)
            data = _message("", (scan, "application", "pdf")).as_bytes()
            code, text = client.data(data.replace(b"\n", b"\r\n"))  # bytes: CRLF as sent
            assert code == 452, text
            assert text.startswith(b"4.3.1 The gateway cannot store the message now: "), text
            assert text.endswith(b"; try again later"), text
            # The next message is turned away before its data.
            code, text = client.mail(DEVICE)
            assert code == 452 and b"KiB free in the spool" in text, text
        # Nothing half-kept: no job, no job folder, nothing left being assembled.
        with store_open(config) as store:
            assert [job.number for job in store.list_jobs()] == ["+4930123451"]
        spool = config.spool.dir
        assert len(os.listdir(spool / "jobs")) == 1
        assert [name for name in os.listdir(spool / "tmp") if not name.endswith(".lock")] == []
        assert os.listdir(staging_root(config)) == []

        filler.unlink()  # room again: the device's retry is taken
        with listener.smtp() as client:
            refused = client.send_message(_message("", (scan, "application", "pdf")), DEVICE,
                                          ["+4930123452@fax.local"])
            assert refused == {}
    with store_open(config) as store:
        jobs = {job.number: job for job in store.list_jobs()}
    assert sorted(jobs) == ["+4930123451", "+4930123452"]
    assert jobs["+4930123451"].state is JobState.QUEUED
    retried = jobs["+4930123452"]
    assert retried.notify == DEVICE and retried.documents == ["scan.pdf"]
