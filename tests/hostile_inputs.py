"""Hostile drops: hundreds of bad inputs, made at test time, dropped as users and scanners do.

Every generator writes straight into a spool's ``outgoing/`` and returns what it dropped, one
:class:`Drop` per item the gateway must answer (a job, failed or sent). Deterministic: fixed
seeds, no clock. Kinds: truncated and bit-flipped copies of the samples, random bytes under
every document name, images declaring huge sizes, PDFs that expand enormously or claim
thousands of pages, empty and oversized files, names with control characters and odd
Unicode, links (symbolic and hard) to a secret, FIFOs, folders where files belong, and
manifests broken every way a manifest can be.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import documents as docs

SAMPLES = ("letter.pdf", "scan.jpg", "logo.png", "fax-g4.tif", "note.txt")
NUMBER = "+4930123456"


@dataclass(frozen=True, slots=True)
class Drop:
    """One dropped item: what it is, and where (relative to ``outgoing/``)."""

    kind: str
    where: str


def _number_dir(outgoing: Path, index: int) -> Path:
    # Several number folders, so that one folder's trouble is not everyone's.
    folder = outgoing / f"+49301234{index % 7:03d}"
    folder.mkdir(exist_ok=True)
    return folder


def _put(outgoing: Path, index: int, name: str, data: bytes, kind: str) -> Drop:
    folder = _number_dir(outgoing, index)
    (folder / name).write_bytes(data)
    return Drop(kind, f"{folder.name}/{name}")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _huge_images() -> Iterator[tuple[str, bytes]]:
    """Headers that declare far more pixels than any page (decompression bombs)."""
    for width, height in ((100_000, 100_000), (65_535, 65_535), (1, 2_000_000_000 // 8)):
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        yield (f"bomb-{width}x{height}.png", b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
               + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _chunk(b"IEND", b""))
    gif = b"GIF89a" + struct.pack("<HH", 65_535, 65_535) + b"\x00\x00\x00" + b"\x3b"
    yield "bomb.gif", gif
    bmp_header = struct.pack("<2sIHHI", b"BM", 62, 0, 0, 62)
    dib = struct.pack("<IiiHHIIiiII", 40, 60_000, 60_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    yield "bomb.bmp", bmp_header + dib + b"\x00" * 16
    tiff = (b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 4)
            + struct.pack("<HHII", 256, 4, 1, 200_000)      # ImageWidth
            + struct.pack("<HHII", 257, 4, 1, 200_000)      # ImageLength
            + struct.pack("<HHII", 258, 3, 1, 8)            # BitsPerSample
            + struct.pack("<HHII", 273, 4, 1, 8) + b"\x00\x00\x00\x00")
    yield "bomb.tif", tiff
    yield "bomb.jpg", (b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 65_000, 65_000)
                       + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9")


def _pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF file from numbered object bodies, with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, xref)
    return bytes(out)


def _hostile_pdfs() -> Iterator[tuple[str, bytes]]:
    """PDFs built to cost: a content stream inflating to 256 MB, a page tree claiming 10^6
    pages, a self-referencing page tree, deep nesting, an image XObject 10^5 px square."""
    catalog = b"<< /Type /Catalog /Pages 2 0 R >>"
    bomb = zlib.compress(b"0 0 m " * (256 * 1024 * 1024 // 6), 9)
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>"
    yield "inflate-bomb.pdf", _pdf([
        catalog, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page,
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(bomb) + bomb + b"\nendstream"])
    yield "million-pages.pdf", _pdf([
        catalog, b"<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>", page,
        b"<< /Length 0 >>\nstream\n\nendstream"])
    yield "loop-tree.pdf", _pdf([
        catalog, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"])
    nested = b"[" * 5000 + b"]" * 5000
    yield "deep-nesting.pdf", _pdf([
        catalog, b"<< /Type /Pages /Kids [3 0 R] /Count 1 /Deep " + nested + b" >>", page,
        b"<< /Length 0 >>\nstream\n\nendstream"])
    image = zlib.compress(b"\x00" * (1024 * 1024), 9)
    yield "huge-image.pdf", _pdf([
        catalog, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /XObject << /Im0 5 0 R >> >> >>",
        b"<< /Length 22 >>\nstream\n595 0 0 842 0 0 cm /Im0 Do\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width 100000 /Height 100000 /ColorSpace"
        b" /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
        % len(image) + image + b"\nendstream"])
    yield "no-root.pdf", b"%PDF-1.4\ntrailer\n<< /Size 1 >>\n%%EOF\n"
    yield "header-only.pdf", b"%PDF-1.7\n"


def document_drops(outgoing: Path, samples: Path, *, oversize: int) -> list[Drop]:
    """Bad documents in number folders: one job each."""
    drops: list[Drop] = []
    index = 0

    def put(name: str, data: bytes, kind: str) -> None:
        nonlocal index
        drops.append(_put(outgoing, index, f"{index:04d}-{name}", data, kind))
        index += 1

    for sample in SAMPLES:
        data = (samples / sample).read_bytes()
        for step in range(1, 21):  # 5 % … 100 % minus one byte
            put(f"cut{step}-{sample}", data[: max(0, len(data) * step // 20 - 1)], "truncated")
        for seed in range(60):
            flipped = bytearray(data)
            rng = random.Random(seed * 7919 + len(sample))
            for _ in range(1 + seed % 16):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            put(f"flip{seed}-{sample}", bytes(flipped), "bit-flipped")
    for number, suffix in enumerate((".pdf", ".jpg", ".png", ".tif", ".gif", ".bmp", ".txt",
                                     ".jpeg", ".tiff", "") * 3):
        put(f"noise{number}{suffix}", random.Random(number).randbytes(64 + number * 97),
            "random bytes")
    for name, data in _huge_images():
        put(name, data, "huge declared image")
    for name, data in _hostile_pdfs():
        put(name, data, "costly PDF")
    for suffix in (".pdf", ".jpg", ".png", ".txt", ".tif"):
        put(f"empty{suffix}", b"", "empty file")
    folder = _number_dir(outgoing, index)
    for number in range(2):
        path = folder / f"{index:04d}-oversize{number}.pdf"
        with path.open("wb") as file:  # sparse: big to the gateway, nothing on disk
            file.write(b"%PDF-1.4\n")
            file.truncate(oversize + 1 + number)
        drops.append(Drop("over max_input_bytes", f"{folder.name}/{path.name}"))
        index += 1
    text = docs.text_pdf(outgoing.parent / "tmp-source.pdf").read_bytes()
    (outgoing.parent / "tmp-source.pdf").unlink()
    for name in ("line\nbreak.pdf", "carriage\rreturn.pdf", "tab\there.pdf", "bell\x07.pdf",
                 "escape\x1b[31m.pdf", "del\x7f.pdf", "c1\x85.pdf", "sep\u2028.pdf",
                 "para\u2029.pdf"):
        put(name, text, "control character in the name")
    for name in ("\u202eevil-fdp.pdf", "e\u0301\u0301\u0301.pdf", "\U0001f4e0fax.pdf",
                 "zero\u200bwidth.pdf", "\ufeffbom.pdf", "x" * 240 + ".pdf"):
        put(name, text, "odd name")
    folder = _number_dir(outgoing, index)
    raw = os.fsencode(folder) + b"/" + b"%04d-latin1-\xe9\xff.pdf" % index
    with open(raw, "wb") as file:  # not UTF-8: the name is bytes the gateway cannot decode
        file.write(text)
    drops.append(Drop("undecodable name", f"{folder.name}/{os.fsdecode(raw).rsplit('/', 1)[1]}"))
    return drops


def special_drops(outgoing: Path, secret: Path) -> list[Drop]:
    """Links, hard links, FIFOs, sockets-to-be and folders where documents belong."""
    drops: list[Drop] = []
    folder = outgoing / "+4989765432"
    folder.mkdir(exist_ok=True)
    makers: list[tuple[str, str, Callable[[Path], None]]] = [
        ("symlink to the secret", "secret.txt", lambda p: p.symlink_to(secret)),
        ("symlink to /etc/passwd", "passwd.txt", lambda p: p.symlink_to("/etc/passwd")),
        ("dangling symlink", "gone.pdf", lambda p: p.symlink_to(secret.parent / "nothing")),
        ("symlink to a folder", "folder.pdf", lambda p: p.symlink_to(secret.parent)),
        ("relative symlink", "up.txt", lambda p: p.symlink_to("../../" + secret.name)),
        ("hard link to the secret", "hard.txt", lambda p: os.link(secret, p)),
        ("FIFO", "pipe.pdf", lambda p: os.mkfifo(p)),
        ("FIFO", "pipe.txt", lambda p: os.mkfifo(p)),
        ("FIFO", "pipe", lambda p: os.mkfifo(p)),
        ("folder in a number folder", "sub.pdf", lambda p: p.mkdir()),
        ("folder with a file in it", "deeper", lambda p: (p.mkdir(), (p / "x.pdf").write_text(
            "x"))),
    ]
    for number, (kind, name, make) in enumerate(makers):
        make(folder / f"{number:02d}-{name}")
        drops.append(Drop(kind, f"{folder.name}/{number:02d}-{name}"))
    link = outgoing / "+4940123456"
    link.symlink_to(secret.parent)
    drops.append(Drop("number folder that is a symlink", link.name))
    (outgoing / "not-a-number").mkdir()
    (outgoing / "not-a-number" / "a.txt").write_text("hello")
    drops.append(Drop("folder name that is no number", "not-a-number/a.txt"))
    bad = outgoing / "+49 30 12\n34"
    bad.mkdir()
    (bad / "a.txt").write_text("hello")
    drops.append(Drop("control character in the number folder", "+49 30 12\\n34/a.txt"))
    return drops


def manifest_drops(outgoing: Path, secret: Path) -> list[Drop]:
    """Manifests broken every way: each is one job (failed, or sent when it is sound)."""
    drops: list[Drop] = []
    doc = outgoing / "doc-for-manifests.txt"
    doc.write_text("A page for the manifests that name it.\n")

    def manifest(name: str, text: str | bytes, kind: str) -> None:
        path = outgoing / f"{len(drops):03d}-{name}.fax"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        drops.append(Drop(kind, path.name))

    to = f'to = "{NUMBER}"\n'
    manifest("nul-name", to + 'files = ["a\\u0000b"]\n', "NUL in a file name")
    manifest("long-name", to + f'files = ["{"n" * 300}.pdf"]\n', "file name over 255 bytes")
    manifest("traversal", to + 'files = ["../state/faxgw.db"]\n', "path traversal")
    manifest("absolute", to + 'files = ["/etc/passwd"]\n', "absolute path")
    manifest("hidden", to + 'files = [".hidden"]\n', "hidden file")
    manifest("folder", to + 'files = ["+4989765432"]\n', "names a number folder")
    manifest("missing", to + 'files = ["not-there.pdf"]\n', "names a missing file")
    manifest("itself", to + 'files = ["other.fax"]\n', "names a manifest")
    manifest("twice", to + 'files = ["x.pdf", "x.pdf"]\n', "names a file twice")
    manifest("empty-list", to + "files = []\n", "no files")
    manifest("no-to", 'files = ["doc-for-manifests.txt"]\n', "no number")
    manifest("bad-to", 'to = "12"\nfiles = ["doc-for-manifests.txt"]\n', "invalid number")
    manifest("int-to", 'to = 4930123456\nfiles = ["doc-for-manifests.txt"]\n', "number not text")
    manifest("emergency", 'to = "112"\nfiles = ["doc-for-manifests.txt"]\n', "emergency number")
    manifest("crlf-subject", to + 'files = ["doc-for-manifests.txt"]\n'
             'subject = "Hi\\r\\nBcc: victim@example.com"\n', "header injection in the subject")
    manifest("nul-note", to + 'files = ["doc-for-manifests.txt"]\nnote = "a\\u0000b"\n',
             "NUL in the note")
    manifest("crlf-sender", to + 'files = ["doc-for-manifests.txt"]\n'
             'sender = "ceo@contoso.com\\r\\nX: y"\n', "header injection in the sender")
    manifest("sender", to + 'files = ["doc-for-manifests.txt"]\nsender = "ceo@contoso.com"\n',
             "sender not allowed")
    manifest("cover", to + 'files = ["doc-for-manifests.txt"]\ncover = "yes"\n', "bad cover")
    manifest("extra-key", to + 'files = ["doc-for-manifests.txt"]\nbcc = "x@example.com"\n',
             "unknown key")
    manifest("files-text", to + 'files = "doc-for-manifests.txt"\n', "files not a list")
    manifest("files-ints", to + "files = [1, 2]\n", "files not text")
    for number, text in enumerate(("to = ", "[[[", "to = \"+49\" files", "\x00\x01\x02",
                                   "to = '''unterminated", "= 1", "to = \"+49\"\nto = \"+48\"\n",
                                   "files = [" * 200)):
        manifest(f"toml{number}", text, "not TOML")
    manifest("latin1", "to = \"+49301234\"\nsubject = \"Gr\xfc\xdfe\"\n".encode("latin-1"),
             "not UTF-8")
    manifest("garbage", random.Random(5).randbytes(2048), "random bytes")
    manifest("empty", "", "empty manifest")
    manifest("bom", "\ufeff" + to + 'files = ["doc-for-manifests.txt"]\n', "BOM")
    link = outgoing / f"{len(drops):03d}-link.fax"
    link.symlink_to(secret)
    drops.append(Drop("manifest that is a symlink", link.name))
    fifo = outgoing / f"{len(drops):03d}-pipe.fax"
    os.mkfifo(fifo)
    drops.append(Drop("manifest that is a FIFO", fifo.name))
    folder = outgoing / f"{len(drops):03d}-folder.fax"
    folder.mkdir()
    drops.append(Drop("manifest that is a folder", folder.name))
    secret_link = outgoing / "secret-link.txt"
    secret_link.symlink_to(secret)
    manifest("names-a-link", to + 'files = ["secret-link.txt"]\n', "names a symlink")
    return drops
