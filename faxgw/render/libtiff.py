"""Writing a multi-page CCITT fax TIFF with libtiff itself, through ctypes.

Pillow writes CCITT TIFFs through libtiff too, but only from its own images, which hold one
byte per pixel: it packs every page into bits pixel by pixel before libtiff sees it, and
cannot write WhiteIsZero without inverting the page first. Here libtiff is handed the page
as packed bits (ink as 1-bits, which is what WhiteIsZero means) and writes each page's
directory as it goes, so a page costs libtiff's CCITT coding and nothing else.

The library is the one Pillow is linked with (its wheels bring their own copy), found among
the libraries this process has loaded once Pillow's core is imported; a system libtiff is
the fallback. libtiff is a C library: every call is made with the argument types its
prototype states (``TIFFSetField`` is variadic, so each value is passed as the C type the
tag takes), and every failure it reports is raised as :class:`LibtiffError`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

#: TIFF tags written for each page (TIFF 6.0 numbers).
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
SOFTWARE = 305
SAMPLES_PER_PIXEL = 277
STRIP_OFFSETS = 273
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
X_RESOLUTION = 282
Y_RESOLUTION = 283
PLANAR_CONFIG = 284
RESOLUTION_UNIT = 296
PAGE_NUMBER = 297
#: Compression codes, by the names Pillow (and faxgw's profiles) use.
COMPRESSION_CODES = {"group3": 3, "group4": 4}
#: NewSubfileType bit 1: "a single page of a multi-page image" (TIFF 6.0, required by TIFF-F).
PAGE_OF_MULTIPAGE = 2
WHITE_IS_ZERO = 0
INCH = 2

#: What :meth:`FaxTiffWriter.add_page` takes: any writable buffer (a bytearray, an array).
Buffer: TypeAlias = "bytearray | memoryview"

_library: ctypes.CDLL | None = None


class LibtiffError(OSError):
    """libtiff could not be loaded, or reported a failure while writing."""


def _library_path() -> str | None:
    """The file of the libtiff Pillow uses (loaded with Pillow's core), else a system one."""
    from PIL import Image  # noqa: F401 - loads Pillow's core, and with it its libtiff

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and Path(fields[5].strip()).name.startswith("libtiff"):
                    return fields[5].strip()
    except OSError:
        pass  # not Linux: look the library up by name
    return ctypes.util.find_library("tiff")


def load() -> ctypes.CDLL:
    """libtiff, with the prototypes of the functions used here declared (once a process)."""
    global _library
    if _library is not None:
        return _library
    path = _library_path()
    if path is None:
        raise LibtiffError("libtiff was not found (Pillow's, or the system's)")
    try:
        library = ctypes.CDLL(path)
    except OSError as exc:
        raise LibtiffError(f"libtiff cannot be loaded: {exc}") from exc
    library.TIFFFdOpen.restype = ctypes.c_void_p
    library.TIFFFdOpen.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
    library.TIFFSetField.restype = ctypes.c_int
    library.TIFFWriteEncodedStrip.restype = ctypes.c_ssize_t
    library.TIFFWriteEncodedStrip.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                              ctypes.c_void_p, ctypes.c_ssize_t]
    library.TIFFWriteRawStrip.restype = ctypes.c_ssize_t
    library.TIFFWriteRawStrip.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p,
                                          ctypes.c_ssize_t]
    library.TIFFGetField.restype = ctypes.c_int
    library.TIFFWriteDirectory.restype = ctypes.c_int
    library.TIFFWriteDirectory.argtypes = [ctypes.c_void_p]
    library.TIFFClose.restype = None
    library.TIFFClose.argtypes = [ctypes.c_void_p]
    _library = library
    return library


