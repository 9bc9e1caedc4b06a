"""A long document rasterised by several processes (faxgw.render.parts): the same file as
one process writes, byte for byte; a helper's failure fails the rasterising with its cause;
no helper and no temporary file outlives the call, or its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faxgw.render import parts, raster
from faxgw.render.raster import RasterFailure, rasterise
from faxgw.render.tiff import check_tiff
from tests.test_raster import fresh, striped_pdf

ROOT = Path(__file__).resolve().parent.parent


def test_pages_are_split_into_even_runs_of_consecutive_pages() -> None:
    assert parts.page_runs(100, 2) == [range(0, 50), range(50, 100)]
    assert parts.page_runs(101, 3) == [range(0, 33), range(33, 67), range(67, 101)]
    # Too short to be worth a helper: one run, whatever the cores.
    assert parts.page_runs(15, 2) == [range(0, 15)]
    assert parts.page_runs(1, 8) == [range(0, 1)]
    assert parts.page_runs(0, 2) == [range(0, 0)]
    assert parts.page_runs(16, 2) == [range(0, 8), range(8, 16)]
    # At most MAX_PROCESSES, and never fewer than MIN_PAGES_PER_PROCESS pages a run.
    assert len(parts.page_runs(1000, 64)) == parts.MAX_PROCESSES
    for pages in range(0, 70):
        runs = parts.page_runs(pages, 3)
        assert [page for run in runs for page in run] == list(range(pages))
        assert len(runs) == 1 or min(len(run) for run in runs) >= parts.MIN_PAGES_PER_PROCESS


def test_group4_takes_a_process_for_two_cores_group3_one_for_each() -> None:
    # How many cores one process keeps busy, by compression (see CORES_PER_PROCESS).
    cores = parts.cores()
    assert cores >= 1
    assert parts.processes_for("group3") == cores
    assert parts.processes_for("group4") == max(1, cores // 2)


@pytest.mark.parametrize("compression", ["group3", "group4"])
def test_pages_coded_without_a_coding_thread_come_out_the_same(
        tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a process for every core, pages are coded by the rendering thread: same file."""
    pdf = striped_pdf(tmp_path / "doc.pdf", ["A4", "Letter", "A5"] * 3)
    threaded = rasterise(pdf, fresh(tmp_path / "threaded.tif"), compression=compression)
    coders: list[bool] = []
    make_coder = raster._Coder

    def counted(writer: raster.FaxTiffWriter, *, threaded: bool = True) -> raster._Coder:
        coders.append(threaded)
        return make_coder(writer, threaded=threaded)

    monkeypatch.setattr(raster, "_Coder", counted)
    monkeypatch.setattr(parts, "cores", lambda: 1)
    inline = rasterise(pdf, fresh(tmp_path / "inline.tif"), compression=compression)
    assert coders == [False]
    assert inline == threaded
    assert (tmp_path / "inline.tif").read_bytes() == (tmp_path / "threaded.tif").read_bytes()


@pytest.mark.parametrize("compression", ["group3", "group4"])
def test_a_document_split_between_processes_comes_out_as_one_process_writes_it(
        tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mixed paper sizes and n bars on page n: a page out of place changes the bytes.
    papers = ["A4", "A5", "Letter", "A4"] * 6
    pdf = striped_pdf(tmp_path / "long.pdf", papers)
    one = rasterise(pdf, fresh(tmp_path / "one.tif"), compression=compression, processes=1)

    workers = tmp_path / "workers"
    run_pages = raster._rasterise_run

    def recorded(pdf: Path, compression: str, threaded: bool, run: range,
                 out: Path) -> tuple[int, ...]:
        with workers.open("a") as file:  # written in the helper
            file.write(f"{os.getpid()} {run.start} {run.stop}\n")
        return run_pages(pdf, compression, threaded, run, out)

    monkeypatch.setattr(raster, "_rasterise_run", recorded)
    split = rasterise(pdf, fresh(tmp_path / "split.tif"), compression=compression, processes=3)

    # Two helpers took pages 9-16 and 17-24, each in a process of its own.
    lines = sorted((int(start), int(stop), int(pid)) for pid, start, stop in
                   (line.split() for line in workers.read_text().splitlines()))
    assert [(start, stop) for start, stop, _ in lines] == [(8, 16), (16, 24)]
    assert len({pid for _, _, pid in lines} | {os.getpid()}) == 3
    assert (tmp_path / "split.tif").read_bytes() == (tmp_path / "one.tif").read_bytes()
    assert split == one
    check_tiff(tmp_path / "split.tif", pages=len(papers), compression=compression,
               first_page_black=split.first_page_black, coded_bytes=split.coded_bytes)
    # No helper's file is left next to the TIFF.
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "long.pdf", "one.tif", "split.tif", "workers"]


