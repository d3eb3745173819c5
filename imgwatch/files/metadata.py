"""The words people put in and beside their images: title, description, caption,
alt text, from XMP, IPTC and EXIF inside the file, and from a sidecar JSON file.

Precedence, field by field (the first one present wins):

    title        sidecar, XMP dc:title, IPTC Object Name (2:05), IPTC Headline
                 (2:105), EXIF XPTitle
    description  sidecar, XMP dc:description, IPTC Caption/Abstract (2:120), EXIF
                 ImageDescription, EXIF XPComment
    caption      sidecar, then the same sources as description
    alt_text     sidecar, XMP Iptc4xmpCore:AltTextAccessibility

Nothing here raises on a malformed block: a file's metadata is a courtesy, and an
image with broken XMP is still an image.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from PIL import Image, ImageFile, IptcImagePlugin

log = logging.getLogger(__name__)

TITLE_MAX = 255  # the original service's VARCHAR(255)
TEXT_MAX = 10_000  # description, caption, alt text: longer is not a caption

SIDECAR_SUFFIX = ".json"
SIDECAR_MAX_BYTES = 256 * 1024

# What cameras write into ImageDescription when nobody wrote anything.
_CAMERA_FILLER = {
    "",
    "OLYMPUS DIGITAL CAMERA",
    "SONY DSC",
    "DIGITAL CAMERA",
    "KONICA MINOLTA DIGITAL CAMERA",
    "MINOLTA DIGITAL CAMERA",
    "SAMSUNG DIGITAL CAMERA",
    "DCIM",
    "DEFAULT",
}

_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# EXIF tags (IFD0)
_IMAGE_DESCRIPTION = 0x010E
_ORIENTATION = 0x0112
_XP_TITLE = 0x9C9B
_XP_COMMENT = 0x9C9C


@dataclass(frozen=True, slots=True)
class TextFields:
    """Title, description, caption and alt text; None where nothing was found."""

    title: str | None = None
    description: str | None = None
    caption: str | None = None
    alt_text: str | None = None

    def given(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def over(self, fallback: TextFields) -> TextFields:
        """These fields, each one missing taken from fallback."""
        return replace(fallback, **{name: getattr(self, name) for name in self.given()})


NO_TEXT = TextFields()
# Where Pillow puts metadata blocks while it reads a header: XMP (JPEG, WebP; PNG's
# iTXt), EXIF, and the Photoshop resources that carry IPTC in a JPEG.
_METADATA_KEYS = frozenset({"xmp", "XML:com.adobe.xmp", "exif", "photoshop"})


class SidecarError(Exception):
    """A sidecar file that cannot be used; the message says why."""


def embedded_text(img: Image.Image) -> TextFields:
    """The text fields inside an opened image (header only; no pixels decoded)."""
    if not _METADATA_KEYS.intersection(img.info) and img.format != "TIFF":
        return NO_TEXT  # most small images: nothing to parse (TIFF keeps it in tags)
    xmp = _xmp_fields(img)
    iptc = _iptc_fields(img)
    exif = _exif_fields(img)
    description = _clip(
        _first(xmp.get("description"), iptc.get("description"), exif.get("description")), TEXT_MAX
    )
    return TextFields(
        title=_clip(_first(xmp.get("title"), iptc.get("title"), exif.get("title")), TITLE_MAX),
        description=description,
        caption=description,
        alt_text=_clip(xmp.get("alt_text"), TEXT_MAX),
    )


def upright_size(img: Image.Image) -> tuple[int, int]:
    """Width and height as the image is shown: EXIF orientations 5 to 8 turn it a
    quarter, so its stored width is its shown height."""
    width, height = img.size
    if img.format == "TIFF":
        return width, height  # Pillow's TIFF reader turns the size itself
    try:
        orientation = img.getexif().get(_ORIENTATION) if _has_exif(img) else None
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the stored size
        orientation = None
    if orientation in (5, 6, 7, 8):
        return height, width
    return width, height


def sidecar_path(image_path: str) -> str:
    return image_path + SIDECAR_SUFFIX


def sidecar_mtime(image_path: str) -> int | None:
    """The mtime of the image's sidecar, or None when there is no regular file there:
    what a reconcile compares to tell that the sidecar changed."""
    try:
        st = os.lstat(sidecar_path(image_path))
    except OSError:
        return None
    return st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None


class Sidecar(NamedTuple):
    fields: TextFields
    mtime_ns: int


def read_sidecar(image_path: str) -> Sidecar | None:
    """The fields of `<image>.json`, with its mtime; None when there is none.

    Raises SidecarError for one that is there but cannot be used.
    """
    read = _sidecar_bytes(sidecar_path(image_path))
    if read is None:
        return None
    raw, mtime_ns = read
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SidecarError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise SidecarError(f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError):  # a number of 5,000 digits, nesting 100,000 deep
        raise SidecarError("invalid JSON: beyond the parser's limits") from None
    return Sidecar(_text_values(data), mtime_ns)


def _text_values(data: object) -> TextFields:
    if not isinstance(data, dict):
        raise SidecarError("not a JSON object")
    values: dict[str, str | None] = {}
    for name in ("title", "description", "caption", "alt_text"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SidecarError(f"{name} is not a string")
        try:
            value.encode("utf-8")  # "\ud800" is valid JSON but no database takes it
        except UnicodeEncodeError:
            raise SidecarError(f"{name} is not valid Unicode text") from None
        value = value.strip()
        if value:  # an empty value gives nothing (it must not wipe a person's edit)
            values[name] = _clip(value, TITLE_MAX if name == "title" else TEXT_MAX)
    return TextFields(**values)


def _sidecar_bytes(path: str) -> tuple[bytes, int] | None:
    try:
        # O_NONBLOCK: a FIFO named like a sidecar must not block the reader.
        # O_NOFOLLOW: a link is no sidecar (the walk, which uses lstat, agrees).
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SidecarError("a symbolic link, not a file") from None
        raise SidecarError(f"cannot open: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise SidecarError("not a regular file")
            raw = f.read(SIDECAR_MAX_BYTES + 1)
    except OSError as exc:
        raise SidecarError(f"cannot read: {exc.strerror}") from None
    if len(raw) > SIDECAR_MAX_BYTES:
        raise SidecarError(f"larger than {SIDECAR_MAX_BYTES // 1024} KiB")
    return raw, st.st_mtime_ns


# --- XMP ---------------------------------------------------------------------------


def _xmp_fields(img: Image.Image) -> dict[str, str]:
    packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if not packet:
        return {}
    try:
        root = ElementTree.fromstring(packet)
    except Exception:  # noqa: BLE001 - malformed or hostile XML: no XMP fields
        return {}
    found = {
        "title": _xmp_value(root, "dc:title"),
        "description": _xmp_value(root, "dc:description"),
        "alt_text": _xmp_value(root, "Iptc4xmpCore:AltTextAccessibility"),
    }
    return {k: v for k, v in found.items() if v}


def _xmp_value(root: Element, name: str) -> str | None:
    """A property as an element (with a language alternative or a plain value) or
    as an attribute of rdf:Description."""
    prefix, local = name.split(":")
    qualified = f"{{{_NS[prefix]}}}{local}"
    for description in root.iter(f"{{{_NS['rdf']}}}Description"):
        attribute = description.get(qualified)
        if attribute:
            return _tidy(attribute)
    for element in root.iter(qualified):
        items = list(element.iter(f"{{{_NS['rdf']}}}li"))
        if not items:
            return _tidy(element.text or "")
        default = [li for li in items if li.get(_XML_LANG) == "x-default"]
        return _tidy((default or items)[0].text or "")
    return None


# --- IPTC --------------------------------------------------------------------------


def _iptc_fields(img: Image.Image) -> dict[str, str]:
    if not isinstance(img, ImageFile.ImageFile):
        return {}
    try:
        info: dict[tuple[int, int], Any] | None = IptcImagePlugin.getiptcinfo(img)
    except Exception:  # noqa: BLE001 - a malformed IPTC block: no IPTC fields
        return {}
    if not info:
        return {}
    # 1:90 says which character set the text is in; ESC % G is UTF-8. Without it,
    # UTF-8 is still the most likely (and Latin-1 reads anything).
    found = {
        "title": _iptc_text(info.get((2, 5))) or _iptc_text(info.get((2, 105))),
        "description": _iptc_text(info.get((2, 120))),
    }
    return {k: v for k, v in found.items() if v}


def _iptc_text(value: Any) -> str | None:
    if isinstance(value, list):  # a repeated dataset: the first one
        value = value[0] if value else None
    if not isinstance(value, bytes):
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    return _tidy(text)


# --- EXIF --------------------------------------------------------------------------


def _has_exif(img: Image.Image) -> bool:
    # JPEG, PNG and WebP put the block in info; TIFF keeps the tags in the file's IFD.
    return "exif" in img.info or img.format == "TIFF"


def _exif_fields(img: Image.Image) -> dict[str, str]:
    if not _has_exif(img):
        return {}
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - a malformed EXIF block: no EXIF fields
        return {}
    description = _exif_ascii(exif.get(_IMAGE_DESCRIPTION))
    if description is not None and description.upper() in _CAMERA_FILLER:
        description = None
    found = {
        "title": _exif_utf16(exif.get(_XP_TITLE)),
        "description": description or _exif_utf16(exif.get(_XP_COMMENT)),
    }
    return {k: v for k, v in found.items() if v}


def _exif_ascii(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _tidy(value) if isinstance(value, str) else None


def _exif_utf16(value: Any) -> str | None:
    # Windows' XP* tags: UTF-16LE bytes, given as bytes or as a tuple of byte values.
    if isinstance(value, tuple):
        value = bytes(v for v in value if isinstance(v, int) and 0 <= v < 256)
    if not isinstance(value, bytes):
        return None
    return _tidy(value.decode("utf-16-le", "replace"))


# --- common ------------------------------------------------------------------------


def _tidy(text: str) -> str | None:
    text = text.replace("\x00", "").strip()
    return text or None


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def _clip(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else text
