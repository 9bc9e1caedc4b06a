"""Bounded input: a document over ``[limits] max_input_bytes`` is refused unread (413), an
image declaring more pixels than a fax page can use is refused undecoded (420), and no link
or pipe is followed or opened for reading.

"Unread" and "undecoded" are measured, not assumed: the peak memory of the process that
refuses the file stays far below what reading or decoding it takes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from faxgw.app.wiring import build_worker
from faxgw.domain import codes
from faxgw.domain.errors import DocumentError
from faxgw.domain.jobs import JobState
from faxgw.fax.profiles import format_bytes
from faxgw.render import render_pdf
from faxgw.render.images import MAX_PIXELS
from faxgw.testing.smtp_server import FaxSMTPServer

from . import documents as docs
from .conftest import MakeConfig

MIB = 1024 * 1024
NUMBER = "+4930123456"


def _failure(document: Path, code: int, **options: object) -> DocumentError:
    out = document.parent / "out.pdf"
    with pytest.raises(DocumentError) as caught:
        render_pdf([document], out, **options)  # type: ignore[arg-type]
    error = caught.value
    assert (error.code, error.filename) == (code, document.name), str(error)
    assert str(error).startswith(f"{document.name}: ")
    assert not out.exists()
    return error


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- size ----------------------------------------------------------------------------------


def test_a_file_over_max_input_bytes_fails_with_413_unread(tmp_path: Path) -> None:
    # 2 GiB that take no disk (sparse): read, they would raise this process's peak by 2 GiB.
    huge = tmp_path / "scan.pdf"
    with huge.open("wb") as file:
        file.truncate(2 * 1024 * MIB)
    before = _peak_rss_mib()
    error = _failure(huge, codes.INPUT_TOO_LARGE)
    assert _peak_rss_mib() - before < 100
    assert str(error) == ("scan.pdf: the file is 2048 MiB, larger than the limit of 50 MiB "
                          "([limits] max_input_bytes); it was not read")


def test_the_limit_is_exact_and_names_both_sizes(tmp_path: Path) -> None:
    page = docs.text_pdf(tmp_path / "page.pdf")
    size = page.stat().st_size
    assert render_pdf([page], tmp_path / "ok.pdf", max_input_bytes=size).pages == 1
    error = _failure(page, codes.INPUT_TOO_LARGE, max_input_bytes=size - 1)
    assert f"{size:,} bytes" in str(error) and f"{size - 1:,} bytes" in str(error)


def test_a_job_over_the_configured_limit_fails_413_and_keeps_its_original(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    scan = samples / "scan.jpg"  # 47 KB
    config = make_config(smtp_server, limits={"max_input_bytes": 20_000})
    worker = build_worker(config, render_processes=1)  # as faxgw run renders
    try:
        folder = worker.spool.layout.outgoing / NUMBER
        folder.mkdir(parents=True)
        shutil.copy(scan, folder / "scan.jpg")
        shutil.copy(samples / "note.txt", folder / "note.txt")  # 1 kB: within the limit
        summary = asyncio.run(worker.run_once())
        assert (summary.sent, summary.failed) == (1, 1)
        [failed] = worker.store.list_jobs([JobState.FAILED])
        assert failed.code == codes.INPUT_TOO_LARGE
        assert failed.error == (f"scan.jpg: the file is {format_bytes(scan.stat().st_size)}, "
                                "larger than the limit of 20 kB ([limits] max_input_bytes); "
                                "it was not read")
        kept = worker.spool.layout.failed / failed.id / "docs" / "scan.jpg"
        assert kept.read_bytes() == scan.read_bytes()
    finally:
        worker.close()


# --- what is opened -------------------------------------------------------------------------


def test_a_link_is_not_followed(tmp_path: Path, samples: Path) -> None:
    link = tmp_path / "letter.pdf"
    link.symlink_to(samples / "letter.pdf")
    error = _failure(link, codes.INPUT_REFUSED)
    assert "symbolic link" in str(error)


def test_a_pipe_in_a_documents_place_does_not_hang_the_render(tmp_path: Path) -> None:
    pipe = tmp_path / "scan.pdf"
    os.mkfifo(pipe)  # opened for reading without a writer, a plain open would wait forever
    error = _failure(pipe, codes.INPUT_REFUSED)
    assert "not a regular file" in str(error)


# --- pixels ---------------------------------------------------------------------------------


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid greyscale PNG of ``width`` x ``height`` white pixels, compressed to almost
    nothing: it decodes, whole, into ``width * height`` bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width  # filter type 0, then the row
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


# 108 million pixels: fewer than Pillow's own default limit (179 million) lets through.
BOMB = (12_000, 9_000)


def test_an_image_declaring_more_pixels_than_a_fax_page_fails_with_420(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "poster.png", *BOMB)
    assert bomb.stat().st_size < 200_000
    error = _failure(bomb, codes.TOO_LARGE)
    assert str(error) == ("poster.png: the document is too large to render (the image has "
                          "more than 50 million pixels, more than a fax page can use)")


def test_a_huge_later_frame_of_a_tiff_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # Pillow checks the first frame as it opens a file; the second is checked by faxgw.
    first = Image.new("1", (1728, 2200), 1)
    second = Image.new("1", (8_000, 7_000), 1)  # 56 million pixels
    path = tmp_path / "fax.tif"
    first.save(path, format="TIFF", compression="group4", save_all=True,
               append_images=[second])
    error = _failure(path, codes.TOO_LARGE)
    assert str(error) == ("fax.tif: the document is too large to render (the image is 8,000 x "
                          f"7,000 pixels, more than the {MAX_PIXELS // 1_000_000} million a fax "
                          "page can use)")


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so a child of the test run
# would report the test run's peak; VmHWM is the peak of this program's own memory.
_PEAK = """
import json, re, sys
from pathlib import Path
from faxgw.domain.errors import DocumentError
from faxgw.render import render_pdf
try:
    render_pdf([Path(sys.argv[1])], Path(sys.argv[2]))
    outcome = "rendered"
except DocumentError as error:
    outcome = error.code
status = Path("/proc/self/status").read_text()
print(json.dumps([outcome, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024]))
"""


def _render_elsewhere(document: Path) -> tuple[object, int]:
    """Render ``document`` in a fresh interpreter: its outcome and peak RSS in MiB."""
    done = subprocess.run([sys.executable, "-c", _PEAK, str(document),
                           str(document.with_suffix(".out.pdf"))],
                          capture_output=True, text=True, timeout=120, check=True)
    outcome, peak = json.loads(done.stdout)
    return outcome, peak


def test_refusing_an_image_bomb_allocates_nothing_of_it(tmp_path: Path) -> None:
    # The control shows the measure works: a 36 million pixel image within the limit
    # decodes, and the peak grows by its 34 MiB. The bomb, three times as large, must not
    # grow it at all: decoded, it would add 103 MiB.
    bomb_outcome, bomb_peak = _render_elsewhere(png_bomb(tmp_path / "bomb.png", *BOMB))
    control_outcome, control_peak = _render_elsewhere(png_bomb(tmp_path / "ok.png", 6_000,
                                                               6_000))
    assert (bomb_outcome, control_outcome) == (codes.TOO_LARGE, "rendered")
    assert control_peak - bomb_peak >= 30
