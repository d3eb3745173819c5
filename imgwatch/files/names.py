"""Which names in the image directory are candidate images.

Hidden names and the temporary names that copy tools, browsers and editors
write before renaming into place are never picked up: the final name will be.
"""

from __future__ import annotations

from collections.abc import Iterable

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
