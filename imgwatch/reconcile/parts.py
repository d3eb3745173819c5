"""A reconcile in parts: the tree cut by name into contiguous parts, each walked
beside its own rows in a reading process, so that a settled archive is compared
on every core, not one.

Names order the walk and the file_name index alike (files/walk.py), so a part is a
range of names, lo <= name < hi: its files are the walk's between two names and its
rows one range query on the index. A part process hands back what differs (files
new or changed, rows no file was found for) and counts; the reconcile's own process
reads and records what differs and settles what is gone, over the whole tree, as
it does without parts. A part with many differences (a first rescan, a new
directory) is handed back unwalked and done in the reconcile's process: so what a
part process sends back stays small, and memory flat, whatever the tree.

Where the database's order and the walk's may differ the merge is exact all the
same, as it is without parts (reconcile/merge.py), with one more case: MySQL's
*_bin collations pad with spaces, so they order a name with a character below the
space (`m/\\x01.jpg`) before a shorter one it starts with (`m/`). Such a file's row
may come with the part before, so a file with such a name and no row beside it is
looked up by name, and no part starts at such a name.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import WalkState, walk, walk_position
from imgwatch.model import FileState, NameRange
from imgwatch.reconcile.merge import Difference, RowMerge, Tally, differences

log = logging.getLogger(__name__)


class PartRows(Protocol):
    """The rows a part process reads: the store, inherited when it was forked."""

    def file_state_pages(
        self, page: int | None = None, names: NameRange = (None, None)
    ) -> Iterator[list[FileState]]: ...

    def release_connections(self) -> None: ...


class PartReaders(Protocol):
    """The reading processes the parts are compared in (reconcile/readers.py)."""

    processes: int

    def forks_from_here(self) -> bool: ...

    def call(
        self, fn: Callable[..., PartResult | None], *args: object
    ) -> Future[PartResult | None]: ...


# Differences a part process sends back at most; a part with more is walked again
# in the reconcile's process, which reads its files as it goes.
PART_LIMIT = 2_000

# Parts per reading process: enough that processes which finish early take more,
# so parts of unequal size still keep every core busy to the end.
PARTS_PER_PROCESS = 16


@dataclass(slots=True)
class PartResult:
    """What a part process found in its part of the tree."""

    # Files that differ from their rows (or have none).
    differences: list[Difference]
    tally: Tally
    live: int  # rows in the part whose file was there when last seen
    # Rows the part found no file for: gone, or (see the module's docstring) a file
    # of a later part, which looks its row up by name.
    leftover: list[FileState]
    exact: bool  # whether the part's rows came in the walk's order
    unreadable_dirs: list[str]
    directories: int


# The store the part processes read, set before they are forked: they inherit it,
# nothing is sent to them but names.
_rows: PartRows | None = None


def can_split(readers: PartReaders, rows: PartRows) -> bool:
    """Whether parts can be compared in the reading processes: they are forked from
    this process, now, with the store, or were forked with this store already."""
    global _rows
    if _rows is rows:
        return True
    if not readers.forks_from_here():
        return False
    # Forked after this: a copy of a pooled connection must not be used by two processes.
    rows.release_connections()
    _rows = rows
    return True


def compare_part(
    root: Path, accept: ImageNameFilter, names: NameRange, exact: bool
) -> PartResult | None:
    """In a part process: walk the part beside its rows; what differs, and counts.
    None where more than PART_LIMIT files differ: the part is to be walked again in
    the reconcile's process."""
    assert _rows is not None, "part processes are forked after can_split()"
    rows = RowMerge(_rows.file_state_pages(names=names), exact=exact, parted=True)
    state = WalkState()
    tally = Tally()
    found: list[Difference] = []
    for difference in differences(walk(root, accept, state, names=names), rows, tally):
        found.append(difference)
        if len(found) > PART_LIMIT:
            return None
    leftover = list(rows.rest())
    return PartResult(
        found,
        tally,
        rows.live,
        leftover,
        rows.exact,
        state.unreadable_dirs,
        state.directories,
    )


def compared_parts(
    readers: PartReaders, root: Path, accept: ImageNameFilter, parts: list[NameRange], exact: bool
) -> Iterator[tuple[NameRange, PartResult | None]]:
    """Each part with its result, in the walk's order; None for a part to be walked
    in the caller's process. Compared a few parts ahead of the one handed out:
    enough to keep every process busy, few enough that results waiting for the
    caller (who may be reading files) hold little."""
    ahead = 2 * readers.processes
    pending: deque[tuple[NameRange, Future[PartResult | None]]] = deque()
    todo = iter(parts)
    try:
        while True:
            while len(pending) < ahead and (part := next(todo, None)) is not None:
                pending.append((part, readers.call(compare_part, root, accept, part, exact)))
            if not pending:
                return
            part, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                # A part process died (the OOM killer): this part and the rest are
                # walked in the caller's process, which also reads their files.
                log.warning("a reading process died; comparing the rest of the tree here")
                yield part, None
                for part, _ in pending:
                    yield part, None
                pending.clear()
                for part in todo:
                    yield part, None
                return
            yield part, result
    finally:
        for _, future in pending:
            future.cancel()


def split(root: Path, parts: int) -> list[NameRange]:
    """The tree cut into about `parts` contiguous ranges of names, of about the same
    number of files, judged from the first levels of directories."""
    # Units in walk order, by walk position (a directory's ends in a slash); a
    # directory weighs what the directories listed so far held on average, a file 1.
    units = _listing(str(root), "")
    listed, held = 1, len(units)
    for _ in range(3):  # deep enough for year/month/day trees
        directories = sum(1 for unit in units if unit.endswith("/"))
        if directories == 0 or directories >= parts:
            break
        deeper: list[str] = []
        for unit in units:
            if unit.endswith("/"):
                entries = _listing(os.path.join(root, unit), unit)
                listed, held = listed + 1, held + len(entries)
                deeper.extend(entries)
            else:
                deeper.append(unit)
        units = deeper
    per_directory = max(1.0, held / listed)
    weights = [per_directory if unit.endswith("/") else 1.0 for unit in units]
    share = sum(weights) / parts
    bounds: list[str] = []
    so_far = 0.0
    for unit, weight in zip(units, weights, strict=True):
        # A part starts at a name the database orders as the walk does.
        if so_far >= share * (len(bounds) + 1) and unit.isprintable():
            bounds.append(unit)
        so_far += weight
    los: list[str | None] = [None, *bounds]
    his: list[str | None] = [*bounds, None]
    return list(zip(los, his, strict=True))


def _listing(directory: str, prefix: str) -> list[str]:
    """A directory's entries by walk position, in walk order."""
    try:
        with os.scandir(directory) as listing:
            entries = [prefix + walk_position(e) for e in listing if not e.name.startswith(".")]
    except OSError:
        return []  # the walk says why
    entries.sort()
    return entries
