"""Real image files made on the spot, for tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

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
