"""The tables (imgwatch/db/schema.py): creation, adoption of an existing images table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.engine import URL

from imgwatch.db.schema import COMPARE_INDEX, TABLES, changes_needed, conditions, images, scans
from imgwatch.db.store import ImageStore
from imgwatch.errors import ConfigError
from imgwatch.model import STATE, TO_READ, KnownFile, Status
from tests.db.records import ORIGINAL_DDL, ORIGINAL_ROWS, make_original_table, record
from tests.rows import all_rows, file_states
from tests.servers import MariaDB


def test_creates_table_with_all_columns(store: ImageStore) -> None:
    cols = {c["name"] for c in inspect(store.engine).get_columns("images")}
    assert cols == {c.name for c in images.columns}
    index_names = {ix["name"] for ix in inspect(store.engine).get_indexes("images")}
    assert "ix_images_status" in index_names


def test_file_names_are_case_and_unicode_exact(store: ImageStore) -> None:
    names = ["a.jpg", "A.JPG", "caf\u00e9.jpg", "cafe\u0301.jpg", "\U0001f600 smile.png"]
    store.upsert([record(n) for n in names])
    assert sorted(file_states(store)) == sorted(names)


def test_adopts_original_table_without_touching_rows(db_url: URL) -> None:
    make_original_table(db_url)
    store = ImageStore(db_url)
    store.open()
    try:
        cols = {c["name"] for c in inspect(store.engine).get_columns("images")}
        assert cols == {c.name for c in images.columns}
        rows = all_rows(store)
        for got, want in zip(rows, ORIGINAL_ROWS, strict=True):
            assert {k: got[k] for k in want} == want
        assert [r["status"] for r in rows] == ["pending", "pending"]
        assert [r["attempts"] for r in rows] == [0, 0]
        before = all_rows(store)
    finally:
        store.close()
    again = ImageStore(db_url)
    again.open()  # second start: nothing to add, nothing changes
    try:
        assert all_rows(again) == before
    finally:
        again.close()


def test_refuses_a_foreign_images_table(db_url: URL) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE images (id INTEGER PRIMARY KEY, path VARCHAR(10))"))
    engine.dispose()
    with pytest.raises(ConfigError, match="not an imgwatch table"):
        ImageStore(db_url).open()


def test_mariadb_table_is_utf8mb4_with_exact_file_names(mariadb: MariaDB) -> None:
    url = mariadb.create_database()
    store = ImageStore(url)
    store.open()
    try:
        with store.engine.connect() as conn:
            collation = conn.execute(
                text(
                    "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA=DATABASE() AND TABLE_NAME='images' "
                    "AND COLUMN_NAME='file_name'"
                )
            ).scalar_one()
        assert collation == "utf8mb4_bin"
    finally:
        store.close()


def test_an_empty_database_lacks_every_table_and_a_full_one_nothing(db_url: URL) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            changes = changes_needed(conn, "the test's database")
        assert [c.table for c in changes] == list(TABLES)
        assert not any(c.adopt for c in changes)
        assert [c.describe() for c in changes] == [
            "create table images",
            "create table imgwatch_scans",
            "create table imgwatch_conditions",
        ]
    finally:
        engine.dispose()
    store = ImageStore(db_url)
    store.open()
    try:
        with store.engine.connect() as conn:
            assert changes_needed(conn, store.display_url) == []
        assert store.schema_changes == [] and store.missing_tables == set()
        assert set(inspect(store.engine).get_table_names()) >= {t.name for t in TABLES}
    finally:
        store.close()


def test_the_original_table_is_described_not_changed_when_only_looked_at(db_url: URL) -> None:
    make_original_table(db_url)
    store = ImageStore(db_url)
    store.open(create=False)
    try:
        original = {"id", *ORIGINAL_ROWS[0]}
        added = [c.name for c in images.columns if c.name not in original]
        assert store.absent_columns == frozenset(added)
        assert store.images_unadopted
        assert store.missing_tables == {scans.name, conditions.name}
        (adopt_images,) = [s for s in store.schema_changes if s.startswith("add ")]
        assert adopt_images.startswith("add columns " + ", ".join(added) + " and indexes ")
        assert adopt_images.endswith(" to table images")
        assert "ix_images_status" in adopt_images
        cols = {c["name"] for c in inspect(store.engine).get_columns("images")}
        assert cols == original
        assert set(inspect(store.engine).get_table_names()) == {"images"}
    finally:
        store.close()


def test_columns_an_unadopted_table_lacks_read_as_adopting_would_fill_them(db_url: URL) -> None:
    make_original_table(db_url)
    store = ImageStore(db_url)
    store.open(create=False)
    try:
        known = store.lookup_many(["a.jpg", "b.png", "c.jpg"])
        assert set(known) == {"a.jpg", "b.png"}
        # status: its server default; the facts the table does not have yet: NULL.
        assert known["a.jpg"] == KnownFile(
            id=known["a.jpg"].id,
            size_bytes=None,
            mtime_ns=None,
            status=Status.PENDING,
            sha256=None,
            wp_url="https://x/a.jpg",
            wp_media_id=None,
            sidecar_mtime_ns=None,
        )
        assert {s[STATE] for s in file_states(store).values()} == {TO_READ}
        assert [n for n, _ in store.rows_under("b")] == ["b.png"]
    finally:
        store.close()


def test_an_older_imgwatch_table_gets_only_the_columns_and_indexes_it_lacks(
    db_url: URL,
) -> None:
    store = ImageStore(db_url)
    store.open()
    store.upsert([record("a.jpg", caption="kept")])
    on_table = "" if store.dialect == "sqlite" else " ON images"
    with store.engine.begin() as conn:
        # As an imgwatch from before these were kept left its table.
        conn.execute(text("DROP INDEX ix_images_wp_media_id" + on_table))
        conn.execute(text("ALTER TABLE images DROP COLUMN sidecar_mtime_ns"))
    kept = [c for c in images.columns if c.name != "sidecar_mtime_ns"]
    with store.engine.connect() as conn:
        (before,) = [dict(r._mapping) for r in conn.execute(select(*kept))]
    store.close()
    assert before["caption"] == "kept"

    looked = ImageStore(db_url)
    looked.open(create=False)
    try:
        assert looked.schema_changes == [
            "add columns sidecar_mtime_ns and indexes ix_images_wp_media_id to table images"
        ]
        assert looked.absent_columns == {"sidecar_mtime_ns"}
        assert not looked.images_unadopted  # it has a status: only some columns are absent
        assert looked.lookup("a.jpg") is not None
    finally:
        looked.close()

    adopted = ImageStore(db_url)
    adopted.open()
    try:
        assert adopted.schema_changes == [] and adopted.absent_columns == frozenset()
        (row,) = all_rows(adopted)
        assert row["sidecar_mtime_ns"] is None
        assert {k: row[k] for k in before} == before
        index_names = {ix["name"] for ix in inspect(adopted.engine).get_indexes("images")}
        assert "ix_images_wp_media_id" in index_names
    finally:
        adopted.close()


def test_mysql_reads_a_reconciles_rows_from_the_compare_index_alone(mariadb: MariaDB) -> None:
    store = ImageStore(mariadb.create_database())
    store.open()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "GROUP_CONCAT" in statement:
            statements.append(cursor.mogrify(statement, parameters))

    try:
        store.upsert([record(f"d/{n:03d}.jpg") for n in range(300)])
        event.listen(store.engine, "before_cursor_execute", seen)
        assert sum(len(p) for p in store.file_state_pages(100)) == 300
        event.remove(store.engine, "before_cursor_execute", seen)
        assert statements
        with store.engine.connect() as conn:
            for statement in statements:
                plan = conn.exec_driver_sql("EXPLAIN " + statement).mappings().all()
                # The page's own table access: the compare index, nothing read beside it.
                (access,) = [p for p in plan if p["table"] == "images"]
                assert access["key"] == COMPARE_INDEX, plan
                assert "Using index" in (access["Extra"] or ""), plan
    finally:
        store.close()


def test_sqlite_has_no_compare_index_and_does_not_lack_one(tmp_path: Path) -> None:
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "imgwatch.db")))
    store.open()
    try:
        index_names = {ix["name"] for ix in inspect(store.engine).get_indexes("images")}
        assert COMPARE_INDEX not in index_names
        assert "ix_images_sha256" in index_names
    finally:
        store.close()
    looked = ImageStore(URL.create("sqlite", database=str(tmp_path / "imgwatch.db")))
    looked.open(create=False)
    try:
        assert looked.schema_changes == []
    finally:
        looked.close()


def test_a_table_that_cannot_hold_the_compare_index_is_used_without_it(
    mariadb: MariaDB, caplog: pytest.LogCaptureFixture
) -> None:
    url = mariadb.create_database()
    engine = create_engine(url)
    with engine.begin() as conn:
        # As an old MySQL made it: MyISAM, keys of at most 1,000 bytes, 3 bytes a character.
        conn.execute(text(ORIGINAL_DDL.rstrip() + " ENGINE=MyISAM CHARACTER SET utf8mb3"))
        conn.execute(text("INSERT INTO images (file_name) VALUES ('a.jpg')"))
    engine.dispose()
    store = ImageStore(url)
    with caplog.at_level(logging.INFO, logger="imgwatch.db.engine"):
        store.open()
    try:
        (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warning.getMessage().startswith(
            f"could not add index {COMPARE_INDEX} to table images, reconciles will be slower: "
        )
        assert "(1071)" in warning.getMessage()  # the key is too long
        index_names = {ix["name"] for ix in inspect(store.engine).get_indexes("images")}
        assert COMPARE_INDEX not in index_names and "ix_images_sha256" in index_names
        assert set(file_states(store)) == {"a.jpg"}
        store.upsert([record("b.jpg")])
        assert set(file_states(store)) == {"a.jpg", "b.jpg"}
    finally:
        store.close()
    again = ImageStore(url)
    again.open(create=False)
    try:  # still lacking: said again at the next start, which tries again
        assert again.schema_changes == [f"add indexes {COMPARE_INDEX} to table images"]
    finally:
        again.close()