class _GaveUp(Exception):
    pass


def _helpers(tmp_path: Path, work: parts.Work) -> tuple[parts.Helpers, Path]:
    out = fresh(tmp_path / "doc.tif")
    return parts.Helpers(out, [range(0, 8), range(8, 16)], work), out


def _record_pid(folder: Path) -> None:
    (folder / f"pid-{os.getpid()}").write_text("")


def _gone(pid: int) -> bool:
    """The process has ended (and was reaped, or waits as a zombie for its new parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_documents_fault_in_a_helper_fails_the_rasterising(tmp_path: Path) -> None:
    def work(run: range, out: Path) -> tuple[int, ...]:
        _record_pid(tmp_path)
        if run.start == 8:
            raise RasterFailure("pdfium cannot render page 12: Data format error")
        return (1,) * len(run)

    helpers, out = _helpers(tmp_path, work)
    with pytest.raises(RasterFailure, match="page 12: Data format error"), helpers:
        list(helpers.parts())
    pids = [int(path.name[4:]) for path in tmp_path.glob("pid-*")]
    assert len(pids) == 2 and all(_reaped(pid) for pid in pids)
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith("pid-")) \
        == [out.name]


def test_a_helper_that_dies_fails_the_rasterising_as_faxgws_fault(tmp_path: Path) -> None:
    def work(run: range, out: Path) -> tuple[int, ...]:
        _record_pid(tmp_path)
        os._exit(3)

    helpers, out = _helpers(tmp_path, work)
    with pytest.raises(RuntimeError, match=r"ended without a result \(exit code 3\)"), helpers:
        list(helpers.parts())
    pids = [int(path.name[4:]) for path in tmp_path.glob("pid-*")]
    assert pids and all(_reaped(pid) for pid in pids)
    assert not list(tmp_path.glob("*.part"))


def test_helpers_still_working_are_stopped_when_the_caller_gives_up(tmp_path: Path) -> None:
    def work(run: range, out: Path) -> tuple[int, ...]:
        _record_pid(tmp_path)
        time.sleep(60)
        return ()

    helpers, _ = _helpers(tmp_path, work)
    started = time.monotonic()
    with pytest.raises(_GaveUp), helpers:
        while len(list(tmp_path.glob("pid-*"))) < 2:
            time.sleep(0.01)
        raise _GaveUp  # as the rendering in this process failing would
    assert time.monotonic() - started < 10
    pids = [int(path.name[4:]) for path in tmp_path.glob("pid-*")]
    assert len(pids) == 2 and all(_reaped(pid) for pid in pids)
    assert not list(tmp_path.glob("*.part"))


def test_a_helper_ends_with_its_parent(tmp_path: Path) -> None:
    # A render process killed for taking too long (SIGKILL: nothing of it runs any more)
    # must not leave its helpers rasterising.
    code = f"""
import os, signal, sys, time
from pathlib import Path
from faxgw.render import parts

folder = Path({str(tmp_path)!r})

def work(run, out):
    (folder / f"pid-{{os.getpid()}}").write_text("")
    time.sleep(60)
    return ()

out = folder / "doc.tif"
out.write_bytes(b"")
with parts.Helpers(out, [range(0, 8)], work) as helpers:
    while not list(folder.glob("pid-*")):
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == -signal.SIGKILL, result.stderr
    [pid_file] = tmp_path.glob("pid-*")
    helper = int(pid_file.name[4:])
    deadline = time.monotonic() + 10
    while not _gone(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(helper)
    # Its file went with it; the TIFF the dead parent was writing is all that is left.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["doc.tif", pid_file.name]
