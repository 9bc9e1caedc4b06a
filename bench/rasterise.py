"""Rasterising a PDF to a fax TIFF: faxgw against Ghostscript, in the same run.

faxgw's path is the whole of :func:`faxgw.render.tiff.pdf_to_tiff` (the TIFF written page by
page, read back and checked, fsynced and renamed into place), given the PDF's page count as a
job's attachment and ``faxgw preview`` give it (counted when the PDF was made), measured two
ways:

* ``render process``: as a job uses it, in a render process (``rasterise_here``) that was
  started, and imported its libraries, before the clock, as ``faxgw run`` starts them once;
* ``own process``: as ``faxgw preview`` uses it, in a rasterising process started per call
  (``spawn``: a Python start and the imports are part of the figure).

Ghostscript's anchor is what HylaFAX runs (``-sDEVICE=tiffg3`` / ``tiffg4``, ``-r204x196``,
``-dPDFFitPage``), when ``gs`` is installed: a process per call, as faxgw's ``own process``.
Both get the same generated text PDF; each figure is the median of ``--repeat`` runs,
alternating. For each: seconds, pages per second, CPU seconds (every process and thread of
the conversion) and peak resident memory.

    .venv/bin/python bench/rasterise.py                 # 100 pages and a 2-page letter
    .venv/bin/python bench/rasterise.py --pages 30 --repeat 5 --json

``FAXGW_BENCH_SRC`` points at another copy of faxgw (the folder holding its ``faxgw/``) to
measure it instead of this checkout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

SOURCE = Path(os.environ.get("FAXGW_BENCH_SRC", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(SOURCE))

#: One measurement: wall seconds, CPU seconds, peak RSS in KiB (0: not measured).
Figure = tuple[float, float, int]


def text_pdf(path: Path, pages: int) -> None:
    """A text document of ``pages`` A4 pages, 50 lines each."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_font("helvetica", size=11)
    for number in range(pages):
        pdf.add_page()
        for line in range(50):
            pdf.cell(0, 5, f"Page {number + 1}, line {line + 1}: the quick brown fox jumps "
                           "over the lazy dog, 0123456789.", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def _peak_kib() -> int:
    """This process's peak resident set since the last reset (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass  # not Linux, or not allowed: the peak is then since the process started


def _render_process(conn: Connection) -> None:
    """A stand-in for a render process: imports, then converts what it is sent."""
    from faxgw.render import tiff

    tiff.rasterise_here()  # imported, and rasterising in itself, as a render process is
    conn.send("ready")
    while (task := conn.recv()) is not None:
        pdf, out, compression, pages = task
        _reset_peak()
        # Every thread of the process, and the helpers it forks for a long document.
        cpu, children, start = time.process_time(), _children_cpu(), time.perf_counter()
        tiff.pdf_to_tiff(Path(pdf), Path(out), compression=compression, pages=pages)
        conn.send((time.perf_counter() - start,
                   time.process_time() - cpu + _children_cpu() - children, _peak_kib()))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_own_process(pdf: Path, out: Path, compression: str, pages: int) -> Figure:
    from faxgw.render.tiff import pdf_to_tiff

    cpu, children, start = time.process_time(), _children_cpu(), time.perf_counter()
    pdf_to_tiff(pdf, out, compression=compression, pages=pages)
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu + _children_cpu() - children, 0


def gs_command(pdf: Path, out: Path, device: str) -> list[str]:
    """Ghostscript converting ``pdf`` to a fax TIFF at ``out`` as HylaFAX has it convert."""
    return ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", f"-sDEVICE={device}", "-r204x196",
            "-dPDFFitPage", f"-sOutputFile={out}", str(pdf)]


def time_gs(pdf: Path, out: Path, device: str) -> Figure:
    # GNU time reports gs's own peak memory; measured from here through wait4, it would
    # include this process's memory, which a forked child has until it runs gs.
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    report = out.with_suffix(".rss")
    command = gs_command(pdf, out, device)
    if timer:
        command = [timer, "-f", "%M", "-o", str(report), *command]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"gs {device} failed with exit code {process.returncode}")
    peak = int(report.read_text().split()[-1]) if timer else 0
    return wall, usage.ru_utime + usage.ru_stime, peak


def measure(root: Path, pdf: Path, repeat: int, gs: bool,
            worker: Connection) -> dict[str, list[Figure]]:
    """Every way of converting ``pdf``, ``repeat`` times, alternating."""
    from pypdf import PdfReader

    # A job's attachment comes with its page count, read when the PDF was made.
    pages = len(PdfReader(pdf).pages)
    figures: dict[str, list[Figure]] = {}
    for _ in range(repeat):
        for compression, device in (("group3", "tiffg3"), ("group4", "tiffg4")):
            worker.send((str(pdf), str(root / f"r-{compression}.tif"), compression, pages))
            figures.setdefault(f"render process {compression}", []).append(worker.recv())
            figures.setdefault(f"own process {compression}", []).append(
                time_own_process(pdf, root / f"o-{compression}.tif", compression, pages))
            if gs:
                figures.setdefault(f"gs {device}", []).append(
                    time_gs(pdf, root / f"g-{device}.tif", device))
    return figures


def summary(pages: int, figures: dict[str, list[Figure]]) -> dict[str, Any]:
    row: dict[str, Any] = {"pages": pages}
    for name, values in figures.items():
        wall = statistics.median(value[0] for value in values)
        peak = max(value[2] for value in values)
        row[name] = {"seconds": round(wall, 3), "pages_per_s": round(pages / wall, 1),
                     "cpu_s": round(statistics.median(value[1] for value in values), 3),
                     "peak_rss_mib": round(peak / 1024, 1)}
    for compression, device in (("group3", "tiffg3"), ("group4", "tiffg4")):
        if f"gs {device}" not in row:
            continue
        for way in ("render process", "own process"):
            row[f"faxgw/gs {way} {compression}"] = round(
                row[f"gs {device}"]["seconds"] / row[f"{way} {compression}"]["seconds"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gs = shutil.which("gs") is not None
    results: dict[str, Any] = {"source": str(SOURCE), "ghostscript": gs,
                               "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    context = multiprocessing.get_context("spawn")
    worker, their_end = context.Pipe()
    render_process = context.Process(target=_render_process, args=(their_end,), daemon=True)
    render_process.start()
    their_end.close()
    try:
        if worker.recv() != "ready":
            raise RuntimeError("the render process did not start")
        with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as folder:
            root = Path(folder)
            for label, pages in (("long", args.pages), ("letter", 2)):
                pdf = root / f"{label}.pdf"
                text_pdf(pdf, pages)
                figures = measure(root, pdf, args.repeat, gs, worker)
                results[label] = summary(pages, figures)
    finally:
        worker.send(None)
        render_process.join(10)
    results["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    report(results)


def report(results: dict[str, Any]) -> None:
    print(f"faxgw from {results['source']}; Ghostscript "
          f"{'found' if results['ghostscript'] else 'not installed'}; {results['cpus']} CPUs, "
          f"load {results['load_before']:.2f} before, {results['load_after']:.2f} after")
    for label in ("long", "letter"):
        row = results[label]
        print(f"\n{label}: {row['pages']} pages")
        print(f"  {'':<24} {'seconds':>8} {'pages/s':>8} {'CPU s':>7} {'peak RSS':>9}")
        for name, value in row.items():
            if isinstance(value, dict):
                peak = f"{value['peak_rss_mib']:>5.1f} MiB" if value["peak_rss_mib"] else "-"
                print(f"  {name:<24} {value['seconds']:>8.3f} {value['pages_per_s']:>8.1f} "
                      f"{value['cpu_s']:>7.3f} {peak:>9}")
        for name, value in row.items():
            if name.startswith("faxgw/gs"):
                print(f"  {name}: {value} (above 1: faxgw is faster)")
    print("\nPeak RSS: the render process's (reset before each conversion) and gs's (GNU time);"
          "\na spawned child's is not measured (a forked child counts its parent's memory).")


if __name__ == "__main__":
    main()
