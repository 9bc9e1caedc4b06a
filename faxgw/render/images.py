"""Images (JPEG, PNG, TIFF, GIF, BMP) to PDF pages, fitted into the paper.

img2pdf embeds image data losslessly (JPEG and CCITT G4 pass through untouched), and it
honours a different horizontal and vertical resolution, which a fax TIFF at 204 x 196 dpi has:
the page keeps the document's real aspect. Pillow decodes every image first, because img2pdf
copies a JPEG without decoding it and would pass a truncated one on.

Pillow also prepares what img2pdf should not see as it is: transparency is flattened onto
white (a fax has no alpha, and img2pdf would add a soft mask), EXIF orientation is applied to
the pixels (so no page needs ``/Rotate``), and unusual modes are converted. Errors are not
translated here; :mod:`faxgw.render.pdf` does that at the document boundary.

An image is refused before it is decoded when it has more pixels than a fax page can use
(:data:`MAX_PIXELS`): a few kilobytes of PNG can declare a picture that takes gigabytes to
decode. Pillow's own limit is lowered to the same figure, for every image this process opens.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterator

import img2pdf  # type: ignore[import-untyped]
from PIL import Image

log = logging.getLogger("faxgw.render")

#: The most pixels an image (each frame of it) may have. The longest fax page in use, Legal
#: (8.5 x 14 in), at the finest resolution fax machines commonly offer ("ultra fine", T.30's
#: 16 pels/mm x 15.4 lines/mm, about 400 x 400 dpi) is 3,400 x 5,600 = 19 million pixels;
#: A4 is 16. 50 million leaves more than twice that, so a 600 dpi scan of a Legal page (5,100 x
#: 8,400 = 43 million), which office scanners make and people drop, still passes. Decoded,
#: 50 million pixels take 150 MB as RGB; Pillow's default limit (179 million, refused only
#: above that) lets one image take 540 MB as RGB, and more than 1 GB on its way to a page.
MAX_PIXELS = 50_000_000

# Pillow refuses images above twice MAX_IMAGE_PIXELS and warns above it. Its check runs when
# an image is opened, before anything is decoded, and covers every place an image is opened
# (img2pdf opens them again); made an error, its warning refuses what the check in
# image_to_pdf would refuse a moment later anyway, instead of printing a line on stderr.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

#: Pillow format names accepted for each kind: the content was sniffed already, and Pillow
#: must not reinterpret it as some other format.
PILLOW_FORMATS: dict[str, list[str]] = {
    "jpeg": ["JPEG", "MPO"],
    "png": ["PNG"],
    "tiff": ["TIFF"],
    "gif": ["GIF"],
    "bmp": ["BMP", "DIB"],
}

# Modes img2pdf embeds as they are (given no transparency).
_PLAIN_MODES = frozenset({"1", "L", "RGB", "CMYK", "P"})
# Modes with an alpha channel.
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
# Greyscale modes, flattened to greyscale rather than colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# EXIF orientations 5 to 8 turn the image by 90 degrees: width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
# What turns an image with EXIF orientation N upright (as Pillow's ImageOps.exif_transpose).
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: img2pdf's layout function: (width px, height px, (x dpi, y dpi)) -> page and image size.
LayoutFun = Callable[[int, int, tuple[float, float]], tuple[float, float, float, float]]


def image_to_pdf(data: bytes, kind: str, page_size: tuple[float, float]) -> bytes:
    """Return a PDF with the image ``data`` (of ``kind``) fitted into pages of ``page_size``.

    A multi-page TIFF gives one page per frame; of an animated GIF, a multi-picture JPEG (MPO)
    or an animated PNG only the first frame is a page, as a viewer shows it.
    """
    layout = img2pdf.get_layout_fun(page_size, fit=img2pdf.FitMode.into, auto_orient=False)
    try:
        opened = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's words name its own threshold (twice faxgw's); say it in faxgw's terms.
        raise Image.DecompressionBombError(
            f"the image has more than {MAX_PIXELS / 1e6:,.0f} million pixels, "
            "more than a fax page can use") from exc
    with opened as image:
        frame_count = getattr(image, "n_frames", 1) if kind == "tiff" else 1
        prepare = kind == "gif"  # img2pdf would make one page per GIF frame
        for frame in _frames(image, frame_count):
            # Pillow checks the size of the first frame as it opens the image; a TIFF's
            # later frames are checked here, before each is decoded.
            _check_pixels(frame)
            # A full decode: Pillow opens lazily, and a truncated file fails only here.
            frame.load()
            prepare = prepare or _needs_preparing(frame)
        if not prepare:
            try:
                return _convert([data], layout)
            except Exception as exc:  # any img2pdf refusal: re-encode below
                # Pillow decoded every frame, so the data is sound; img2pdf refuses some
                # valid layouts (odd TIFF compressions, bit depths). Re-encoded as PNG they pass.
                log.debug("img2pdf refused the image as it is (%r); re-encoding it", exc)
        sources = [_prepared_png(frame) for frame in _frames(image, frame_count)]
    return _convert(sources, layout)


def _check_pixels(frame: Image.Image) -> None:
    """Refuse a frame of more than :data:`MAX_PIXELS` pixels, before it is decoded."""
    width, height = frame.size
    if width * height > MAX_PIXELS:
        # Pillow's own exception: the document boundary turns it into a DocumentError.
        raise Image.DecompressionBombError(
            f"the image is {width:,} x {height:,} pixels, more than the "
            f"{MAX_PIXELS / 1e6:,.0f} million a fax page can use")


def _frames(image: Image.Image, count: int) -> Iterator[Image.Image]:
    for index in range(count):
        image.seek(index)
        yield image


def _convert(sources: list[bytes], layout: LayoutFun) -> bytes:
    # rotation=none: orientation was already applied to the pixels where it matters, and
    # img2pdf would otherwise set /Rotate on a page laid out for the unrotated image.
    # nodate and the internal engine keep the output the same from run to run.
    pdf = img2pdf.convert(
        *sources,
        layout_fun=layout,
        rotation=img2pdf.Rotation.none,
        nodate=True,
        engine=img2pdf.Engine.internal,
    )
    assert isinstance(pdf, bytes)
    return pdf


def _orientation(frame: Image.Image) -> int:
    try:
        value = frame.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block only loses the orientation, not the page
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _has_transparency(frame: Image.Image) -> bool:
    return frame.mode in _ALPHA_MODES or "transparency" in frame.info


def _needs_preparing(frame: Image.Image) -> bool:
    return frame.mode not in _PLAIN_MODES or _has_transparency(frame) or _orientation(frame) != 1


def _prepared_png(frame: Image.Image) -> bytes:
    """One frame as a PNG img2pdf embeds without soft mask or rotation, its dpi kept."""
    orientation = _orientation(frame)
    dpi = _dpi(frame)
    image = _flattened(frame)
    if orientation != 1:
        image = image.transpose(_UPRIGHT[orientation])
        if dpi is not None and orientation in _QUARTER_TURNS:
            dpi = (dpi[1], dpi[0])
    buffer = io.BytesIO()
    if dpi is not None:
        image.save(buffer, format="PNG", dpi=dpi)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _dpi(frame: Image.Image) -> tuple[float, float] | None:
    dpi = frame.info.get("dpi")
    try:
        x_dpi, y_dpi = (float(value) for value in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x_dpi, y_dpi) if x_dpi > 0 and y_dpi > 0 else None


def _flattened(frame: Image.Image) -> Image.Image:
    """A copy of ``frame`` in a mode PNG and img2pdf take, transparency put onto white."""
    image: Image.Image = frame
    if image.mode in _WIDE_GREY_MODES:
        # 16-bit greyscale: scale to 8 bits (a plain convert would clip everything to white).
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    if _has_transparency(frame) and image.mode != "1":
        grey = frame.mode in _GREY_MODES
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("L" if grey else "RGB")
    if image.mode == "P":
        return image.copy()
    if image.mode not in ("1", "L", "RGB"):
        # CMYK (PNG has no CMYK), YCbCr, LAB, HSV, RGBX: the fax is greyscale in the end.
        return image.convert("RGB")
    return image.copy()
