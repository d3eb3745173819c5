"""The walk of the image directory: which names are candidate images, and what
each one is, without opening anything.

The reconcile walks the whole tree; the daemon walks a directory that arrived
and looks at one path at a time (find_one), by the same rules.
"""

from __future__ import annotations

import logging
import operator
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
    look = _Look(str(root), accept.extensions, state, names)
    start = os.path.join(look.root, subdir) if subdir else look.root
    # One frame per directory on the way down: what is left of its files and
    # subdirectories, in walk order, with its prefix and its path.
    frames = [_frame(look, start, subdir + "/" if subdir else "")]
    while frames:
        items, prefix, directory = frames[-1]
        for item in items:
            if isinstance(item, str):  # a subdirectory: down first, its names sort here
                frames.append(_frame(look, directory + item[len(prefix) : -1], item))
                break
            yield item
        else:
            frames.pop()


@dataclass(slots=True)
class _Look:
    """What a walk looks at each directory with."""

    root: str
    extensions: tuple[str, ...]
    state: WalkState
    names: NameRange


# A directory on the way down: its files (FoundFile) and subdirectories (their
# prefix) still to walk, its prefix (relative to the root, with a slash), its
# path (with a slash).
_Frame = tuple[Iterator["FoundFile | str"], str, str]


def _frame(look: _Look, directory: str, prefix: str) -> _Frame:
    """A directory's candidate files, looked at, and its subdirectories, in walk
    order, within the walk's range of names.

    Listed and looked at in full before anything is yielded, through a handle
    closed before the caller sees a file: none is held open while the caller
    reads files (or abandons the walk). A file's stat goes through the handle:
    the kernel resolves one name, not the whole path again, which saves a tenth
    of a bare walk's time.
    """
    lo, hi = look.names
    # A directory is counted by the part of the tree it belongs to, not by every
    # part whose walk passes through it on the way down to its range.
    counted = lo is None or prefix >= lo
    path = os.path.join(directory, "")
    handle = _open(directory, prefix, look.state, counted)
    if handle is None:
        return iter(()), prefix, path
    try:
        entries = _listing(handle, prefix, look.state, counted)
        # The names of images with a sidecar, from all the entries: a range may end
        # between an image and its sidecar. Usually none, then one test per image.
        suffix = len(SIDECAR_SUFFIX)
        sidecars = {e.name[:-suffix] for e in entries if e.name.endswith(SIDECAR_SUFFIX)}
        # Most directories lie wholly inside the range: sorted by name, in C, and
        # their subdirectories, if any, put in place after.
        whole = (lo is None or lo <= prefix) and (hi is None or not hi.startswith(prefix))
        if whole:
            entries.sort(key=_NAME)
        else:
            _keep_range(entries, prefix, lo, hi)
        items = _looked_at(entries, sidecars, look, path, prefix)
    finally:
        os.close(handle)
    if whole and str in map(type, items):  # a subdirectory among them (in C)
        # `a/` sorts after `a.jpg` and `a-2.jpg`, not before them (walk_position).
        items.sort(key=_position)
    return iter(items), prefix, path


_NAME = operator.attrgetter("name")


def _position(item: FoundFile | str) -> str:
    return item if isinstance(item, str) else item.file_name


def _looked_at(
    entries: list[os.DirEntry[str]], sidecars: set[str], look: _Look, directory: str, prefix: str
) -> list[FoundFile | str]:
    """The entries that are candidate files, stat'ed, and subdirectories, by name."""
    extensions = look.extensions
    items: list[FoundFile | str] = []
    # This loop runs once per file of the archive: it keeps to what it must (one
    # stat per candidate, nothing opened) and to cheap string tests.
    for entry in entries:
        name = entry.name
        if name[0] == ".":  # dotfiles, `.#lock` files, rsync's `.name.XXXXXX`
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if not is_hidden_or_temp(name):
                    items.append(prefix + name + "/")
                continue
            low = name.lower()
            if not low.endswith(extensions) or low.endswith(TEMP_SUFFIXES):
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            log.warning("cannot stat %r: %s", prefix + name, exc.strerror)
            continue
        if S_ISREG(st.st_mode):
            # FoundFile(...) without its Python-level __new__: half the cost.
            found = _new(
                FoundFile, (prefix + name, directory + name, st.st_size, st.st_mtime_ns, None, None)
            )
        else:
            found = classify(directory + name, prefix + name, look.root, st)
        if sidecars and name in sidecars:
            found = found._replace(sidecar_mtime_ns=sidecar_mtime(directory + name))
        items.append(found)
    return items


_new = tuple.__new__


def _keep_range(
    entries: list[os.DirEntry[str]], prefix: str, lo: str | None, hi: str | None
) -> None:
    """Sort a directory's entries in walk order, and drop those wholly outside the
    range of names lo <= name < hi."""
    entries.sort(key=walk_position)
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


def _open(directory: str, prefix: str, state: WalkState, counted: bool) -> int | None:
    """A handle on the directory, or None (noted in state) when it cannot be opened."""
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        _unlistable(prefix, exc, state, counted)
        return None


def _listing(handle: int, prefix: str, state: WalkState, counted: bool) -> list[os.DirEntry[str]]:
    """A directory's entries; none (noted in state) when it cannot be listed."""
    try:
        with os.scandir(handle) as listing:
            entries = list(listing)
    except OSError as exc:
        _unlistable(prefix, exc, state, counted)
        return []
    state.directories += counted
    return entries


def _unlistable(prefix: str, exc: OSError, state: WalkState, counted: bool) -> None:
    """Note a directory the walk could not list: its rows are not taken for gone."""
    if counted:  # else the part it belongs to says so
        if isinstance(exc, FileNotFoundError) and prefix:
            # Moved or deleted since its parent was listed, or since it arrived (the
            # daemon walks an arrived directory as it has room): nothing is wrong.
            # (The image directory itself gone is: a share that went away.)
            log.info("directory %r went away before it was walked", prefix)
        else:
            log.warning("cannot list directory %r: %s", prefix or ".", exc.strerror)
    state.unreadable_dirs.append(prefix)


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
