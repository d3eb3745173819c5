"""Real image files made on the spot, for tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF"}


def write_image(path: Path, width: int = 32, height: int = 24, color: str = "red") -> Path:
    """An image of the format its extension names (JPEG for unknown extensions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = FORMATS.get(path.suffix.lower(), "JPEG")
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, (width, height), color).save(path, format=fmt)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
