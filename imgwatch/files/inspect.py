"""What a file really is: type from its first bytes, dimensions and text from its header.

Nothing here trusts the file name. The file is opened once, without following
a FIFO into a blocking read, hashed in a stream, and never decoded in full.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from imgwatch.files.metadata import NO_TEXT, TextFields, embedded_text, upright_size
from imgwatch.files.png import plain_png_size

# Longest signature below, plus room for the RIFF/WEBP form.
SNIFF_BYTES = 16

# (prefix, MIME type, Pillow format name)
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG"),
    (b"GIF87a", "image/gif", "GIF"),
    (b"GIF89a", "image/gif", "GIF"),
    (b"BM", "image/bmp", "BMP"),
    (b"II*\x00", "image/tiff", "TIFF"),
    (b"MM\x00*", "image/tiff", "TIFF"),
)


class NotAnImage(Exception):
    """The file is readable but is not an image we accept; the message is the reason."""


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What was learned from one complete, stable read of a file."""

    sha256: str
    size_bytes: int
    mtime_ns: int
    mime_type: str
    width: int  # as shown: EXIF orientation applied
    height: int
    text: TextFields  # title, description, caption, alt text from XMP/IPTC/EXIF


class FileUnstable(Exception):
    """The file changed while it was being read: it is still being written."""


def sniff(head: bytes) -> tuple[str, str] | None:
    """(MIME type, Pillow format) for the first bytes of a file, or None."""
    for prefix, mime, fmt in _SIGNATURES:
        if head.startswith(prefix):
            return mime, fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "WEBP"
    return None


def describe_content(head: bytes) -> str:
    """A short, safe description of unknown content, for a rejection reason."""
    if not head:
        return "empty"
    stripped = head.lstrip()
    if stripped[:1] == b"<":
        return "looks like HTML/XML text"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "looks like text"
    return "unknown signature " + head[:8].hex()


def inspect_image(path: str, max_bytes: int | None = None) -> ImageFacts:
    """Read one file and return its facts.

    Raises NotAnImage (reject it), FileUnstable (look again later), or OSError
    (FileNotFoundError when it vanished, PermissionError when unreadable, other
    errors from the disk).
    """
    # O_NONBLOCK: a FIFO that replaced the file must not block us on open.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise NotAnImage("not a regular file")
        if before.st_size == 0:
            raise NotAnImage("empty file")
        if max_bytes is not None and before.st_size > max_bytes:
            raise NotAnImage(
                f"file is {before.st_size / 2**20:.1f} MiB, over the "
                f"{max_bytes / 2**20:g} MiB limit (IMGWATCH_MAX_FILE_MB)"
            )
        f: BinaryIO
        whole: bytes | None = None
        if before.st_size <= _WHOLE_FILE_BYTES:
            # A small file is read whole, with plain reads (no file object), and looked
            # at in memory: its sniff, header, hash and end marker would otherwise each
            # cost reads and seeks. One byte over its size, so growth is noticed.
            whole = _read_up_to(fd, before.st_size + 1)
            f = io.BytesIO(whole)
            digest, read = hashlib.sha256(whole).hexdigest(), len(whole)
        else:
            f = open(fd, "rb", closefd=False)  # noqa: SIM115 - closed below
            digest, read = "", 0
        with f:
            head = f.read(SNIFF_BYTES)
            kind = sniff(head)
            if kind is None:
                raise NotAnImage(f"not an image: content {describe_content(head)}")
            mime, fmt = kind
            f.seek(0)
            # A plain PNG read whole is sized without Pillow (see pngheader.py).
            size = plain_png_size(whole) if fmt == "PNG" and whole is not None else None
            width, height, text = (*size, NO_TEXT) if size is not None else _header(f, fmt)
            if not digest:
                f.seek(0)
                digest = hashlib.file_digest(f, "sha256").hexdigest()
                read = f.tell()
            after = os.fstat(fd)
            same = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
            if same and read == after.st_size:
                _check_complete(f, fmt, after.st_size)
    finally:
        os.close(fd)
    if not same or read != after.st_size:
        raise FileUnstable("file changed while it was being read")
    return ImageFacts(
        sha256=digest,
        size_bytes=after.st_size,
        mtime_ns=after.st_mtime_ns,
        mime_type=mime,
        width=width,
        height=height,
        text=text,
    )


def _read_up_to(fd: int, size: int) -> bytes:
    """Up to size bytes, fewer at the end of the file (a read may return less)."""
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _header(f: BinaryIO, fmt: str) -> tuple[int, int, TextFields]:
    """Width, height and text fields from the header only; Pillow decodes no pixels."""
    try:
        with warnings.catch_warnings():
            # Over MAX_IMAGE_PIXELS Pillow warns; over twice that it raises. Both are rejections.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f, formats=[fmt]) as img:
                width, height = img.size
                shown = upright_size(img)
                text = embedded_text(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise NotAnImage(f"image too large to process safely: {exc}") from None
    except UnidentifiedImageError:
        raise NotAnImage(f"corrupt {fmt} header: the image library cannot read it") from None
    except (SyntaxError, ValueError, EOFError) as exc:
        raise NotAnImage(f"corrupt {fmt} header: {exc}") from None
    except OSError as exc:
        if exc.errno is None:  # Pillow reports format problems as errno-less OSError
            raise NotAnImage(f"corrupt {fmt} header: {exc}") from None
        raise
    if width <= 0 or height <= 0:
        raise NotAnImage(f"corrupt {fmt} header: size {width}x{height}")
    return *shown, text


# Files up to this size are read whole into memory (the workers hold one each).
_WHOLE_FILE_BYTES = 1 << 20

# How far from the end the end-of-image marker may sit: some cameras append their
# own data after a JPEG's EOI.
_TAIL_BYTES = 1 << 16


def _check_complete(f: BinaryIO, fmt: str, size: int) -> None:
    """A file cut short (an interrupted copy) lacks its format's end marker.

    The header alone (all that the dimensions need) says nothing about that, and a
    truncated file would be uploaded as a broken image. The tail was just read by
    the hash, so this costs no disk I/O.
    """
    if fmt in {"WEBP", "BMP"}:
        # The header says how long the file is: RIFF size + 8, BMP's bfSize.
        f.seek(4 if fmt == "WEBP" else 2)
        declared = int.from_bytes(f.read(4), "little") + (8 if fmt == "WEBP" else 0)
        complete = size >= declared
    elif fmt in {"JPEG", "PNG", "GIF"}:
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read(_TAIL_BYTES)
        if fmt == "JPEG":
            complete = b"\xff\xd9" in tail  # EOI; entropy-coded data never contains it
        elif fmt == "PNG":
            complete = b"IEND\xaeB`\x82" in tail[-64:]  # the IEND chunk with its fixed CRC
        else:  # the last block's terminator, then the trailer, then maybe padding
            complete = tail.rstrip(b"\0").endswith(b"\x00;")
    else:
        complete = True  # no cheap end marker to look for
    if not complete:
        raise NotAnImage(f"truncated {fmt}: the file ends before the image does")


def is_transient_os_error(exc: OSError) -> bool:
    """Errors worth trying again later rather than rejecting the file."""
    return exc.errno in {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.EINTR}
