"""Where a fax page's CPU goes: each stage of faxgw's rasterising against Ghostscript's whole page.

``bench/rasterise.py`` times the whole conversion; this takes it apart. One thread, one
process, no helpers: each page of the generated text PDF goes through the stages faxgw's
rasteriser runs (:mod:`faxgw.render.raster`), each timed on its own in CPU seconds:

* ``open page``: pdfium loads and parses the page;
* ``render``: pdfium draws it in grey at 204 × 196 dpi into the fax line;
* ``threshold``: the grey page to packed bits (numpy);
* ``clear bitmap``: the bitmap cleared for the next page;
* ``code group3`` / ``code group4``: libtiff codes the bits and writes the page.

Ghostscript's anchor is its CPU per page for the whole conversion, start-up included (what
HylaFAX runs: ``-sDEVICE=tiffg3`` / ``tiffg4``, ``-r204x196``, ``-dPDFFitPage``), when ``gs``
is installed. Each figure is the median of ``--repeat`` passes over the document, alternating
with Ghostscript's runs.

    .venv/bin/python bench/raster_stages.py                 # 100 pages, 5 passes
    .venv/bin/python bench/raster_stages.py --pages 30 --repeat 3 --json

``FAXGW_BENCH_SRC`` points at another copy of faxgw (the folder holding its ``faxgw/``) to
measure it instead of this checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SOURCE = Path(os.environ.get("FAXGW_BENCH_SRC", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(SOURCE))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The same document, and the same Ghostscript command, as bench/rasterise.py.
from rasterise import gs_command, text_pdf  # noqa: E402

STAGES = ("open page", "render", "threshold", "clear bitmap", "code group3", "code group4")


def faxgw_pass(pdf: Path, root: Path) -> dict[str, float]:
    """One pass over ``pdf``: each stage's CPU seconds per page (both codings of each page)."""
    import pypdfium2 as pdfium

    from faxgw.render import raster
    from faxgw.render.libtiff import FaxTiffWriter

    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time
    with contextlib.ExitStack() as stack:
        document = pdfium.PdfDocument(str(pdf))
        stack.callback(document.close)
        document.init_forms()
        bitmaps = raster._Bitmaps()
        stack.callback(bitmaps.close)  # after the writers, which use the pages' bits
        pages = len(document)
        writers = {}
        for compression in ("group3", "group4"):
            out = root / f"stages-{compression}.tif"
            out.touch()
            writers[compression] = stack.enter_context(FaxTiffWriter(
                out, compression=compression, pages=pages, width=raster.FAX_WIDTH,
                dpi=(raster.X_DPI, raster.Y_DPI)))
        for index in range(pages):
            start = clock()
            page = document[index]
            spent["open page"] += clock() - start
            start = clock()
            grey, release = raster._render_at_fax_resolution(page, bitmaps)
            spent["render"] += clock() - start
            page.close()
            start = clock()
            bits = raster.bilevel(grey)
            spent["threshold"] += clock() - start
            start = clock()
            release()
            spent["clear bitmap"] += clock() - start
            for compression, writer in writers.items():
                scratch = bits.copy()  # libtiff may use the page as scratch space
                start = clock()
                writer.add_page(scratch.data, scratch.shape[0])
                spent[f"code {compression}"] += clock() - start
    return {stage: seconds / pages for stage, seconds in spent.items()}


def gs_cpu(pdf: Path, out: Path, device: str) -> float:
    """Ghostscript's CPU seconds for the whole conversion (from ``wait4``)."""
    process = subprocess.Popen(gs_command(pdf, out, device), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"gs {device} failed")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gs = shutil.which("gs") is not None
    passes: list[dict[str, float]] = []
    anchors: dict[str, list[float]] = {"tiffg3": [], "tiffg4": []}
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as folder:
        root = Path(folder)
        pdf = root / "long.pdf"
        text_pdf(pdf, args.pages)
        faxgw_pass(pdf, root)  # warm: the fonts, pdfium's caches, libtiff loaded
        for _ in range(args.repeat):
            passes.append(faxgw_pass(pdf, root))
            for device in anchors if gs else ():
                anchors[device].append(gs_cpu(pdf, root / f"gs-{device}.tif", device)
                                       / args.pages)
    ms = {stage: round(statistics.median(each[stage] for each in passes) * 1000, 2)
          for stage in STAGES}
    results: dict[str, Any] = {"source": str(SOURCE), "pages": args.pages,
                               "ghostscript": gs, "faxgw_ms_per_page": ms}
    for compression, device in (("group3", "tiffg3"), ("group4", "tiffg4")):
        total = sum(ms[stage] for stage in STAGES if not stage.startswith("code")) \
            + ms[f"code {compression}"]
        results[f"faxgw {compression} ms per page"] = round(total, 2)
        if gs:
            results[f"gs {device} ms per page"] = round(
                statistics.median(anchors[device]) * 1000, 2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"faxgw from {SOURCE}; {args.pages} pages, median of {args.repeat} passes; "
          f"Ghostscript {'found' if gs else 'not installed'}\n\nCPU ms per page, one thread:")
    for stage, value in ms.items():
        print(f"  {stage:<28} {value:>6.2f}")
    for compression, device in (("group3", "tiffg3"), ("group4", "tiffg4")):
        print(f"  {'faxgw ' + compression + ', all stages':<28} "
              f"{results[f'faxgw {compression} ms per page']:>6.2f}")
        if gs:
            print(f"  {'gs ' + device + ', whole run':<28} "
                  f"{results[f'gs {device} ms per page']:>6.2f}")


if __name__ == "__main__":
    main()
