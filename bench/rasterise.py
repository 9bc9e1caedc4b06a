"""Rasterising a PDF to a fax TIFF: faxgw against Ghostscript, in the same run.

faxgw's path is the whole of :func:`faxgw.render.tiff.pdf_to_tiff` as a job uses it: a
rasterising process of its own, the TIFF written page by page, read back and checked, then
renamed into place. Ghostscript's anchor is what HylaFAX runs (``-sDEVICE=tiffg3`` /
``tiffg4``, ``-r204x196``, ``-dPDFFitPage``), when ``gs`` is installed. Both get the same
generated text PDF; each figure is the median of ``--repeat`` runs, alternating.

    .venv/bin/python bench/rasterise.py                 # 100 pages and a 2-page letter
    .venv/bin/python bench/rasterise.py --pages 30 --repeat 5 --json

``FAXGW_BENCH_SRC`` points at another copy of faxgw (the folder holding its ``faxgw/``) to
measure it instead of this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(os.environ.get("FAXGW_BENCH_SRC", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(SOURCE))

from faxgw.render.tiff import pdf_to_tiff  # noqa: E402


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


def child_peak_kib() -> int:
    """The largest resident set of any child process so far (KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def time_faxgw(pdf: Path, out: Path, compression: str) -> float:
    start = time.perf_counter()
    pdf_to_tiff(pdf, out, compression=compression)
    return time.perf_counter() - start


def time_gs(pdf: Path, out: Path, device: str) -> float:
    start = time.perf_counter()
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", f"-sDEVICE={device}",
                    "-r204x196", "-dPDFFitPage", f"-sOutputFile={out}", str(pdf)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gs = shutil.which("gs")
    results: dict[str, object] = {"source": str(SOURCE), "ghostscript": gs is not None}
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as folder:
        root = Path(folder)
        for label, pages in (("long", args.pages), ("letter", 2)):
            pdf = root / f"{label}.pdf"
            text_pdf(pdf, pages)
            figures: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                for compression in ("group3", "group4"):
                    figures.setdefault(f"faxgw {compression}", []).append(
                        time_faxgw(pdf, root / f"f-{compression}.tif", compression))
            # Read before Ghostscript runs: the largest child so far is a rasterising one.
            peak = child_peak_kib()
            for _ in range(args.repeat) if gs else ():
                for device in ("tiffg3", "tiffg4"):
                    figures.setdefault(f"gs {device}", []).append(
                        time_gs(pdf, root / f"g-{device}.tif", device))
            row: dict[str, object] = {"pages": pages}
            for name, values in figures.items():
                median = statistics.median(values)
                row[name] = {"seconds": round(median, 3), "pages_per_s": round(pages / median, 1)}
            if gs:
                for compression, device in (("group3", "tiffg3"), ("group4", "tiffg4")):
                    faxgw_s = statistics.median(figures[f"faxgw {compression}"])
                    gs_s = statistics.median(figures[f"gs {device}"])
                    row[f"faxgw/gs {compression}"] = round(gs_s / faxgw_s, 2)
            row["child_peak_rss_mib"] = round(peak / 1024, 1)
            results[label] = row
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"faxgw from {results['source']}; Ghostscript {'found' if gs else 'not installed'}")
    for label in ("long", "letter"):
        row = results[label]
        assert isinstance(row, dict)
        print(f"\n{label}: {row['pages']} pages")
        for name, value in row.items():
            if isinstance(value, dict):
                print(f"  {name:<14} {value['seconds']:>7.3f} s  {value['pages_per_s']:>7.1f} "
                      "pages/s")
        for name, value in row.items():
            if name.startswith("faxgw/gs"):
                print(f"  {name}: {value} (above 1: faxgw is faster)")
        print(f"  peak RSS of a rasterising process: {row['child_peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
