"""Real image files made on the spot, for tests."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from PIL import Image, PngImagePlugin

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}


def write_image(path: Path, width: int = 32, height: int = 24, color: str | None = None) -> Path:
    """An image of the format its extension names (JPEG for unknown extensions).

    Without a color the pixels are random, so every call makes new content: tests
    against the shared WordPress never collide on a content-derived slug.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = FORMATS.get(path.suffix.lower(), "JPEG")
    if color is None:
        img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        img = Image.new("RGB", (width, height), color)
    if fmt == "GIF":
        img = img.convert("P")
    img.save(path, format=fmt)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listings(monkeypatch: pytest.MonkeyPatch, refused: Collection[str] = ()) -> list[str]:
    """The directories the walk opens to list, in order, from now on; those in
    `refused` refused at the system call, as chmod 000 does not stop root."""
    listed: list[str] = []
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECTORY:
            listed.append(str(path))
            if str(path) in refused:
                raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    return listed


# --- images carrying metadata, as cameras and photo tools write it -------------------


def xmp_packet(
    title: str | None = None, description: str | None = None, alt_text: str | None = None
) -> bytes:
    """An XMP packet as Lightroom/exiftool write it: language alternatives."""

    def alt(tag: str, text: str | None) -> str:
        if text is None:
            return ""
        return (
            f'<{tag}><rdf:Alt><rdf:li xml:lang="de">nicht das</rdf:li>'
            f'<rdf:li xml:lang="x-default">{escape(text)}</rdf:li></rdf:Alt></{tag}>'
        )

    body = (
        alt("dc:title", title)
        + alt("dc:description", description)
        + alt("Iptc4xmpCore:AltTextAccessibility", alt_text)
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/">'
        f"{body}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def iptc_app13(object_name: str | None = None, caption: str | None = None) -> bytes:
    """A JPEG APP13 segment: Photoshop 3.0 image resource 0x0404 holding IPTC-IIM
    datasets, UTF-8 declared in 1:90 (as exiftool and Photoshop write it)."""

    def dataset(record: int, number: int, value: bytes) -> bytes:
        return bytes([0x1C, record, number]) + len(value).to_bytes(2, "big") + value

    iim = dataset(1, 90, b"\x1b%G")
    if object_name is not None:
        iim += dataset(2, 5, object_name.encode())
    if caption is not None:
        iim += dataset(2, 120, caption.encode())
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + (0x0404).to_bytes(2, "big") + b"\x00\x00" + len(iim).to_bytes(4, "big")
    payload = b"Photoshop 3.0\x00" + resource + iim
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


def write_tagged_jpeg(
    path: Path,
    *,
    width: int = 40,
    height: int = 20,
    xmp: bytes | None = None,
    iptc: bytes | None = None,
    exif: dict[int, object] | None = None,
) -> Path:
    """A JPEG with the given XMP packet, IPTC APP13 segment and EXIF tags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    tags = Image.Exif()
    for tag, value in (exif or {}).items():
        tags[tag] = value
    out = io.BytesIO()
    options: dict[str, object] = {"exif": tags.tobytes()} if exif else {}
    if xmp is not None:
        options["xmp"] = xmp
    img.save(out, format="JPEG", **options)
    data = out.getvalue()
    if iptc is not None:
        data = data[:2] + iptc + data[2:]  # right after SOI
    path.write_bytes(data)
    return path


def write_png_with_xmp(path: Path, xmp: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    Image.frombytes("RGB", (30, 10), os.urandom(900)).save(path, format="PNG", pnginfo=info)
    return path
