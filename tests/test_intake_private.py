"""Private by default: what the gateway keeps is its own (and ``[spool] group``'s), nobody
else's; ``outgoing/`` is the one shared folder."""

from __future__ import annotations

import grp
import os
import shutil
import stat
from pathlib import Path

import pytest

from faxgw.auth.token_cache import TokenStore
from faxgw.domain.errors import SpoolError
from faxgw.intake.spool import Spool
from faxgw.testing.smtp_server import FaxSMTPServer

from .test_cli import _config_file, faxgw


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _walk_outside_outgoing(root: Path) -> list[Path]:
    """Every entry under the spool root except ``outgoing/`` and what is in it."""
    found = []
    for folder, folders, files in os.walk(root):
        base = Path(folder)
        if base == root:
            folders.remove("outgoing")
        found += [base / name for name in folders + files]
    return found


def test_after_a_full_run_nothing_outside_outgoing_is_open_to_others(
        tmp_path: Path, smtp_server: FaxSMTPServer, samples: Path) -> None:
    config = _config_file(tmp_path, smtp_server)
    faxgw("run", "--once", config=config)  # makes the spool
    spool = tmp_path / "spool"
    outgoing = spool / "outgoing"
    # Dropped as a user drops (umask 022: the files are 0644), submitted, and one bad drop.
    (outgoing / "+4930123456").mkdir()
    shutil.copy(samples / "scan.jpg", outgoing / "+4930123456" / "scan.jpg")
    shutil.copy(samples / "note.txt", outgoing / "doc.txt")
    (outgoing / "order.fax").write_text('to = "+4930123456"\nfiles = ["doc.txt"]\n')
    (outgoing / "+4989765432").mkdir()
    (outgoing / "+4989765432" / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    faxgw("submit", "--to", "+4930123456", str(samples / "letter.pdf"), config=config)
    ran = faxgw("run", "--once", "--json", config=config)
    assert '"sent": 3' in ran.stdout and '"failed": 1' in ran.stdout, ran.stdout

    entries = _walk_outside_outgoing(spool)
    names = {path.name for path in entries}
    # The walk saw every kind of thing the gateway writes, so that it can find a wrong one.
    assert {"jobs", "failed", "tmp", "state", "job.json", "docs", "scan.jpg", "order.fax",
            "doc.txt", "letter.pdf", "broken.pdf", "faxgw.db"} <= names, names
    assert any(name.startswith("fax-") for name in names)
    open_to_others = [f"{path.relative_to(spool)} {_mode(path):04o}" for path in entries
                      if not path.is_symlink() and _mode(path) & 0o077]
    assert open_to_others == []
    assert _mode(outgoing) == 0o770  # made by the gateway: shared with its group only


def test_start_tightens_the_gateways_folders_and_leaves_outgoing_alone(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    for name, mode in (("outgoing", 0o1777), ("jobs", 0o755), ("failed", 0o775),
                       ("tmp", 0o777), ("state", 0o755)):
        (root / name).mkdir(parents=True)
        (root / name).chmod(mode)
    database = root / "state" / "faxgw.db"
    database.write_bytes(b"")
    database.chmod(0o644)
    Spool(root).ensure()
    assert _mode(root / "outgoing") == 0o1777  # the administrator's choice
    for name in ("jobs", "failed", "tmp", "state"):
        assert _mode(root / name) == 0o700, name
    assert _mode(database) == 0o600


def test_a_new_spool_is_private_and_its_outgoing_is_shared_with_the_group(
        tmp_path: Path) -> None:
    root = tmp_path / "new" / "spool"
    old = os.umask(0o002)  # a generous umask changes nothing
    try:
        Spool(root).ensure()
    finally:
        os.umask(old)
    assert _mode(root) == 0o711
    assert _mode(root / "outgoing") == 0o770
    assert {_mode(root / name) for name in ("jobs", "failed", "tmp", "state")} == {0o700}


def test_with_a_group_the_group_may_read_and_nobody_else(tmp_path: Path, samples: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    spool = Spool(tmp_path / "spool", settle_seconds=0, group=group)
    (tmp_path / "spool" / "jobs").mkdir(parents=True)
    (tmp_path / "spool" / "jobs").chmod(0o700)  # too narrow for the group now: opened
    spool.ensure()
    for name in ("jobs", "failed", "tmp", "state"):
        folder = tmp_path / "spool" / name
        assert (_mode(folder), folder.stat().st_gid) == (0o2750, os.getgid()), name
    submitted = spool.submit("+4930123456", [samples / "note.txt"])
    (spool.layout.outgoing / "+4930123456").mkdir()
    shutil.copy(samples / "scan.jpg", spool.layout.outgoing / "+4930123456" / "scan.jpg")
    [dropped] = spool.scan()
    for intake in (submitted, dropped):
        folder = spool.layout.job_dir(intake.id)
        assert _mode(folder) == _mode(folder / "docs") == 0o2750
        assert _mode(folder / "job.json") == 0o640
        [doc] = (folder / "docs").iterdir()
        assert _mode(doc) == 0o640 and doc.stat().st_gid == os.getgid()


def test_an_unknown_group_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no group 'no-such-group-faxgw'"):
        Spool(tmp_path / "spool", group="no-such-group-faxgw").ensure()


def test_the_token_cache_folder_is_private(tmp_path: Path) -> None:
    made_first = tmp_path / "state"  # made by another part (or an administrator) first
    made_first.mkdir()
    made_first.chmod(0o755)
    with TokenStore(made_first / "tokens.json").locked():
        pass
    assert _mode(made_first) == 0o700
    new = tmp_path / "fresh" / "state"
    with TokenStore(new / "tokens.json").locked():
        pass
    assert _mode(new) == 0o700
    shared = tmp_path / "spool-state"  # a [spool] group's folder keeps its group's access
    shared.mkdir()
    shared.chmod(0o2750)
    with TokenStore(shared / "tokens.json").locked():
        pass
    assert _mode(shared) == 0o2750
