"""Real test documents, generated at test time (no binary fixtures in the repository).

Every helper writes a file to the path it is given and returns that path. Documents are
deterministic (fixed seeds, no dates where the library allows it) and small, so tests stay fast.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject, NumberObject, RectangleObject

A4 = (595.28, 841.89)
LETTER = (612.0, 792.0)
_FIXED_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def text_pdf(
    path: Path,
    pages: int = 1,
    size: tuple[float, float] = A4,
    *,
    label: str = "Page",
) -> Path:
    """A vector PDF with ``pages`` pages of ``size`` points, each saying "<label> N"."""
    pdf = FPDF(unit="pt", format=size)
    pdf.set_creation_date(_FIXED_DATE)  # the same bytes every run
    pdf.set_font("Helvetica", size=24)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.text(72, 144, f"{label} {number}")
        pdf.rect(36, 36, size[0] - 72, size[1] - 72)
    path.write_bytes(bytes(pdf.output()))
    return path


def letter_pdf(path: Path, pages: int = 1) -> Path:
    """A US Letter PDF (612 x 792 pt)."""
    return text_pdf(path, pages, LETTER, label="Letter page")


def boxed_pdf(
    path: Path,
    *,
    mediabox: tuple[float, float, float, float],
    rotate: int = 0,
    cropbox: tuple[float, float, float, float] | None = None,
) -> Path:
    """A one-page PDF with the given boxes and ``/Rotate``, a little text inside the box."""
    left, bottom, right, top = mediabox
    source = text_pdf(path, 1, (right - left, top - bottom), label="Boxed")
    writer = PdfWriter(clone_from=PdfReader(source))
    page = writer.pages[0]
    # Shift the drawing with the box, as a real offset page has its content inside its box.
    page.add_transformation((1, 0, 0, 1, left, bottom))
    page.mediabox = RectangleObject(mediabox)
    if cropbox is not None:
        page.cropbox = RectangleObject(cropbox)
    if rotate:
        page[NameObject("/Rotate")] = NumberObject(rotate)
    writer.write(path)
    return path


def encrypted_pdf(
    path: Path,
    source: Path,
    *,
    user_password: str = "",
    owner_password: str = "owner-secret",
    algorithm: str = "AES-256",
) -> Path:
    """``source`` encrypted; an empty ``user_password`` opens without asking (owner-only)."""
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm=algorithm)
    writer.write(path)
    return path


def pdf_without_pages(path: Path) -> Path:
    """A well-formed PDF whose page tree is empty."""
    writer = PdfWriter()
    writer.write(path)
    return path


def pdf_with_lost_pages(path: Path) -> Path:
    """A PDF whose page tree says 3 pages but holds 2 (as a badly repaired file does)."""
    writer = PdfWriter(clone_from=PdfReader(text_pdf(path, 2)))
    pages_root = writer.root_object["/Pages"].get_object()
    assert isinstance(pages_root, DictionaryObject)
    pages_root[NameObject("/Count")] = NumberObject(3)
    writer.write(path)
    return path


def incrementally_updated_pdf(path: Path, source: Path) -> tuple[Path, int]:
    """``source`` plus an incremental update adding a page; returns the path and where the
    update starts (byte offset), so a test can cut inside the update."""
    original = source.read_bytes()
    writer = PdfWriter(io.BytesIO(original), incremental=True)
    writer.add_blank_page(*A4)
    buffer = io.BytesIO()
    writer.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path, len(original)


def linearized_claiming(path: Path, source: Path, length: int) -> Path:
    """``source`` with a linearization dictionary stating a file ``length`` it does not have."""
    data = source.read_bytes()
    header_end = data.index(b"\n") + 1
    fake = b"99 0 obj\n<< /Linearized 1 /L %d /N 1 >>\nendobj\n" % length
    path.write_bytes(data[:header_end] + fake + data[header_end:])
    return path


def truncated(path: Path, source: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``source``, as an interrupted transfer leaves it."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def damaged(path: Path, source: Path, *, seed: int, flips: int = 8) -> Path:
    """``source`` with ``flips`` bytes overwritten at random places (deterministic by seed)."""
    data = bytearray(source.read_bytes())
    rng = random.Random(seed)
    for _ in range(flips):
        data[rng.randrange(len(data))] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def garbage(path: Path, size: int = 4096, *, seed: int = 1) -> Path:
    """Random bytes (with NULs and control bytes, like any binary)."""
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def zip_archive(path: Path, members: dict[str, bytes] | None = None) -> Path:
    """A ZIP archive (``members`` maps names to contents)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in (members or {"readme.txt": b"hello " * 100}).items():
            archive.writestr(name, content)
    return path


_BLACK: dict[str, int | tuple[int, ...]] = {
    "1": 0,
    "L": 0,
    "P": 0,
    "RGB": (0, 0, 0),
    "RGBA": (0, 0, 0, 255),
}


