"""The walk of the image directory: which names are candidate images, and what
each one is, without opening anything.

The reconcile walks the whole tree; the daemon walks a directory that arrived
and looks at one path at a time (find_one), by the same rules.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import NamedTuple

from imgwatch.errors import ConfigError
from imgwatch.files.metadata import SIDECAR_SUFFIX, sidecar_mtime
from imgwatch.files.names import TEMP_SUFFIXES, ImageNameFilter, is_hidden_or_temp
from imgwatch.model import NameRange

log = logging.getLogger(__name__)


class FoundFile(NamedTuple):
    """A candidate image seen by the walk (a named tuple: the walk makes one per file)."""

    file_name: str  # relative to the image directory, '/'-separated
    path: str
    size_bytes: int
    mtime_ns: int
    # Why this is no image file at all (a FIFO, a link leading out); None for a file.
    problem: str | None = None
    # The mtime of `<name>.json` beside it (see files/metadata.py), None when there is none.
    sidecar_mtime_ns: int | None = None


@dataclass(slots=True)
class WalkState:
    """Walk state: directories that could not be listed keep their rows from going missing."""

    unreadable_dirs: list[str] = field(default_factory=list)
    directories: int = 0  # listed, the root included: what inotify would watch


def check_image_dir(image_dir: Path) -> Path:
    """The image directory, resolved; ConfigError if it is not a readable directory."""
    try:
        st = image_dir.stat()
    except FileNotFoundError:
        raise ConfigError(f"image directory {str(image_dir)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"image directory {str(image_dir)!r}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"image directory {str(image_dir)!r} is not a directory")
    if not os.access(image_dir, os.R_OK | os.X_OK):
        raise ConfigError(f"image directory {str(image_dir)!r} is not readable")
    return image_dir.resolve()


def walk(
    root: Path,
    accept: ImageNameFilter,
    state: WalkState | None = None,
    subdir: str = "",
    names: NameRange = (None, None),
) -> Iterator[FoundFile]:
    """Every candidate image under root (or only under root/subdir), without following
    directory links. Names are relative to root either way. With `names` (lo, hi),
    only those with lo <= name < hi (None: no bound), the directories outside that
    range not listed: one part of the tree, for a reconcile in parts
    (reconcile/parts.py).

    Files come in the order of their names, compared code point by code point, as a
    database orders its `file_name` index: a directory's entries sorted, and each
    subdirectory walked where its name sorts (`a.jpg`, `a/b.jpg`, `a0.jpg`). So the
    reconcile can read the rows beside the walk, a page at a time, instead of holding
    all of them (reconcile/merge.py). What is held is the listings of the directories
    on the way down, nothing per file of the tree.
    """
    state = state if state is not None else WalkState()
    real_root = str(root)
    start = os.path.join(real_root, subdir) if subdir else real_root
    prefix = subdir + "/" if subdir else ""
    extensions = accept.extensions
    # One frame per directory on the way down: its sorted entries (an iterator that
    # remembers how far the walk got), its prefix, and its images with a sidecar.
    frames = [_frame(start, prefix, state, names)]
    while frames:
        entries, prefix, sidecars = frames[-1]
        # This loop runs once per file of the archive: it keeps to what it must
        # (one stat per candidate, nothing opened) and to cheap string tests.
        for entry in entries:
            name = entry.name
            if name[0] == ".":  # dotfiles, `.#lock` files, rsync's `.name.XXXXXX`
                continue
            rel = prefix + name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if is_hidden_or_temp(name):
                        continue
                    # Down first: its names sort before this directory's next ones.
                    frames.append(_frame(entry.path, rel + "/", state, names))
                    break
                low = name.lower()
                if not low.endswith(extensions) or low.endswith(TEMP_SUFFIXES):
                    continue
                st = entry.stat(follow_symlinks=False)
                if S_ISREG(st.st_mode):
                    # FoundFile(...) without its Python-level __new__: half the cost.
                    found = _new(
                        FoundFile, (rel, entry.path, st.st_size, st.st_mtime_ns, None, None)
                    )
                else:
                    found = classify(entry.path, rel, real_root, st)
            except OSError as exc:
                log.warning("cannot stat %r: %s", rel, exc.strerror)
                continue
            if sidecars and name in sidecars:
                found = found._replace(sidecar_mtime_ns=sidecar_mtime(entry.path))
            yield found
        else:
            frames.pop()


_new = tuple.__new__

_Frame = tuple[Iterator[os.DirEntry[str]], str, set[str]]


def _frame(directory: str, prefix: str, state: WalkState, names: NameRange) -> _Frame:
    lo, hi = names
    # A directory is counted by the part of the tree it belongs to, not by every
    # part whose walk passes through it on the way down to its range.
    entries = _listing(directory, prefix, state, counted=lo is None or prefix >= lo)
    entries.sort(key=walk_position)
    # The names of images with a sidecar: usually none, then one test per image.
    sidecars = {e.name[: -len(SIDECAR_SUFFIX)] for e in entries if e.name.endswith(SIDECAR_SUFFIX)}
    if lo is not None and lo > prefix:
        # Entries wholly before lo: a file named below it, a directory whose names all are.
        skip = 0
        while skip < len(entries) and _before(prefix + walk_position(entries[skip]), lo):
            skip += 1
        del entries[:skip]
    if hi is not None:
        keep = len(entries)
        while keep and prefix + walk_position(entries[keep - 1]) >= hi:
            keep -= 1
        del entries[keep:]
    return iter(entries), prefix, sidecars


def walk_position(entry: os.DirEntry[str]) -> str:
    """Where the walk puts an entry: a file as its name, a directory as its name and a
    slash, where the names inside it sort."""
    try:
        return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
    except OSError:
        return entry.name


def _before(order: str, lo: str) -> bool:
    """Whether every name at this walk position is below lo: a file's own name; for a
    directory (`name/`), every name under it, all below `name0` ('0' follows '/')."""
    return order[:-1] + "0" <= lo if order.endswith("/") else order < lo


def _listing(
    directory: str, prefix: str, state: WalkState, *, counted: bool = True
) -> list[os.DirEntry[str]]:
    """A directory's entries; none (noted in state) when it cannot be listed.

    Listed in full before anything is yielded: the directory handle is not held
    open while the caller reads files (or abandons the walk).
    """
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except OSError as exc:
        if counted:  # else the part it belongs to says so
            log.warning("cannot list directory %r: %s", prefix or ".", exc.strerror)
        state.unreadable_dirs.append(prefix)
        return []
    state.directories += counted
    return entries


_SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def classify(path: str, rel: str, real_root: str, lst: os.stat_result) -> FoundFile:
    """What a name with an image extension is: a file to read, or why it is none.

    Never opens anything: a FIFO named `y.png` must not block the walk. A link is
    followed only to a file inside the image directory.
    """

    def problem(reason: str) -> FoundFile:
        return FoundFile(rel, path, lst.st_size, lst.st_mtime_ns, reason)

    st = lst
    if stat.S_ISLNK(lst.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath([target, real_root]) != real_root:
            return problem("symbolic link leads outside the image directory")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return problem("broken symbolic link")
        except OSError as exc:
            return problem(f"symbolic link cannot be followed: {exc.strerror}")
    kind = stat.S_IFMT(st.st_mode)
    if kind in _SPECIAL:
        return problem(f"not a regular file: {_SPECIAL[kind]}")
    if kind == stat.S_IFDIR:
        return problem("not a regular file: a link to a directory")
    return FoundFile(rel, path, st.st_size, st.st_mtime_ns)


def find_one(root: Path, file_name: str) -> FoundFile | None:
    """The candidate at file_name (relative), by the walk's rules; None if nothing
    is there (gone) or it is a directory (the walk goes into those)."""
    path = os.path.join(root, file_name)
    try:
        lst = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISDIR(lst.st_mode):
        return None
    found = classify(path, file_name, str(root), lst)
    return found._replace(sidecar_mtime_ns=sidecar_mtime(path))
