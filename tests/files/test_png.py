"""The PNG header fast path against Pillow, on every variant made here: whatever the
fast path accepts, Pillow must accept with the same size and no text."""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageFile, PngImagePlugin

from imgwatch.files import inspect as imaging
from imgwatch.files.inspect import inspect_image
from imgwatch.files.metadata import TextFields
from imgwatch.files.png import SIGNATURE, plain_png_size


def chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(
    width: int = 5,
    height: int = 3,
    depth: int = 8,
    colour: int = 2,
    compression: int = 0,
    filtering: int = 0,
    interlace: int = 0,
) -> bytes:
    return chunk(
        b"IHDR",
        struct.pack(">IIBBBBB", width, height, depth, colour, compression, filtering, interlace),
    )


IDAT = chunk(b"IDAT", zlib.compress(b"\x00" * 16))
IEND = chunk(b"IEND")


def png(*chunks: bytes, header: bytes | None = None) -> bytes:
    return SIGNATURE + (ihdr() if header is None else header) + b"".join(chunks) + IDAT + IEND


def saved(mode: str, size: tuple[int, int] = (13, 9), **params: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG", **params)
    return out.getvalue()


def pillow_says(data: bytes) -> tuple[int, int, TextFields] | str:
    """The header as Pillow reads it (inspect_image takes the fast path, _header
    never does), or the kind of error that rejects it."""
    try:
        return imaging._header(io.BytesIO(data), "PNG")
    except Exception as exc:  # noqa: BLE001 - any rejection is an answer here
        return type(exc).__name__


def variants() -> Iterator[tuple[str, bytes]]:
    """PNG files as Pillow writes them, and by hand, valid and broken."""
    for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16"):
        yield f"saved {mode}", saved(mode)
    yield "saved 1x1", saved("RGB", (1, 1))
    yield "saved with dpi (pHYs)", saved("RGB", dpi=(300, 300))
    yield "saved with transparency (tRNS)", saved("P", transparency=0)
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a title")
    yield "saved with a tEXt chunk", saved("RGB", pnginfo=info)
    xmp = PngImagePlugin.PngInfo()
    xmp.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    yield "saved with XMP (iTXt)", saved("RGB", pnginfo=xmp)
    exif = Image.Exif()
    exif[0x0112] = 6
    yield "saved with EXIF orientation 6", saved("RGB", exif=exif.tobytes())
    # Every bit depth and colour type a header could claim.
    for depth, colour in itertools.product(range(18), range(8)):
        yield f"depth {depth} colour {colour}", png(header=ihdr(depth=depth, colour=colour))
    for field, value in (("compression", 1), ("filtering", 1), ("interlace", 1), ("interlace", 2)):
        yield f"{field} {value}", png(header=ihdr(**{field: value}))
    for width, height in ((0, 3), (5, 0), (2**31 - 1, 1), (2**32 - 1, 2**32 - 1), (10_000, 10_000)):
        yield f"size {width}x{height}", png(header=ihdr(width, height))
    bad_crc = bytearray(ihdr())
    bad_crc[-1] ^= 1
    yield "IHDR with a bad CRC", png(header=bytes(bad_crc))
    yield "IHDR too long", png(header=chunk(b"IHDR", ihdr()[8:-4] + b"\0"))
    yield "IHDR too short", png(header=chunk(b"IHDR", ihdr()[8:-5]))
    yield "IHDR not first", SIGNATURE + chunk(b"sRGB", b"\0") + ihdr() + IDAT + IEND
    yield "no IHDR", SIGNATURE + IDAT + IEND
    for kind, data in (
        (b"sRGB", b"\0"),
        (b"sRGB", b""),
        (b"sRGB", b"\0\0"),
        (b"gAMA", struct.pack(">I", 45455)),
        (b"gAMA", b"\0\0\0"),
        (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        (b"pHYs", b"\0" * 8),
        (b"cHRM", b"\0" * 32),
        (b"tIME", b"\0" * 7),
        (b"iCCP", b"x\0\0" + zlib.compress(b"")),
        (b"eXIf", b"MM\0*\0\0\0\x08\0\0"),
        (b"acTL", struct.pack(">II", 1, 0)),
        (b"prVt", b"private"),
        (b"a\0b\0", b""),
    ):
        yield f"{kind!r} of {len(data)} bytes", png(chunk(kind, data))
    bad_srgb = bytearray(chunk(b"sRGB", b"\0"))
    bad_srgb[-1] ^= 1
    yield "sRGB with a bad CRC", png(bytes(bad_srgb))
    for colour, length in ((3, 3), (3, 768), (3, 0), (3, 4), (3, 771), (2, 3), (0, 3), (4, 3)):
        header = ihdr(colour=colour, depth=8)
        yield (
            f"PLTE of {length} bytes, colour {colour}",
            png(chunk(b"PLTE", b"\7" * length), header=header),
        )
    yield "palette image without PLTE", png(header=ihdr(colour=3))
    plain = png()
    for cut in (20, 33, 37, 41, len(plain) - len(IEND) - 1):
        yield f"cut at {cut}", plain[:cut]
    yield "no image data", SIGNATURE + ihdr() + IEND
    broken_idat = bytearray(plain)
    broken_idat[-len(IEND) - 1] ^= 1  # Pillow checks no CRC of the image data on open
    yield "IDAT with a bad CRC", bytes(broken_idat)
    yield "chunk length past the end", png(b"\x7f\xff\xff\xffsRGB\0")


@pytest.mark.parametrize(("name", "data"), list(variants()), ids=[n for n, _ in variants()])
def test_fast_path_agrees_with_pillow(name: str, data: bytes) -> None:
    fast = plain_png_size(data)
    if fast is not None:
        assert pillow_says(data) == (*fast, TextFields()), name


@pytest.mark.parametrize(
    "data",
    [
        saved("RGB"),
        saved("RGBA", (300, 7)),
        saved("P"),  # with its PLTE
        saved("1"),
        saved("I;16"),
        saved("RGB", dpi=(72, 72)),
        png(chunk(b"sRGB", b"\0"), chunk(b"gAMA", struct.pack(">I", 45455))),
        png(header=ihdr(interlace=1)),
    ],
)
def test_plain_pngs_take_the_fast_path(data: bytes) -> None:
    fast = plain_png_size(data)
    assert fast is not None
    assert pillow_says(data) == (*fast, TextFields())


def test_pngs_with_words_or_orientation_go_to_pillow() -> None:
    for name, data in variants():
        if name.startswith(("saved with a tEXt", "saved with XMP", "saved with EXIF")):
            assert plain_png_size(data) is None, name


def test_over_the_pixel_limit_pillow_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png(header=ihdr(100, 100))
    assert plain_png_size(data) == (100, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 9_999)
    assert plain_png_size(data) is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert plain_png_size(data) == (100, 100)


def test_with_truncated_images_allowed_pillow_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert plain_png_size(saved("RGB")) is None


def test_inspect_image_is_the_same_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole read of a file: what it says with the fast path is what Pillow says."""
    for i, (name, data) in enumerate(variants()):
        path = tmp_path / f"{i}.png"
        path.write_bytes(data)
        with monkeypatch.context() as m:
            m.setattr(imaging, "plain_png_size", lambda _data: None)
            slow = _outcome(str(path))
        assert _outcome(str(path)) == slow, name


def _outcome(path: str) -> object:
    try:
        return inspect_image(path)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__, str(exc)