class FaxTiffWriter:
    """A multi-page bilevel fax TIFF being written, one page at a time.

    ``compression`` is ``"group3"`` (T.4 1-D, MH) or ``"group4"`` (T.6, MMR); every page is
    1728 (or ``width``) pixels wide at ``dpi``, WhiteIsZero, one strip, and numbered out of
    ``pages``. Use as a context manager; :meth:`add_page` returns the coded size of the
    page, which the page's directory records (the read-back check compares them).
    """

    def __init__(self, path: Path, *, compression: str, pages: int, width: int,
                 dpi: tuple[int, int], software: str = "faxgw") -> None:
        if compression not in COMPRESSION_CODES:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSION_CODES)}")
        self._lib = load()
        self._compression = COMPRESSION_CODES[compression]
        self._pages = pages
        self._width = width
        self._dpi = dpi
        self._software = software.encode("ascii")
        self._written = 0
        # The file is the caller's (a fresh temporary name): opened here without following
        # a link, and handed to libtiff, which closes it with the TIFF.
        descriptor = os.open(path, os.O_RDWR | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
        handle = self._lib.TIFFFdOpen(descriptor, os.fsencode(path), b"w")
        if not handle:
            os.close(descriptor)
            raise LibtiffError(f"libtiff cannot open {path.name} for writing")
        self._handle: int | None = handle

    def __enter__(self) -> FaxTiffWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _set(self, tag: int, *values: object) -> None:
        if self._lib.TIFFSetField(ctypes.c_void_p(self._handle), ctypes.c_uint32(tag),
                                  *values) != 1:
            raise LibtiffError(f"libtiff refused TIFF tag {tag}")

    def add_page(self, bits: Buffer, height: int) -> int:
        """Code and write one page of ``height`` rows of packed bits (ink as 1-bits, most
        significant bit first, ``width / 8`` bytes a row) from a writable buffer (libtiff
        may use it as scratch space); the page's coded size in bytes."""
        data = memoryview(bits)
        row_bytes = (self._width + 7) // 8
        if data.nbytes != row_bytes * height:
            raise ValueError(f"{data.nbytes} bytes for {height} rows of {row_bytes}")
        handle = self._describe_page(height)
        buffer = (ctypes.c_char * data.nbytes).from_buffer(data)
        if self._lib.TIFFWriteEncodedStrip(handle, 0, buffer, data.nbytes) < 0:
            raise LibtiffError(f"libtiff could not code page {self._written + 1}")
        return self._finish_page()

    def add_coded_page(self, coded: bytes, height: int) -> int:
        """Write one page of ``height`` rows already coded with this file's compression (as
        another :class:`FaxTiffWriter` with the same settings coded it): its bytes are
        written as they are. The page's coded size in bytes."""
        if not coded or height < 1:
            raise ValueError("a coded page has rows and bytes")
        handle = self._describe_page(height)
        if self._lib.TIFFWriteRawStrip(handle, 0, coded, len(coded)) != len(coded):
            raise LibtiffError(f"libtiff could not write page {self._written + 1}")
        return self._finish_page()

    def _describe_page(self, height: int) -> int:
        """Set the next page's tags; the TIFF's handle."""
        if self._handle is None:
            raise LibtiffError("the TIFF is closed")
        uint16, uint32 = ctypes.c_int, ctypes.c_uint32  # varargs: a uint16 travels as int
        self._set(NEW_SUBFILE_TYPE, uint32(PAGE_OF_MULTIPAGE))
        self._set(IMAGE_WIDTH, uint32(self._width))
        self._set(IMAGE_LENGTH, uint32(height))
        self._set(BITS_PER_SAMPLE, uint16(1))
        self._set(SAMPLES_PER_PIXEL, uint16(1))
        self._set(COMPRESSION, uint16(self._compression))
        self._set(PHOTOMETRIC, uint16(WHITE_IS_ZERO))
        self._set(PLANAR_CONFIG, uint16(1))
        self._set(ROWS_PER_STRIP, uint32(height))  # one strip per page, as TIFF-F has it
        self._set(X_RESOLUTION, ctypes.c_double(self._dpi[0]))
        self._set(Y_RESOLUTION, ctypes.c_double(self._dpi[1]))
        self._set(RESOLUTION_UNIT, uint16(INCH))
        self._set(PAGE_NUMBER, uint16(self._written), uint16(self._pages))
        self._set(SOFTWARE, ctypes.c_char_p(self._software))
        return self._handle

    def _finish_page(self) -> int:
        """Write the page's directory; the page's coded size."""
        coded = self._coded_size()
        if self._lib.TIFFWriteDirectory(self._handle) != 1:
            raise LibtiffError(f"libtiff could not write page {self._written + 1}")
        self._written += 1
        return coded

    def _coded_size(self) -> int:
        """The coded size of the page's one strip, as its directory will record it."""
        counts = ctypes.POINTER(ctypes.c_uint64)()  # libtiff 4: an array of uint64
        if self._lib.TIFFGetField(ctypes.c_void_p(self._handle),
                                  ctypes.c_uint32(STRIP_BYTE_COUNTS), ctypes.byref(counts)) != 1:
            raise LibtiffError(f"libtiff has no coded size for page {self._written + 1}")
        return int(counts[0])

    def close(self) -> None:
        """Finish the file (libtiff closes it); closing twice does nothing."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._lib.TIFFClose(handle)