def _drawing(mode: str, size: tuple[int, int], background: int | tuple[int, ...]) -> Image.Image:
    """An image of ``mode`` with a black box in the middle third."""
    image = Image.new(mode, size, background)
    width, height = size
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    ImageDraw.Draw(image).rectangle(box, fill=_BLACK[mode])
    return image


def rgba_png(path: Path, size: tuple[int, int] = (300, 200)) -> Path:
    """An RGBA PNG: black box on a fully transparent *black* background.

    Flattened wrongly (alpha dropped) the background turns black; flattened onto white it is
    white. Tests read the corner pixel back to tell.
    """
    _drawing("RGBA", size, (0, 0, 0, 0)).save(path, format="PNG", dpi=(150, 150))
    return path


def la_png(path: Path, size: tuple[int, int] = (200, 200)) -> Path:
    """A greyscale PNG with alpha (mode LA), background transparent black."""
    _drawing("RGBA", size, (0, 0, 0, 0)).convert("LA").save(path, format="PNG")
    return path


def palette_png_with_transparency(path: Path, size: tuple[int, int] = (200, 100)) -> Path:
    """A palette PNG whose background index is transparent (tRNS)."""
    image = Image.new("P", size, 1)
    image.putpalette([0, 0, 0, 0, 0, 0] + [255, 255, 255] * 254)
    ImageDraw.Draw(image).rectangle((50, 25, 150, 75), fill=0)
    image.save(path, format="PNG", transparency=1)
    return path


def gif(
    path: Path,
    *,
    frames: int = 1,
    transparent: bool = True,
    size: tuple[int, int] = (160, 120),
) -> Path:
    """A (possibly animated) GIF; with ``transparent``, the background index is transparent."""
    images = []
    for number in range(frames):
        image = Image.new("P", size, 1)
        image.putpalette([0, 0, 0, 0, 0, 0] + [200, 200, 200] * 254)
        ImageDraw.Draw(image).rectangle((10 + 10 * number, 10, 60 + 10 * number, 60), fill=0)
        images.append(image)
    if transparent:
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], transparency=1)
    else:
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:])
    return path


def bmp(path: Path, *, mode: str = "RGB", size: tuple[int, int] = (240, 160)) -> Path:
    """A BMP image (``mode`` RGB, L or 1)."""
    backgrounds: dict[str, int | tuple[int, ...]] = {"1": 1, "L": 255, "RGB": (255, 255, 255)}
    image = _drawing(mode, size, backgrounds[mode])
    image.save(path, format="BMP")
    return path


def jpeg(
    path: Path,
    size: tuple[int, int] = (400, 200),
    *,
    orientation: int | None = None,
    dpi: tuple[int, int] = (200, 200),
) -> Path:
    """A greyscale JPEG; with ``orientation``, the EXIF orientation tag a phone camera writes."""
    image = _drawing("L", size, 255)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, format="JPEG", quality=80, dpi=dpi, exif=exif.tobytes())
    return path


def fax_tiff(
    path: Path,
    pages: int = 3,
    *,
    size: tuple[int, int] = (1728, 1100),
    dpi: tuple[float, float] = (204, 98),
    compression: str = "group4",
) -> Path:
    """A bilevel multi-page TIFF as fax software writes it (G4/G3, non-square dpi)."""
    frames = []
    for number in range(pages):
        image = Image.new("1", size, 1)
        draw = ImageDraw.Draw(image)
        draw.rectangle((100, 100 + 50 * number, 800, 300 + 50 * number), fill=0)
        frames.append(image)
    frames[0].save(
        path,
        format="TIFF",
        compression=compression,
        dpi=dpi,
        save_all=True,
        append_images=frames[1:],
    )
    return path


def rgba_tiff(path: Path, pages: int = 2, size: tuple[int, int] = (300, 400)) -> Path:
    """A multi-page RGBA TIFF (transparency on every page)."""
    frames = [_drawing("RGBA", size, (0, 0, 0, 0)) for _ in range(pages)]
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:], dpi=(100, 100))
    return path


def grey16_png(path: Path, size: tuple[int, int] = (120, 80)) -> Path:
    """A 16-bit greyscale PNG with a mid-grey background."""
    image = Image.new("I;16", size, 32768)
    image.save(path, format="PNG")
    return path


def png_bomb(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A tiny PNG claiming ``width`` x ``height`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    data = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def text_file(path: Path, text: str, *, encoding: str = "utf-8", bom: bool = False) -> Path:
    """A plain text file in ``encoding`` (UTF-8 with ``bom`` writes the signature first)."""
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    return path


def copy(path: Path, source: Path) -> Path:
    """``source``'s bytes under another name (to mislabel a file)."""
    path.write_bytes(source.read_bytes())
    return path
