"""Content sniffing and header reading on real files."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
from PIL import Image

from imgwatch.files import inspect as imaging
from imgwatch.files.inspect import NotAnImage, describe_content, inspect_image, sniff
from tests.imagefiles import sha256_of, write_image


@pytest.mark.parametrize(
    ("name", "mime"),
    [("a.jpg", "image/jpeg"), ("a.png", "image/png"), ("a.gif", "image/gif")],
)
def test_real_images_are_identified(tmp_path: Path, name: str, mime: str) -> None:
    path = write_image(tmp_path / name, 13, 9)
    facts = inspect_image(str(path))
    assert (facts.mime_type, facts.width, facts.height) == (mime, 13, 9)
    assert facts.sha256 == sha256_of(path)
    assert facts.size_bytes == path.stat().st_size


def test_other_formats_are_sniffed() -> None:
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("image/webp", "WEBP")
    assert sniff(b"GIF87a....") == ("image/gif", "GIF")
    assert sniff(b"hello") is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<!DOCTYPE html><html>", "HTML"),
        (b"just some words\n", "text"),
        (b"\x00\x00\x00\x00\x01", "unknown signature 0000000001"),
    ],
)
def test_non_images_are_rejected_with_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(NotAnImage, match=reason):
        inspect_image(str(path))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(NotAnImage, match="empty file"):
        inspect_image(str(tmp_path / "e.png"))


def test_corrupt_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 3)
    with pytest.raises(NotAnImage, match="corrupt PNG"):
        inspect_image(str(path))


def test_huge_declared_dimensions_are_rejected_without_decoding(tmp_path: Path) -> None:
    path = write_image(tmp_path / "bomb.png", 10, 10)
    data = bytearray(path.read_bytes())
    # Patch the IHDR width/height to 100000 x 100000 (10 gigapixels), with a valid CRC.
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(NotAnImage, match="too large"):
        inspect_image(str(path))


def test_fifo_is_not_opened_for_blocking_read(tmp_path: Path) -> None:
    fifo = tmp_path / "y.png"
    os.mkfifo(fifo)
    with pytest.raises(NotAnImage, match="not a regular file"):
        inspect_image(str(fifo))


def test_describe_content() -> None:
    assert describe_content(b"") == "empty"
    assert "HTML" in describe_content(b"  <svg")


def test_pillow_limit_is_in_force() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png", "cut.gif", "cut.bmp"])
def test_a_truncated_image_is_rejected_although_its_header_is_fine(
    tmp_path: Path, name: str
) -> None:
    path = write_image(tmp_path / name, 64, 64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    with pytest.raises(NotAnImage, match="truncated"):
        inspect_image(str(path))


@pytest.mark.parametrize("name", ["whole.bmp", "whole.gif", "whole.png", "whole.jpg"])
def test_complete_images_pass_the_end_check(tmp_path: Path, name: str) -> None:
    path = write_image(tmp_path / name, 33, 17)
    assert inspect_image(str(path)).width == 33


def test_a_jpeg_with_camera_data_after_its_end_marker_is_complete(tmp_path: Path) -> None:
    path = write_image(tmp_path / "trailer.jpg", 64, 64)
    with open(path, "ab") as f:
        f.write(b"SEFH" + os.urandom(30_000))  # what some phones append after EOI
    assert inspect_image(str(path)).width == 64


def test_a_file_over_the_size_limit_is_rejected_unread(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", 200, 200)
    limit = path.stat().st_size - 1
    with pytest.raises(NotAnImage, match=r"over the .* MiB limit"):
        inspect_image(str(path), max_bytes=limit)
    assert inspect_image(str(path), max_bytes=limit + 1).width == 200


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_file_over_a_mebibyte_is_read_in_a_stream_with_the_same_checks(
    tmp_path: Path, fmt: str
) -> None:
    # Random pixels do not compress: well over the size read whole into memory.
    big = Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3))
    path = tmp_path / f"big.{fmt.lower()}"
    big.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    assert path.stat().st_size > imaging._WHOLE_FILE_BYTES
    facts = inspect_image(str(path))
    assert (facts.width, facts.height, facts.sha256) == (1200, 1200, sha256_of(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    with pytest.raises(NotAnImage, match=f"truncated {fmt}"):
        inspect_image(str(path))
