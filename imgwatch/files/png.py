"""The size of a plain PNG, read from its header without Pillow.

In a bulk import of small images, opening each one with Pillow cost half of the
reading processes' time: most of it building Pillow's image object, not reading.
A PNG whose chunks before the image data are only the header and plain rendering
hints has nothing more to tell than its width and height, and those are in fixed
places. This module reads only such files, by the same checks Pillow makes on
them (signature, checksums, a known bit depth and colour type, filter method 0,
the pixel limit); for any other PNG (text, XMP, EXIF, colour profiles, animation,
anything unusual or damaged) it answers None and Pillow reads the file.

So this must never accept a file Pillow rejects, nor give another size than
Pillow's: tests/test_pngheader.py compares the two on every variant it makes.
"""

from __future__ import annotations

import zlib

from PIL import Image, ImageFile

SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The PNG specification's colour types and the bit depths each allows (Pillow's
# PNG reader knows exactly these).
_DEPTHS: dict[int, tuple[int, ...]] = {
    0: (1, 2, 4, 8, 16),  # greyscale
    2: (8, 16),  # RGB
    3: (1, 2, 4, 8),  # palette
    4: (8, 16),  # greyscale with alpha
    6: (8, 16),  # RGB with alpha
}

# Chunks that may come between the header and the image data here, with the length
# the specification gives them (PLTE: any whole number of entries, up to 256). They
# carry no text and do not change the size.
_FIXED_LENGTH = {b"sRGB": 1, b"gAMA": 4, b"pHYs": 9}
_PALETTE = b"PLTE"

_HEADER_END = 33  # signature 8, then IHDR: length 4, type 4, data 13, CRC 4


def plain_png_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) of a whole PNG file's bytes when its header is plain; None
    when Pillow has to read it."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        return None  # Pillow then skips some checks: its own answer is the one to give
    header = _plain_header(data)
    if header is None:
        return None
    width, height, colour = header
    return (width, height) if _only_plain_chunks(data, colour) else None


def _plain_header(data: bytes | memoryview) -> tuple[int, int, int] | None:
    """Width, height and colour type from a valid IHDR chunk, first after the
    signature, of a size Pillow takes without a warning."""
    if len(data) < _HEADER_END + 8 or data[:8] != SIGNATURE:
        return None
    if data[8:16] != b"\x00\x00\x00\x0dIHDR" or not _crc_ok(data, 12, 13):
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    depth, colour, compression, filtering, interlace = data[24:29]
    if depth not in _DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        return None
    if not width or not height or _too_large(width, height):
        return None  # Pillow says why (or warns about a decompression bomb)
    return width, height, colour


def _only_plain_chunks(data: bytes | memoryview, colour: int) -> bool:
    """Whether every chunk from the header to the first image data is one of the
    plain ones, of its proper length, with its CRC right."""
    pos = _HEADER_END
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        if kind == b"IDAT":
            return True
        if kind == _PALETTE:
            if colour in (0, 4) or not length or length % 3 or length > 768:
                return False
        elif _FIXED_LENGTH.get(kind) != length:
            return False
        if not _crc_ok(data, pos + 4, length):
            return False
        pos += 12 + length
    return False  # no image data: Pillow says the file is broken


def _crc_ok(data: bytes | memoryview, start: int, length: int) -> bool:
    """The CRC after the chunk whose type starts at `start` (type and data covered)."""
    end = start + 4 + length
    if end + 4 > len(data):
        return False
    return zlib.crc32(data[start:end]) == int.from_bytes(data[end : end + 4], "big")


def _too_large(width: int, height: int) -> bool:
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and width * height > limit
