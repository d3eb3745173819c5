"""A reconcile in parts (reconcile/parts.py): the cut, one part alone, and whole
rescans compared in forked processes, on SQLite and the real MariaDB, beside the
same rescans in one walk."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import WalkState, walk
from imgwatch.model import NameRange, ScanSummary, Status
from imgwatch.reconcile import parts
from imgwatch.reconcile.readers import ProcessReaders
from imgwatch.reconcile.reconciler import Reconciler
from tests.imagefiles import write_image
from tests.rows import all_rows

ACCEPT = ImageNameFilter((".jpg", ".png"))


class SpyReaders(ProcessReaders):
    """The real processes; notes the parts handed to them."""

    def __init__(self, processes: int) -> None:
        super().__init__(processes)
        self.parts: list[NameRange] = []

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        if fn is parts.compare_part:
            self.parts.append(args[2])
        return super().call(fn, *args)


@pytest.fixture
def readers() -> Iterator[SpyReaders]:
    # Parts are compared in processes forked from this one, which must be its only thread.
    assert threading.active_count() == 1, f"threads left running: {threading.enumerate()}"
    with SpyReaders(2) as r:
        yield r


def rescan(store: ImageStore, image_dir: Path, readers: ProcessReaders | None) -> ScanSummary:
    return Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ACCEPT,
        processor=FileProcessor("Image description"),
        batch_size=16,
        readers=readers,
    ).run()


def counts(summary: ScanSummary) -> tuple[int, ...]:
    return (
        summary.new,
        summary.changed,
        summary.unchanged,
        summary.rejected,
        summary.missing,
        summary.failed,
    )


def tree(root: Path, names: list[str]) -> None:
    for name in names:
        write_image(root / name, 4, 4, color="red")


NAMES = [
    "a.jpg",
    "a/b.jpg",
    "a/c/d.jpg",
    "a0.jpg",
    "b/x.jpg",
    "b.jpg",
    "c/1.png",
    "c/2.png",
    "d/e/f/g.jpg",
    "z z/1.jpg",
    "\u00e9/a.jpg",
    "\u65e5\u672c/\u5199\u771f.jpg",
]


# --- the cut ---------------------------------------------------------------------------


def check_cut(cut: list[NameRange]) -> None:
    """Contiguous ranges from nothing to nothing, each starting where the last ended."""
    assert cut[0][0] is None and cut[-1][1] is None
    for (_, hi), (lo, _) in pairwise(cut):
        assert hi is not None and hi == lo
    bounds = [lo for lo, _ in cut[1:] if lo is not None]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)


def test_the_parts_together_are_the_walk(image_dir: Path) -> None:
    tree(image_dir, NAMES)
    whole_state = WalkState()
    whole = [f.file_name for f in walk(image_dir, ACCEPT, whole_state)]
    for wanted in (1, 2, 3, 5, 8, 50):
        cut = parts.split(image_dir, wanted)
        check_cut(cut)
        assert len(cut) <= wanted
        state = WalkState()
        pieces = [[f.file_name for f in walk(image_dir, ACCEPT, state, names=p)] for p in cut]
        assert [n for piece in pieces for n in piece] == whole
        # Each directory counted once, by the part it belongs to.
        assert state.directories == whole_state.directories
    assert len(parts.split(image_dir, 8)) > 4


def test_a_dated_tree_is_cut_below_its_year(image_dir: Path) -> None:
    for month in range(1, 13):
        for day in (1, 15):
            write_image(image_dir / "2024" / f"{month:02d}" / f"{day:02d}" / "p.jpg", 2, 2)
    cut = parts.split(image_dir, 16)
    check_cut(cut)
    assert len(cut) >= 8
    assert all(lo.startswith("2024/") for lo, _ in cut[1:] if lo is not None)


def test_no_part_starts_at_a_name_with_a_control_character(image_dir: Path) -> None:
    for name in ["a", "m", "m\x01", "m\x1fz", "n", "z"]:
        write_image(image_dir / name / "1.jpg", 2, 2)
    cut = parts.split(image_dir, 6)
    check_cut(cut)
    # Not m\x01/ nor m\x1fz/: the two parts that would start there begin at m/.
    assert [lo for lo, _ in cut[1:]] == ["m/", "n/", "z/"]


def test_an_empty_tree_is_one_part(image_dir: Path) -> None:
    assert parts.split(image_dir, 16) == [(None, None)]


# --- rescans in parts -----------------------------------------------------------------


def test_a_rescan_in_parts_finds_what_one_walk_finds(
    store: ImageStore, image_dir: Path, tmp_path: Path, readers: SpyReaders
) -> None:
    tree(image_dir, NAMES + [f"many/{i:03d}.jpg" for i in range(40)])
    (image_dir / "b" / "text.jpg").write_text("not an image")
    first = rescan(store, image_dir, readers)
    assert readers.parts == []  # into an empty table every file is new: one walk
    assert (first.new, first.rejected) == (len(NAMES) + 40, 1)
    # New, changed, gone, and unchanged, in several parts at once.
    write_image(image_dir / "a" / "c" / "new.jpg", 3, 3)
    write_image(image_dir / "c" / "1.png", 7, 7, color="blue")
    (image_dir / "d" / "e" / "f" / "g.jpg").unlink()
    shutil.rmtree(image_dir / "many")
    readers.parts.clear()
    again = rescan(store, image_dir, readers)
    assert len(readers.parts) > 4
    # The text file is unchanged (not read again), with the 10 images left alone.
    assert counts(again) == (1, 1, len(NAMES) - 2 + 1, 0, 41, 0)
    rows = {r["file_name"]: r for r in all_rows(store)}
    assert rows["d/e/f/g.jpg"]["status"] == Status.MISSING
    assert rows["a/c/new.jpg"]["status"] == Status.DONE
    assert rows["c/1.png"]["width"] == 7
    # Once more: nothing left to do, in parts or in one walk.
    settled = rescan(store, image_dir, readers)
    assert (settled.new, settled.changed, settled.missing) == (0, 0, 0)
    assert settled.unchanged == len(NAMES) - 1 + 2
    one_walk = rescan(store, image_dir, None)
    assert counts(one_walk) == counts(settled)


def test_a_part_with_more_differences_than_it_may_send_is_walked_here(
    store: ImageStore, image_dir: Path, readers: SpyReaders, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set before the processes are forked: they inherit it.
    monkeypatch.setattr(parts, "PART_LIMIT", 3)
    names = [f"d{i}/{j}.jpg" for i in range(6) for j in range(8)]
    tree(image_dir, names[:1])
    rescan(store, image_dir, None)
    tree(image_dir, names[1:])
    first = rescan(store, image_dir, readers)
    assert readers.parts and first.new == len(names) - 1
    assert {r["file_name"]: r["status"] for r in all_rows(store)} == dict.fromkeys(
        names, Status.DONE
    )
    # Few differences: sent back by the processes, read here.
    write_image(image_dir / "d3" / "new.jpg", 2, 2)
    (image_dir / "d5" / "0.jpg").unlink()
    again = rescan(store, image_dir, readers)
    assert (again.new, again.missing, again.unchanged) == (1, 1, len(names) - 1)


REAL_COMPARE_PART = parts.compare_part


def dying_part(root: Path, accept: ImageNameFilter, names: NameRange, exact: bool) -> object:
    """Kills the process that gets any part but the first, as the OOM killer would."""
    if names[0] is not None:
        os._exit(137)
    return REAL_COMPARE_PART(root, accept, names, exact)


def test_a_part_process_that_dies_leaves_the_rest_of_the_tree_to_the_rescan(
    store: ImageStore,
    image_dir: Path,
    readers: SpyReaders,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tree(image_dir, NAMES)
    rescan(store, image_dir, None)
    write_image(image_dir / "z z" / "2.jpg", 2, 2)
    monkeypatch.setattr(parts, "compare_part", dying_part)
    summary = rescan(store, image_dir, readers)
    assert len(readers.parts) > 1
    assert (summary.new, summary.unchanged, summary.missing) == (1, len(NAMES), 0)
    assert "a reading process died; comparing the rest of the tree here" in caplog.text
    assert len(all_rows(store)) == len(NAMES) + 1


def failing_part(root: Path, accept: ImageNameFilter, names: NameRange, exact: bool) -> object:
    raise DatabaseUnavailable("database x: reading known files failed: gone away")


def test_a_database_error_in_a_part_ends_the_rescan_and_marks_nothing(
    store: ImageStore, image_dir: Path, readers: SpyReaders, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(image_dir, NAMES)
    rescan(store, image_dir, None)
    shutil.rmtree(image_dir / "a")
    monkeypatch.setattr(parts, "compare_part", failing_part)
    with pytest.raises(DatabaseUnavailable, match="gone away"):
        rescan(store, image_dir, readers)
    assert Status.MISSING not in store.counts_by_status()


def test_a_name_a_padded_collation_puts_in_the_part_before_keeps_its_row(
    store: ImageStore, image_dir: Path, readers: SpyReaders, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MariaDB's utf8mb4_bin pads with spaces: it orders `m/\x01.jpg` before `m/`, so
    # the row comes with the part before the one whose walk finds the file.
    names = ["a/1.jpg", "m/\x01.jpg", "m/1.jpg", "m\x01.jpg", "z/1.jpg"]
    tree(image_dir, names)
    cut: list[NameRange] = [(None, "m/"), ("m/", "z/"), ("z/", None)]
    monkeypatch.setattr("imgwatch.reconcile.reconciler.split", lambda root, wanted: cut)
    first = rescan(store, image_dir, readers)
    assert first.new == len(names)
    again = rescan(store, image_dir, readers)
    assert readers.parts == cut
    assert counts(again) == (0, 0, len(names), 0, 0, 0)
    (image_dir / "m" / "\x01.jpg").unlink()
    gone = rescan(store, image_dir, readers)
    assert (gone.unchanged, gone.missing) == (len(names) - 1, 1)
    assert {r["file_name"] for r in all_rows(store) if r["status"] == Status.MISSING} == {
        "m/\x01.jpg"
    }


def test_a_reconcile_in_the_daemon_or_beside_a_thread_is_one_walk(
    store: ImageStore, image_dir: Path, readers: SpyReaders
) -> None:
    tree(image_dir, NAMES)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        summary = rescan(store, image_dir, readers)
    finally:
        stop.set()
        other.join()
    assert summary.new == len(NAMES)
    assert readers.parts == []


def test_leftover_rows_of_a_part_are_its_gone_rows(store: ImageStore, image_dir: Path) -> None:
    tree(image_dir, NAMES)
    Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ACCEPT,
        processor=FileProcessor("Image description"),
        batch_size=16,
    ).run()
    (image_dir / "b" / "x.jpg").unlink()
    parts.can_split(NoForks(), store)  # as a part process sees the store
    result = parts.compare_part(image_dir, ACCEPT, ("b/", "c/"), True)
    assert result is not None
    assert result.differences == []
    assert [row[0] for row in result.leftover] == ["b/x.jpg"]
    assert (result.tally.seen, result.tally.unchanged, result.live) == (0, 0, 1)
    assert result.exact and result.directories == 1


class NoForks:
    """Readers already forked from this process (so the store is theirs)."""

    processes = 1

    def forks_from_here(self) -> bool:
        return True

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")


def test_a_tree_of_mostly_new_files_is_walked_here_after_the_first_parts(
    store: ImageStore, image_dir: Path, readers: SpyReaders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("imgwatch.reconcile.reconciler._MOSTLY_NEW_AFTER", 100)
    names = [f"d{i:02d}/{j:02d}.jpg" for i in range(20) for j in range(30)]
    tree(image_dir, names[:1])
    rescan(store, image_dir, None)  # a table with a row: parts are tried
    tree(image_dir, names[1:])
    first = rescan(store, image_dir, readers)
    assert first.new == len(names) - 1
    # Parts of about 19 files: six compared elsewhere (and four more handed out
    # meanwhile) make 100 files seen, all new; the rest is walked here, the
    # processes left to read the files.
    cut = parts.split(image_dir, 2 * parts.PARTS_PER_PROCESS)
    assert 0 < len(readers.parts) <= 6 + 2 * readers.processes < len(cut)
    assert {r["file_name"] for r in all_rows(store)} == set(names)
    readers.parts.clear()
    again = rescan(store, image_dir, readers)
    assert (again.unchanged, again.new, again.missing) == (len(names), 0, 0)
    assert len(readers.parts) == len(cut)


def test_into_an_empty_table_a_rescan_walks_in_one_piece(
    store: ImageStore, image_dir: Path, readers: SpyReaders
) -> None:
    tree(image_dir, NAMES)
    assert rescan(store, image_dir, readers).new == len(NAMES)
    assert readers.parts == []
    assert rescan(store, image_dir, readers).unchanged == len(NAMES)
    assert len(readers.parts) > 4
