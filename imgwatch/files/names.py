"""Names: which ones in the image directory are candidate images, and the row name
for each (a path no row can hold gets a stand-in).

Hidden names and the temporary names that copy tools, browsers and editors
write before renaming into place are never picked up: the final name will be.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from imgwatch.model import FILE_NAME_MAX

# Suffixes of partial downloads/copies (curl, wget, browsers, rsync --partial-dir tools).
TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", "~")


def is_hidden_or_temp(name: str) -> bool:
    """True for a name no one means as a finished file or a real directory."""
    if name.startswith("."):
        # Covers dotfiles, `.#lock` files and rsync's `.name.XXXXXX` temp names.
        return True
    return name.lower().endswith(TEMP_SUFFIXES)


class ImageNameFilter:
    """Accepts a file name whose extension is one of the configured ones."""

    __slots__ = ("extensions",)

    def __init__(self, extensions: Iterable[str]) -> None:
        self.extensions = tuple(e.lower() for e in extensions)

    def __call__(self, name: str) -> bool:
        if is_hidden_or_temp(name):
            return False
        return name.lower().endswith(self.extensions)

    def __repr__(self) -> str:
        return f"ImageNameFilter(extensions={self.extensions!r})"


def row_name(file_name: str) -> str:
    """The file_name of the row for this path: the path itself, or, for a path no row
    can hold (not UTF-8, too long), a stand-in that shows it and stays unique."""
    if unstorable_reason(file_name) is None:
        return file_name
    return stand_in_name(file_name)


def stand_in_name(file_name: str) -> str:
    """The row name for a path no row can hold: readable, and unique by its hash."""
    raw = os.fsencode(file_name)
    readable = raw.decode("utf-8", "backslashreplace")
    return f"{readable[:200]}#{hashlib.sha256(raw).hexdigest()[:16]}"


def unstorable_reason(file_name: str) -> str | None:
    """Why a relative name cannot be a `file_name` value, or None if it can."""
    try:
        file_name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    if len(file_name) > FILE_NAME_MAX:
        return f"relative path is longer than {FILE_NAME_MAX} characters"
    return None


def is_plain(file_name: str) -> bool:
    """A short ASCII name, its own row name: the common case, told without encoding."""
    return file_name.isascii() and len(file_name) <= FILE_NAME_MAX
