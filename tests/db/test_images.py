"""Rows by name (imgwatch/db/images.py): reads, renames, missing and forgotten rows, counts."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from imgwatch.db import images as images_module
from imgwatch.db.engine import ID_CHUNK, PACKED_MAX
from imgwatch.db.store import ImageStore
from imgwatch.model import (
    FACTS_READ,
    FILE_NAME_MAX,
    GONE,
    NOT_AN_IMAGE,
    STATE_ID,
    TO_READ,
    FileState,
    KnownFile,
    Status,
)
from tests.db.records import record
from tests.rows import all_rows, file_states, row_of
from tests.servers import MariaDB


def test_mark_missing_keeps_row_and_url(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg")])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE images SET wp_url='https://wp/a.jpg' WHERE file_name='a.jpg'"))
    assert store.mark_missing([file_states(store)["a.jpg"][STATE_ID]]) == 1
    row = row_of(store, "a.jpg")
    assert row is not None
    assert (row["status"], row["wp_url"], row["sha256"]) == (
        Status.MISSING,
        "https://wp/a.jpg",
        "0" * 64,
    )
    assert (row_of(store, "b.jpg") or {})["status"] == Status.DONE


def test_rename_moves_the_row_unless_the_new_name_has_one(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg"), record("c.jpg")])
    before = store.lookup("a.jpg")
    assert store.rename("a.jpg", "sub/a.jpg")
    assert store.lookup("sub/a.jpg") == before
    assert store.lookup("a.jpg") is None
    assert not store.rename("b.jpg", "c.jpg")  # c.jpg has its own row
    assert not store.rename("nothing.jpg", "x.jpg")
    assert set(file_states(store)) == {"sub/a.jpg", "b.jpg", "c.jpg"}


def test_directory_rename_and_like_wildcards_in_names(store: ImageStore) -> None:
    # '%' and '_' in a directory name must not match other directories.
    names = ["50%_off/a.jpg", "50%_off/deep/b.jpg", "50xyoff/c.jpg", "50%_off2/d.jpg", "new/a.jpg"]
    store.upsert([record(n) for n in names])
    assert sorted(n for n, _ in store.rows_under("50%_off/")) == [
        "50%_off/a.jpg",
        "50%_off/deep/b.jpg",
    ]
    moved, stuck = store.rename_prefix("50%_off/", "new/")
    assert (moved, stuck) == (1, ["50%_off/a.jpg"])  # new/a.jpg was taken
    assert set(file_states(store)) == {
        "50%_off/a.jpg",
        "new/deep/b.jpg",
        "50xyoff/c.jpg",
        "50%_off2/d.jpg",
        "new/a.jpg",
    }


def test_mark_missing_by_name_spares_a_row_renamed_meanwhile(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg")])
    known = file_states(store)
    store.rename("a.jpg", "moved.jpg")  # a move lands while a scan runs
    ids = [known["a.jpg"][STATE_ID], known["b.jpg"][STATE_ID]]
    assert store.mark_missing(ids, names=["a.jpg", "b.jpg"]) == 1
    rows = {r["file_name"]: r["status"] for r in all_rows(store)}
    assert rows == {"moved.jpg": Status.DONE, "b.jpg": Status.MISSING}


def test_forget_removes_rows(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg")])
    assert store.forget([file_states(store)["a.jpg"][STATE_ID]]) == 1
    assert set(file_states(store)) == {"b.jpg"}


def test_file_states_give_each_row_its_facts_and_state(store: ImageStore) -> None:
    store.upsert(
        [
            record("read.jpg", size_bytes=5, mtime_ns=6, sidecar_mtime_ns=7),
            record("unread.jpg", status=Status.PENDING, sha256=None, size_bytes=None),
            record("bad.txt", status=Status.REJECTED),
            record("gone.jpg", status=Status.MISSING),
        ]
    )
    states = file_states(store)
    ids = {r["file_name"]: r["id"] for r in all_rows(store)}
    assert states == {
        "read.jpg": ("read.jpg", 5, 6, FACTS_READ, ids["read.jpg"], 7),
        "unread.jpg": (
            "unread.jpg",
            None,
            1_700_000_000_000_000_000,
            TO_READ,
            ids["unread.jpg"],
            None,
        ),
        "bad.txt": ("bad.txt", 10, 1_700_000_000_000_000_000, NOT_AN_IMAGE, ids["bad.txt"], None),
        "gone.jpg": ("gone.jpg", 10, 1_700_000_000_000_000_000, GONE, ids["gone.jpg"], None),
    }


@pytest.mark.parametrize("page", [1, 2, 3, 100])
def test_file_states_come_in_name_order_a_page_at_a_time(store: ImageStore, page: int) -> None:
    names = ["b.jpg", "B.jpg", "a/z.jpg", "a.jpg", "caf\u00e9.jpg", "\U0001f600.png"]
    store.upsert([record(n) for n in names])
    pages = list(store.file_state_pages(page))
    assert all(0 < len(p) <= page for p in pages)
    in_order = [s for p in pages for s in p]
    assert [s[0] for s in in_order] == sorted(names)  # code point order, case-exact
    assert in_order == sorted(file_states(store).values())
    assert list(store.file_state_pages(page)) == pages


def test_file_states_of_a_part_are_the_rows_in_its_range(store: ImageStore) -> None:
    names = ["a.jpg", "a/b.jpg", "a/c/d.jpg", "a0.jpg", "b.jpg", "b/x.jpg", "z.jpg"]
    store.upsert([record(n) for n in names])

    def part(lo: str | None, hi: str | None) -> list[str]:
        return [s[0] for p in store.file_state_pages(2, names=(lo, hi)) for s in p]

    assert part(None, None) == names
    assert part("a/", "a0") == ["a/b.jpg", "a/c/d.jpg"]
    assert part(None, "a/") == ["a.jpg"]
    assert part("b/", None) == ["b/x.jpg", "z.jpg"]
    assert part("a0.jpg", "b.jpg") == ["a0.jpg"]  # lo is in, hi is out
    assert part("c", "d") == []


def test_names_of_ids(store: ImageStore) -> None:
    store.upsert([record(f"{i}.jpg") for i in range(3)])
    ids = {r["file_name"]: r["id"] for r in all_rows(store)}
    assert store.names_of([ids["2.jpg"], ids["0.jpg"], 999_999]) == {
        ids["2.jpg"]: "2.jpg",
        ids["0.jpg"]: "0.jpg",
    }
    assert store.names_of([]) == {}


def test_lookup_gives_the_fields_compared_with_the_disk(store: ImageStore) -> None:
    store.upsert([record("a.jpg", size_bytes=5, sidecar_mtime_ns=8), record("b.jpg")])
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE images SET wp_url='https://wp/a.jpg', wp_media_id=4 WHERE file_name='a.jpg'"
            )
        )
    a = store.lookup("a.jpg")
    assert a == KnownFile(
        id=(row_of(store, "a.jpg") or {})["id"],
        size_bytes=5,
        mtime_ns=1_700_000_000_000_000_000,
        status=Status.DONE,
        sha256="0" * 64,
        wp_url="https://wp/a.jpg",
        wp_media_id=4,
        sidecar_mtime_ns=8,
    )
    assert store.lookup("A.JPG") is None
    many = store.lookup_many(["a.jpg", "b.jpg", "none.jpg"])
    assert set(many) == {"a.jpg", "b.jpg"} and many["a.jpg"] == a
    assert store.lookup_many([]) == {}


def test_rows_under_a_directory_are_only_its_own(store: ImageStore) -> None:
    store.upsert([record(n) for n in ("d/a.jpg", "d/e/b.jpg", "dd/c.jpg", "d.jpg", "e/d/x.jpg")])
    under = dict(store.rows_under("d/"))
    assert sorted(under) == ["d/a.jpg", "d/e/b.jpg"]
    assert under["d/a.jpg"] == store.lookup("d/a.jpg")
    assert store.rows_under("nothing/") == []


def test_a_directory_differing_only_in_case_is_another_directory(store: ImageStore) -> None:
    store.upsert([record("d/a.jpg"), record("D/x.jpg")])
    assert [n for n, _ in store.rows_under("d/")] == ["d/a.jpg"]
    assert store.rename_prefix("d/", "new/") == (1, [])
    assert set(file_states(store)) == {"new/a.jpg", "D/x.jpg"}


def test_a_directory_move_leaves_names_that_would_be_too_long(store: ImageStore) -> None:
    long_tail = "x" * (FILE_NAME_MAX - len("d/"))
    store.upsert([record("d/" + long_tail), record("d/short.jpg")])
    moved, stuck = store.rename_prefix("d/", "longer/")
    assert (moved, stuck) == (1, ["d/" + long_tail])
    assert set(file_states(store)) == {"d/" + long_tail, "longer/short.jpg"}
    assert store.rename_prefix("none/", "other/") == (0, [])


def test_mark_missing_can_say_why_and_otherwise_keeps_the_last_error(store: ImageStore) -> None:
    store.upsert([record("a.jpg", last_error="old"), record("b.jpg", last_error="old")])
    ids = {r["file_name"]: r["id"] for r in all_rows(store)}
    assert store.mark_missing([ids["a.jpg"]], reason="could not delete media 7") == 1
    assert store.mark_missing([ids["b.jpg"]]) == 1
    a, b = row_of(store, "a.jpg") or {}, row_of(store, "b.jpg") or {}
    assert (a["status"], a["last_error"]) == (Status.MISSING, "could not delete media 7")
    assert (b["status"], b["last_error"]) == (Status.MISSING, "old")


def test_many_ids_at_once_are_marked_missing_and_forgotten(store: ImageStore) -> None:
    # More ids than one IN (...) list takes.
    count = ID_CHUNK * 2 + 5
    store.upsert([record(f"{i:05d}.jpg") for i in range(count)])
    rows = all_rows(store)
    ids = [r["id"] for r in rows]
    names = [r["file_name"] for r in rows]
    assert store.mark_missing(ids[:-3], names=names[:-3]) == count - 3
    assert store.counts_by_status() == {Status.MISSING: count - 3, Status.DONE: 3}
    assert store.forget(ids[1:]) == count - 1
    assert list(file_states(store)) == [names[0]]
    assert store.forget([]) == 0


def test_counts_of_rows_live_rows_and_statuses(store: ImageStore) -> None:
    assert (store.count_rows(), store.count_live(), store.counts_by_status()) == (0, 0, {})
    store.upsert(
        [
            record("a.jpg"),
            record("b.jpg"),
            record("c.jpg", status=Status.FAILED),
            record("d.jpg", status=Status.MISSING),
            record("e.jpg", status=Status.MISSING),
        ]
    )
    assert store.count_rows() == 5
    assert store.count_live() == 3
    assert store.counts_by_status() == {Status.DONE: 2, Status.FAILED: 1, Status.MISSING: 2}


def test_pages_from_mysql_come_packed_and_unpack_to_the_rows(
    mariadb: MariaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ImageStore(mariadb.create_database())
    store.open()
    try:
        names = [
            "a.jpg",
            "b\x01c.jpg",
            "new\nline.jpg",
            "caf\u00e9.jpg",
            "\U0001f600.png",
            " x.jpg",
        ]
        store.upsert([record(n) for n in names])
        with store.engine.begin() as conn:  # a row not read yet: no size, no mtime
            conn.execute(
                text(
                    "UPDATE images SET size_bytes = NULL, mtime_ns = NULL, sha256 = NULL "
                    "WHERE file_name = 'a.jpg'"
                )
            )
            conn.execute(text("UPDATE images SET sidecar_mtime_ns = 5 WHERE file_name = ' x.jpg'"))
        unpacked = []
        real = images_module._packed_page

        def packed(conn: Connection, paged: Any) -> tuple[list[FileState], str] | None:
            page = real(conn, paged)
            unpacked.append(page)
            return page

        monkeypatch.setattr(images_module, "_packed_page", packed)
        pages = list(store.file_state_pages(4))
        assert unpacked and all(page is not None for page in unpacked)  # none read row by row
        monkeypatch.setattr(images_module, "_packed_page", lambda conn, paged: None)
        assert pages == list(store.file_state_pages(4))  # as the driver gives them
        states = {s[0]: s for p in pages for s in p}
        assert set(states) == set(names)
        store.engine.dispose()  # a new connection, not one a page was read on
        with store.engine.connect() as conn:  # room for a whole page, on every connection
            limit = conn.exec_driver_sql("SELECT @@SESSION.group_concat_max_len").scalar()
            assert limit == PACKED_MAX
        assert states["a.jpg"][1:4] == (None, None, TO_READ)
        assert states[" x.jpg"][5] == 5
    finally:
        store.close()


def test_a_page_that_does_not_unpack_is_read_row_by_row(mariadb: MariaDB) -> None:
    store = ImageStore(mariadb.create_database())
    store.open()
    try:
        store.upsert([record("a.jpg"), record("b.jpg")])
        with store.engine.begin() as conn:  # a NUL no file name can hold, written by hand
            conn.execute(
                text("UPDATE images SET file_name = 'a\\0z.jpg' WHERE file_name = 'a.jpg'")
            )
        states = [s[0] for p in store.file_state_pages() for s in p]
        assert states == ["a\x00z.jpg", "b.jpg"]
    finally:
        store.close()
