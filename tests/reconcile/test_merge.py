"""The rows read beside the walk: the merge alone, and in reconciles of trees whose
names sort awkwardly, on SQLite, on MariaDB and on a case-insensitive adopted table."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from imgwatch.db import images as images_module
from imgwatch.db.store import ImageStore
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import FoundFile, walk
from imgwatch.model import FACTS_READ, GONE, TO_READ, FileState, ScanSummary, Status
from imgwatch.reconcile.merge import TICK_EVERY, RowMerge, Tally, differences
from imgwatch.reconcile.reconciler import Reconciler
from tests.db.records import ORIGINAL_DDL
from tests.imagefiles import write_image
from tests.rows import all_rows
from tests.servers import MariaDB

# Names whose order trips a naive merge: a file beside a directory of the same stem
# ('.' and '-' sort before '/', '0' after), case, accents, digits, nesting.
AWKWARD = [
    "a.jpg",
    "a-b.jpg",
    "a/b.jpg",
    "a/c.jpg",
    "a/c/d.jpg",
    "a/c/d/e.jpg",
    "a0.jpg",
    "A.jpg",
    "B/x.jpg",
    "b.jpg",
    "b/x.jpg",
    "b/X.jpg",
    "caf\u00e9.jpg",
    "cafe/\u00e9t\u00e9.jpg",
    "z z/1.jpg",
    "z.jpg",
    "\u00e9/a.jpg",
    "\u65e5\u672c/\u5199\u771f.jpg",
]


def state(name: str, row_id: int, status: int = TO_READ) -> FileState:
    return (name, 1, 1, status, row_id, None)


def pages(rows: list[FileState], size: int = 2) -> Iterator[list[FileState]]:
    """rows in pages of `size`, as the store reads them, with an empty page too."""
    yield []
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def test_rows_in_the_walks_order_are_matched_one_by_one() -> None:
    rows = [state(n, i) for i, n in enumerate(sorted(["a", "b", "c", "d"]))]
    merge = RowMerge(pages(rows))
    assert merge.take("a") == rows[0]
    assert merge.take("aa") is None  # new: no row
    assert merge.take("c") == rows[2]  # b passed: gone unless found later
    assert merge.take("d") == rows[3]
    assert [r[0] for r in merge.rest()] == ["b"]
    assert merge.live == 4


def test_rows_out_of_the_walks_order_are_still_matched() -> None:
    # As a case-insensitive collation orders them: 'a' before 'B', unlike the walk.
    rows = [state("a.jpg", 1), state("B.jpg", 2), state("c.jpg", 3)]
    merge = RowMerge(pages(rows))
    assert merge.take("B.jpg") is None  # its row comes after 'a.jpg' ...
    merge.found_late("B.jpg")  # ... so the reconcile looked it up by name
    assert merge.take("a.jpg") == rows[0]
    assert merge.take("c.jpg") == rows[2]
    assert list(merge.rest()) == []
    assert merge.live == 3


def test_a_row_passed_by_the_walk_is_found_when_its_file_comes_later() -> None:
    rows = [state("b", 1), state("a", 2), state("c", 3)]
    merge = RowMerge(pages(rows))
    assert merge.take("c") == rows[2]  # b and a are passed
    assert merge.take("a") == rows[1]
    assert [r[0] for r in merge.rest()] == ["b"]


def test_rows_out_of_order_make_the_merge_inexact() -> None:
    ordered = RowMerge(pages([state("a", 1), state("b", 2), state("c", 3)]), exact=True)
    assert ordered.take("c") is not None and list(ordered.rest())  # a, b passed
    assert ordered.exact
    # As a case-insensitive collation gives them: 'a' before 'B'. Seen only once B's
    # page is read, after the walk asked for B: hence the collation is asked first.
    rows = [state("a", 1), state("B", 2), state("c", 3)]
    disordered = RowMerge(pages(rows, 1), exact=True)
    assert disordered.take("B") is None and disordered.exact
    assert disordered.take("a") is not None
    assert disordered.take("c") is not None  # past B, which came after a
    assert not disordered.exact
    assert [r[0] for r in disordered.rest()] == ["B"]  # then looked up by name: found late


def test_live_counts_rows_whose_file_was_there() -> None:
    rows = [state("a", 1), state("b", 2, GONE), state("c", 3)]
    merge = RowMerge(pages(rows))
    assert merge.take("zz") is None
    assert sorted(r[0] for r in merge.rest()) == ["a", "b", "c"]
    assert merge.live == 2


def test_in_a_part_a_name_below_the_space_may_have_its_row_in_the_part_before() -> None:
    whole = RowMerge(pages([]), exact=True)
    part = RowMerge(pages([]), exact=True, parted=True)
    assert not whole.may_have_row("m/\x01.jpg", "m/\x01.jpg")
    assert part.may_have_row("m/\x01.jpg", "m/\x01.jpg")
    assert not part.may_have_row("m/1.jpg", "m/1.jpg")
    assert part.may_have_row("stand-in#0123", "m/\udcff.jpg")  # a stand-in's row sorts elsewhere


def found(name: str, size: int = 1) -> FoundFile:
    return FoundFile(name, "/x/" + name, size, 1)


def test_differences_are_the_files_new_or_changed_and_the_rest_is_counted() -> None:
    rows: list[FileState] = [(n, 1, 1, FACTS_READ, i, None) for i, n in enumerate("abc")]
    merge = RowMerge(pages(rows), exact=True)
    tally = Tally(seen=10, unchanged=4)  # counts go on from where they were
    files = [found("a"), found("aa"), found("b", 2), found("c")]
    assert list(differences(files, merge, tally)) == [
        (files[1], "aa", False),
        (files[2], "b", True),
    ]
    assert (tally.seen, tally.unchanged) == (14, 6)


def test_differences_tick_and_stop_when_told() -> None:
    files = [found(f"{i:05d}") for i in range(3 * TICK_EVERY + 5)]
    ticks: list[int] = []

    def tick(seen: int) -> bool:
        ticks.append(seen)
        return len(ticks) == 2

    tally = Tally()
    assert len(list(differences(files, RowMerge(pages([])), tally, tick))) == 2 * TICK_EVERY - 1
    assert ticks == [TICK_EVERY, 2 * TICK_EVERY]
    assert tally.seen == 2 * TICK_EVERY


def test_random_trees_in_any_order_match_exactly() -> None:
    rng = random.Random(7)
    names = sorted({"".join(rng.choice("aB/.-0\u00e9") for _ in range(6)) for _ in range(2000)})
    for shuffled in (False, True):
        rows = [n for n in names if rng.random() < 0.6]
        files = [n for n in names if rng.random() < 0.6]
        order = list(rows)
        if shuffled:
            rng.shuffle(order)
        merge = RowMerge(pages([state(n, i) for i, n in enumerate(order)], 7))
        found = set()
        for name in files:
            if merge.take(name) is not None:
                found.add(name)
        late = (set(files) & set(rows)) - found
        assert not late or shuffled  # in order, nothing is found late
        for name in late:  # what the reconcile's lookup by name finds
            merge.found_late(name)
        rest = {r[0] for r in merge.rest()}
        assert rest == set(rows) - set(files)
        assert merge.live == len(rows)


def test_the_walk_yields_names_in_the_order_of_the_index(image_dir: Path) -> None:
    for name in AWKWARD:
        write_image(image_dir / name)
    names = [f.file_name for f in walk(image_dir, ImageNameFilter([".jpg"]))]
    assert sorted(names) == sorted(AWKWARD)
    assert names == sorted(names)


def reconcile(store: ImageStore, image_dir: Path) -> ScanSummary:
    return Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ImageNameFilter((".jpg",)),
        processor=FileProcessor("Image description"),
        batch_size=4,
    ).run()


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pages of three rows: every page boundary falls somewhere awkward.
    monkeypatch.setattr(images_module, "STATES_PAGE", 3)


def test_imgwatchs_tables_order_names_as_the_walk(store: ImageStore) -> None:
    assert store.names_in_code_point_order()


def test_a_case_insensitive_column_is_told(tmp_path: Path, mariadb: MariaDB) -> None:
    sqlite_url = URL.create("sqlite", database=str(tmp_path / "nocase.db"))
    mysql_url = mariadb.create_database()
    for url, ddl in (
        (
            sqlite_url,
            "CREATE TABLE images (id INTEGER PRIMARY KEY, "
            "file_name VARCHAR(255) NOT NULL UNIQUE COLLATE NOCASE, title VARCHAR(255), "
            "description TEXT, wp_url VARCHAR(255))",
        ),
        (mysql_url, ORIGINAL_CI),
    ):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(ddl))
        engine.dispose()
        store = ImageStore(url)
        store.open()
        try:
            assert not store.names_in_code_point_order()
        finally:
            store.close()


def test_pages_of_rows_come_in_order_and_whole(store: ImageStore, small_pages: None) -> None:
    with store.engine.begin() as conn:
        for name in AWKWARD:
            conn.execute(
                text("INSERT INTO images (file_name, status) VALUES (:n, 'pending')"),
                {"n": name},
            )
    names = [row[0] for page in store.file_state_pages() for row in page]
    assert sorted(names) == sorted(AWKWARD)
    assert len(names) == len(set(names))


def test_reconciles_of_an_awkward_tree_read_each_file_once(
    store: ImageStore, image_dir: Path, small_pages: None
) -> None:
    for name in AWKWARD:
        write_image(image_dir / name)
    first = reconcile(store, image_dir)
    assert (first.new, first.missing) == (len(AWKWARD), 0)
    again = reconcile(store, image_dir)
    assert (again.unchanged, again.read, again.new, again.missing) == (len(AWKWARD), 0, 0, 0)
    for name in ["a/c.jpg", "b.jpg", "\u00e9/a.jpg"]:
        os.remove(image_dir / name)
    write_image(image_dir / "a/c/new.jpg")
    last = reconcile(store, image_dir)
    assert (last.new, last.missing, last.unchanged) == (1, 3, len(AWKWARD) - 3)
    missing = {r["file_name"] for r in all_rows(store) if r["status"] == Status.MISSING}
    assert missing == {"a/c.jpg", "b.jpg", "\u00e9/a.jpg"}


# The original service's table as MySQL makes it without a collation: case-insensitive,
# so its index orders 'a.jpg' before 'B.jpg', unlike the walk.
ORIGINAL_CI = ORIGINAL_DDL.rstrip() + " CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"


def test_a_case_insensitive_adopted_table_is_reconciled_exactly(
    mariadb: MariaDB, image_dir: Path, small_pages: None
) -> None:
    url: URL = mariadb.create_database()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(ORIGINAL_CI))
    engine.dispose()
    names = [n for n in AWKWARD if n not in ("A.jpg", "B/x.jpg", "b/X.jpg")]  # no case twins
    names += ["Zebra.jpg", "apple.jpg", "Mango/b.jpg", "mango.jpg", "IMG_0001.JPG"]
    for name in names:
        write_image(image_dir / name)
    store = ImageStore(url)
    store.open()  # adopts the table, keeping its collation
    try:
        first = reconcile(store, image_dir)
        assert (first.new, first.missing) == (len(names), 0)
        again = reconcile(store, image_dir)
        assert (again.unchanged, again.read, again.missing) == (len(names), 0, 0)
        os.remove(image_dir / "apple.jpg")
        last = reconcile(store, image_dir)
        assert (last.unchanged, last.read, last.missing) == (len(names) - 1, 0, 1)
        missing = [r["file_name"] for r in all_rows(store) if r["status"] == Status.MISSING]
        assert missing == ["apple.jpg"]
    finally:
        store.close()
