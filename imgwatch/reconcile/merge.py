"""The rows beside the walk: each file found is matched with its row as both go by
in file_name order, so a reconcile holds one page of rows, never the whole table.

The walk (files/walk.py) yields names in the order the database's file_name index
keeps them, so a file with no row beside it has none. Where the two orders may
differ (a column with a case-insensitive collation adopted from the original
service; names with control characters under MySQL's padding rules; stand-in
names of unstorable paths), the merge stays exact and only holds more: a row the
walk has passed is kept aside until the end, and a file with no row matched is
looked up by name before it is read (reconcile/reconciler.py, `exact`). Rows that
come out of the walk's order also make the merge inexact from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

from imgwatch.files.decide import unchanged
from imgwatch.files.names import is_plain, row_name
from imgwatch.files.walk import FoundFile
from imgwatch.model import GONE, STATE, FileState

# A file that differs from its row: the file, its row name, and whether the merge
# had a row for it.
Difference = tuple[FoundFile, str, bool]


@dataclass(slots=True)
class Tally:
    """Files a comparison went through, and how many of them were unchanged."""

    seen: int = 0
    unchanged: int = 0


# Files compared between two calls of a comparison's `tick`: often enough for a
# progress bar, rarely enough to cost nothing on the walk of an unchanged tree.
TICK_EVERY = 256


def differences(
    files: Iterable[FoundFile],
    rows: RowMerge,
    tally: Tally,
    tick: Callable[[int], bool] | None = None,
) -> Generator[Difference, None, None]:
    """The walk's files that are new or changed, each beside its row; `tally`
    counts the rest. `tick(files so far)`, every TICK_EVERY files, stops the
    comparison when it returns True."""
    take, next_unchanged = rows.take, rows.next_unchanged
    before_seen, before_same = tally.seen, tally.unchanged
    seen = same = 0
    try:
        # This loop runs once per file of the archive: a settled one takes only the
        # first `continue`, nothing read, nothing kept.
        for found in files:
            seen += 1
            if tick is not None and not seen % TICK_EVERY and tick(before_seen + seen):
                return
            if next_unchanged(found):
                same += 1
                continue
            file_name = found.file_name
            name = file_name if is_plain(file_name) else row_name(file_name)
            row = take(name)
            if row is not None and unchanged(row, found):
                same += 1
                continue
            tally.seen, tally.unchanged = before_seen + seen, before_same + same
            yield found, name, row is not None
    finally:
        tally.seen, tally.unchanged = before_seen + seen, before_same + same


class RowMerge:
    """Takes rows, a page at a time in file_name order, as the walk asks for names."""

    def __init__(
        self, pages: Iterator[list[FileState]], *, exact: bool = False, parted: bool = False
    ) -> None:
        self._pages = pages
        # Whether a file with no row beside it has none: the database orders names as
        # the walk does (db/images.py: names_in_code_point_order), and so far the rows
        # came in that order.
        self.exact = exact
        # The rows of one part of the tree (reconcile/parts.py), where a name with a
        # character below the space may have its row in the part before.
        self.parted = parted
        self._last = ""  # the name of the last row of the page before
        self._page: list[FileState] = []
        self._at = 0  # the next row: self._page[self._at]
        # Rows the walk went past without finding their file: gone, or (when the two
        # orders differ) found later.
        self._passed: dict[str, FileState] = {}
        # Rows found by name after the merge had none for them, still to come.
        self._late: set[str] = set()
        self.live = 0  # rows read so far whose file was there when last seen

    def next_unchanged(self, found: FoundFile) -> bool:
        """Whether the next row is named exactly as `found` and says the file is
        unchanged; that row is taken then. The path of a settled archive, in one
        call, before the file's row name is worked out (files/names.py: row_name):
        a file named as a row is that row's."""
        page, at = self._page, self._at
        if at < len(page) and page[at][0] == found[0] and unchanged(page[at], found):
            self._at = at + 1
            return True
        return False

    def take(self, name: str) -> FileState | None:
        """The row named `name`, or None if there is none (so far as the rows read
        tell: see the module's docstring)."""
        page, at = self._page, self._at
        # A settled archive takes only this path: the next row is this file's.
        if at < len(page) and page[at][0] == name:
            self._at = at + 1
            return page[at]
        head = self._head()
        while head is not None and head[0] < name:
            self._pass(head)
            self._at += 1
            head = self._head()
        if head is not None and head[0] == name:
            self._at += 1
            return head
        return self._passed.pop(name, None) if self._passed else None

    def may_have_row(self, name: str, file_name: str) -> bool:
        """Whether a file the merge found no row for may have one all the same, to be
        looked up by name: where the orders may differ, or its row name (`name`) is
        a stand-in for its path (`file_name`), whose row sorts elsewhere."""
        return not self.exact or name != file_name or (self.parted and not name.isprintable())

    def found_late(self, name: str) -> None:
        """The walk's file `name` has a row after all (looked up by name): it is not gone."""
        if self._passed.pop(name, None) is None:
            self._late.add(name)

    def rest(self) -> Iterator[FileState]:
        """The rows no file was found for: read to the end, so `live` is the table's."""
        passed, self._passed = self._passed, {}
        yield from passed.values()
        while (row := self._head()) is not None:
            self._at += 1
            if row[0] in self._late:
                self._late.discard(row[0])
            else:
                yield row

    def _head(self) -> FileState | None:
        """The next row, turning to the next page when this one is done; None at the end."""
        if self._at < len(self._page):
            return self._page[self._at]
        for page in self._pages:
            if page:
                self._page, self._at = page, 0
                self.live += sum(1 for row in page if row[STATE] != GONE)
                if self.exact and not _ascending(self._last, page):
                    self.exact = False
                self._last = page[-1][0]
                return page[0]
        self._page, self._at = [], 0
        return None

    def _pass(self, row: FileState) -> None:
        if row[0] in self._late:
            self._late.discard(row[0])
        else:
            self._passed[row[0]] = row


def _ascending(last: str, page: list[FileState]) -> bool:
    """Whether the page's names come in the walk's order, after `last`."""
    names = [row[0] for row in page]
    # Sorting what is sorted already is one pass in C; names are unique (the index).
    return last < names[0] and names == sorted(names)
