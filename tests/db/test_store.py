"""The images table on SQLite and on the real MariaDB: creation, adoption, upserts."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.engine import URL

from imgwatch.db.rowsinsert import RowsInsert
from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.errors import ConfigError, DatabaseUnavailable
from imgwatch.model import STATE_ID, ImageRecord, Status, utcnow
from tests.rows import all_rows, row_of
from tests.servers import MariaDB, free_port

# The original service's DDL, as its documentation gives it (MySQL flavour).
ORIGINAL_DDL = """
CREATE TABLE images (
    id INT AUTO_INCREMENT PRIMARY KEY,
    file_name VARCHAR(255) NOT NULL UNIQUE,
    title VARCHAR(255),
    description TEXT,
    wp_url VARCHAR(255)
)
"""
ORIGINAL_DDL_SQLITE = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name VARCHAR(255) NOT NULL UNIQUE,
    title VARCHAR(255),
    description TEXT,
    wp_url VARCHAR(255)
)
"""
ORIGINAL_ROWS: list[dict[str, Any]] = [
    {"file_name": "a.jpg", "title": "Sunset", "description": "Edited", "wp_url": "https://x/a.jpg"},
    {"file_name": "b.png", "title": "b.png", "description": "Image description", "wp_url": None},
]


def record(name: str, **fields: Any) -> ImageRecord:
    base: dict[str, Any] = {
        "file_name": name,
        "title": name,
        "description": "Image description",
        "status": Status.DONE,
        "sha256": "0" * 64,
        "size_bytes": 10,
        "mtime_ns": 1_700_000_000_000_000_000,
        "mime_type": "image/jpeg",
        "width": 3,
        "height": 2,
    }
    base.update(fields)
    return ImageRecord(**base)


def make_original_table(url: URL) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        ddl = ORIGINAL_DDL_SQLITE if url.get_backend_name() == "sqlite" else ORIGINAL_DDL
        conn.execute(text(ddl))
        for row in ORIGINAL_ROWS:
            conn.execute(
                text(
                    "INSERT INTO images (file_name, title, description, wp_url) "
                    "VALUES (:file_name, :title, :description, :wp_url)"
                ),
                row,
            )
    engine.dispose()


def test_creates_table_with_all_columns(store: ImageStore) -> None:
    cols = {c["name"] for c in inspect(store.engine).get_columns("images")}
    assert cols == {c.name for c in images.columns}
    index_names = {ix["name"] for ix in inspect(store.engine).get_indexes("images")}
    assert "ix_images_status" in index_names


def test_upsert_inserts_then_updates_one_row(store: ImageStore) -> None:
    store.upsert([record("a.jpg")])
    first = row_of(store, "a.jpg")
    assert first is not None
    store.upsert([record("a.jpg", sha256="f" * 64, size_bytes=99, width=7)])
    rows = all_rows(store)
    assert len(rows) == 1
    assert rows[0]["id"] == first["id"]
    assert (rows[0]["sha256"], rows[0]["size_bytes"], rows[0]["width"]) == ("f" * 64, 99, 7)
    assert rows[0]["created_at"] == first["created_at"]


def test_upsert_keeps_a_title_a_person_edited(store: ImageStore) -> None:
    store.upsert([record("a.jpg")])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE images SET title='My title', description='Mine'"))
    store.upsert([record("a.jpg", size_bytes=11)])
    row = row_of(store, "a.jpg")
    assert row is not None
    assert (row["title"], row["description"], row["size_bytes"]) == ("My title", "Mine", 11)


def test_batch_of_many_rows_in_one_call(store: ImageStore) -> None:
    store.upsert([record(f"dir/{i:05d}.jpg") for i in range(1200)])
    assert store.counts_by_status() == {Status.DONE: 1200}
    store.upsert([record(f"dir/{i:05d}.jpg", status=Status.REJECTED) for i in range(0, 1200, 2)])
    assert store.counts_by_status() == {Status.DONE: 600, Status.REJECTED: 600}


def test_file_names_are_case_and_unicode_exact(store: ImageStore) -> None:
    names = ["a.jpg", "A.JPG", "caf\u00e9.jpg", "cafe\u0301.jpg", "\U0001f600 smile.png"]
    store.upsert([record(n) for n in names])
    assert sorted(store.file_states()) == sorted(names)


def test_mark_missing_keeps_row_and_url(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg")])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE images SET wp_url='https://wp/a.jpg' WHERE file_name='a.jpg'"))
    assert store.mark_missing([store.file_states()["a.jpg"][STATE_ID]]) == 1
    row = row_of(store, "a.jpg")
    assert row is not None
    assert (row["status"], row["wp_url"], row["sha256"]) == (
        Status.MISSING,
        "https://wp/a.jpg",
        "0" * 64,
    )
    assert (row_of(store, "b.jpg") or {})["status"] == Status.DONE


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


@pytest.mark.usefixtures("mariadb")
def test_mariadb_unreachable_is_database_unavailable() -> None:
    url = URL.create(
        "mysql+pymysql", username="u", password="secret-pw", host="127.0.0.1", port=free_port()
    )
    with pytest.raises(DatabaseUnavailable) as info:
        ImageStore(url).open()
    assert "secret-pw" not in str(info.value)
    assert "***" in str(info.value)


def test_mariadb_wrong_password_is_config_error(mariadb: MariaDB) -> None:
    url = mariadb.create_database().set(password="wrong-pw")
    with pytest.raises(ConfigError, match="Access denied") as info:
        ImageStore(url).open()
    assert "wrong-pw" not in str(info.value)


def test_database_lost_after_open_is_database_unavailable(mariadb: MariaDB) -> None:
    url = mariadb.create_database()
    store = ImageStore(url)
    store.open()
    # The account is removed and its sessions killed while imgwatch runs.
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute(f"DROP USER '{url.username}'@'127.0.0.1'")
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER=%s", (url.username,))
        for (session,) in cur.fetchall():
            cur.execute(f"KILL {int(session)}")
    admin.close()
    with pytest.raises(DatabaseUnavailable, match=r"writing rows failed: .*Access denied") as info:
        store.upsert([record("a.jpg")])
    assert str(url.password) not in str(info.value)
    store.close()


def test_sqlite_in_a_missing_directory_is_config_error(tmp_path: Path) -> None:
    url = URL.create("sqlite", database=str(tmp_path / "no" / "such" / "dir" / "x.db"))
    with pytest.raises(ConfigError, match="unable to open database file"):
        ImageStore(url).open()


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


def test_rename_moves_the_row_unless_the_new_name_has_one(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg"), record("c.jpg")])
    before = store.lookup("a.jpg")
    assert store.rename("a.jpg", "sub/a.jpg")
    assert store.lookup("sub/a.jpg") == before
    assert store.lookup("a.jpg") is None
    assert not store.rename("b.jpg", "c.jpg")  # c.jpg has its own row
    assert not store.rename("nothing.jpg", "x.jpg")
    assert set(store.file_states()) == {"sub/a.jpg", "b.jpg", "c.jpg"}


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
    assert set(store.file_states()) == {
        "50%_off/a.jpg",
        "new/deep/b.jpg",
        "50xyoff/c.jpg",
        "50%_off2/d.jpg",
        "new/a.jpg",
    }


def test_mark_missing_by_name_spares_a_row_renamed_meanwhile(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg")])
    known = store.file_states()
    store.rename("a.jpg", "moved.jpg")  # a move lands while a scan runs
    ids = [known["a.jpg"][STATE_ID], known["b.jpg"][STATE_ID]]
    assert store.mark_missing(ids, names=["a.jpg", "b.jpg"]) == 1
    rows = {r["file_name"]: r["status"] for r in all_rows(store)}
    assert rows == {"moved.jpg": Status.DONE, "b.jpg": Status.MISSING}


def test_forget_removes_rows(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg")])
    assert store.forget([store.file_states()["a.jpg"][STATE_ID]]) == 1
    assert set(store.file_states()) == {"b.jpg"}


def test_recording_the_same_content_again_keeps_upload_progress(store: ImageStore) -> None:
    # What a second daemon (or a reconcile) does when it records a file that the
    # first one is uploading, or has uploaded: it must not reopen the upload.
    from imgwatch.model import Status, UploadJob

    store.upsert(
        [record("up.jpg", status=Status.PENDING), record("done.jpg", status=Status.PENDING)]
    )
    rows = store.file_states()
    up = UploadJob(rows["up.jpg"][STATE_ID], "up.jpg", "0" * 64, "image/jpeg", None, None, None, 0)
    assert store.mark_uploading(up, "host-a:1", lease=600)
    done = UploadJob(
        rows["done.jpg"][STATE_ID], "done.jpg", "0" * 64, "image/jpeg", None, None, None, 0
    )
    assert store.record_upload(done, 7, "https://wp/done.jpg", "")

    store.upsert(
        [record("up.jpg", status=Status.PENDING), record("done.jpg", status=Status.PENDING)]
    )
    got = {r["file_name"]: r for r in all_rows(store)}
    assert got["up.jpg"]["status"] == Status.UPLOADING
    assert got["up.jpg"]["claimed_by"] == "host-a:1"
    assert not store.mark_uploading(up, "host-b:2", lease=600)  # still held
    assert got["done.jpg"]["status"] == Status.DONE

    # New content: the old claim is void, the file is to be uploaded again.
    store.upsert([record("up.jpg", status=Status.PENDING, sha256="1" * 64)])
    row = row_of(store, "up.jpg")
    assert row is not None
    assert (row["status"], row["claimed_by"], row["claimed_until"]) == (Status.PENDING, None, None)


def test_upserted_times_read_back_and_compare_in_sql(store: ImageStore) -> None:
    # The upsert goes to the driver directly: times must still be stored as
    # SQLAlchemy stores them (on SQLite, text compared as text in WHERE clauses).
    now = utcnow()
    past, future = now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5)
    store.upsert(
        [
            ImageRecord(
                file_name=n, title=n, description="d", status=Status.FAILED, next_attempt_at=t
            )
            for n, t in (("past.jpg", past), ("future.jpg", future))
        ]
    )
    row = row_of(store, "past.jpg")
    assert row is not None and row["next_attempt_at"] == past
    assert row["created_at"] is not None and abs(row["created_at"] - now).total_seconds() < 5
    with store.engine.connect() as conn:
        due = conn.execute(
            select(images.c.file_name).where(images.c.next_attempt_at <= now)
        ).scalars()
        assert list(due) == ["past.jpg"]
        if store.dialect == "sqlite":
            stored = conn.exec_driver_sql(
                "SELECT next_attempt_at FROM images WHERE file_name = 'past.jpg'"
            ).scalar()
            assert stored == past.strftime("%Y-%m-%d %H:%M:%S.%f")


# Titles and names that quoting must carry through unchanged (file names on Linux
# can hold anything but `/` and NUL; titles will come from image metadata).
AWKWARD_TEXT = [
    "it's.jpg",
    'say "cheese".png',
    "back\\slash\\.gif",
    "new\nline\r.jpg",
    "ctrl-z\x1a.jpg",
    "100%.jpg",
    "%(title)s %s.jpg",
    "caf\u00e9 \U0001f600.jpg",
    "'); DROP TABLE images; --.jpg",
]


def test_awkward_text_is_stored_exactly(store: ImageStore) -> None:
    store.upsert([record(n, title=n + " title", description=n) for n in AWKWARD_TEXT])
    for n in AWKWARD_TEXT:
        row = row_of(store, n)
        assert row is not None, repr(n)
        assert (row["title"], row["description"]) == (n + " title", n)
    assert store.counts_by_status() == {Status.DONE: len(AWKWARD_TEXT)}


def test_awkward_text_with_no_backslash_escapes(mariadb: MariaDB) -> None:
    # A server (or an operator's my.cnf) may set NO_BACKSLASH_ESCAPES: a backslash
    # is then an ordinary character, and only quotes are doubled.
    store = ImageStore(mariadb.create_database())
    store.open()
    try:
        event.listen(store.engine, "connect", _no_backslash_escapes)
        store.engine.dispose()
        store.upsert([record(n, title=n) for n in AWKWARD_TEXT])
        with store.engine.connect() as conn:
            assert "NO_BACKSLASH_ESCAPES" in conn.execute(text("SELECT @@sql_mode")).scalar_one()
        assert sorted(r["title"] for r in all_rows(store)) == sorted(AWKWARD_TEXT)
    finally:
        store.close()


@pytest.mark.parametrize("mode_when_prepared", ["default", "NO_BACKSLASH_ESCAPES"])
@pytest.mark.parametrize("change", ["on a new connection", "on the same connection"])
def test_rows_prepared_under_other_quoting_are_quoted_again(
    mariadb: MariaDB, mode_when_prepared: str, change: str
) -> None:
    # A rescan makes a batch's statements before the batch is written, quoted as the
    # last write was. By the time they are written the pool may hand out another
    # connection (a reconnect) in another sql_mode, or the session's mode changed.
    store = ImageStore(mariadb.create_database())
    store.open()
    prepared_plain = mode_when_prepared == "default"
    try:
        if not prepared_plain:
            event.listen(store.engine, "connect", _no_backslash_escapes)
            store.engine.dispose()  # open() left a connection in the default mode
        store.upsert([record("first.jpg")])  # the quoting the next prepare uses
        prepared = store.prepare_upsert([record(n, title=n) for n in AWKWARD_TEXT])
        assert prepared.texts, "made ahead of the write"
        if change == "on a new connection":
            store.engine.dispose()
            if prepared_plain:
                event.listen(store.engine, "connect", _no_backslash_escapes)
            else:
                event.remove(store.engine, "connect", _no_backslash_escapes)
        else:
            with store.engine.connect() as conn:  # the pool's one connection
                conn.exec_driver_sql(
                    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"
                    if prepared_plain
                    else "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')"
                )
        store.write_prepared(prepared)
        titles = {r["file_name"]: r["title"] for r in all_rows(store)}
        assert titles == {"first.jpg": "first.jpg", **{n: n for n in AWKWARD_TEXT}}
        with store.engine.connect() as conn:
            mode = conn.exec_driver_sql("SELECT @@sql_mode").scalar_one()
        assert ("NO_BACKSLASH_ESCAPES" in mode) == prepared_plain, "the mode did change"
    finally:
        store.close()


def test_prepared_rows_are_kept_when_writes_alternate_connections(
    mariadb: MariaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A daemon's reconcile looks rows up while the batch before is written: the pool
    # then holds two connections and the writes alternate between them. Statements
    # made ahead must still be used, not made again at every write.
    store = ImageStore(mariadb.create_database())
    store.open()
    made: list[str] = []
    real = RowsInsert.statements

    def statements(self: RowsInsert, literal: Any, rows: Any) -> Any:
        made.append("statements")
        return real(self, literal, rows)

    monkeypatch.setattr(RowsInsert, "statements", statements)
    try:
        with store.engine.connect():  # so that the pool has two
            store.upsert([record("first.jpg")])
        for i in range(4):
            prepared = store.prepare_upsert([record(f"{i}.jpg")])
            assert prepared.texts
            made.clear()
            with store.engine.connect():  # held, so the write takes the other one
                store.write_prepared(prepared)
            assert made == [], "made again at the write"
        assert store.count_rows() == 5
    finally:
        store.close()


@pytest.mark.parametrize("value", ["0", "2.5", "-1", "soon", ""])
def test_an_unusable_io_timeout_in_the_url_is_a_settings_error(value: str) -> None:
    # pymysql would refuse it at every connect: a restart loop, not a clear exit 78.
    url = URL.create(
        "mysql+pymysql", "u", "secret", "127.0.0.1", 3306, "db", query={"read_timeout": value}
    )
    with pytest.raises(ConfigError, match="read_timeout must be a whole number") as info:
        ImageStore(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("query", "expected"),
    [({}, (120, 120)), ({"read_timeout": "7"}, (7, 120)), ({"write_timeout": "9"}, (120, 9))],
)
def test_io_timeouts_reach_the_driver_and_the_urls_win(
    query: dict[str, str], expected: tuple[int, int]
) -> None:
    url = URL.create("mysql+pymysql", "u", "p", "127.0.0.1", 1, "db", query=query)
    store = ImageStore(url)
    seen: list[dict[str, Any]] = []

    def do_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.append(dict(cparams))
        raise RuntimeError("no connecting in this test")

    event.listen(store.engine, "do_connect", do_connect)
    with pytest.raises(RuntimeError):
        store.engine.connect()
    assert (seen[0]["read_timeout"], seen[0]["write_timeout"]) == expected


def _no_backslash_escapes(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    cursor.close()


def test_a_batch_too_long_for_one_statement(store: ImageStore) -> None:
    # Long names and titles: more text than the driver sends in one statement.
    names = [f"{i:04d}-" + "\u00e9" * 240 + ".jpg" for i in range(1500)]
    store.upsert([record(n, title="\U0001f600" * 250) for n in names])
    assert store.counts_by_status() == {Status.DONE: 1500}
    assert sorted(store.file_states()) == sorted(names)


def test_a_record_survives_pickling_with_every_field() -> None:
    # Reading processes send records back pickled (see imgwatch/readers.py).
    whole = ImageRecord(
        file_name="d/a.jpg",
        title="A",
        description="B",
        status=Status.FAILED,
        sha256="f" * 64,
        size_bytes=1,
        mtime_ns=2,
        mime_type="image/png",
        width=3,
        height=4,
        last_error="why",
        next_attempt_at=utcnow(),
    )
    for rec in (whole, record("x.jpg")):
        assert pickle.loads(pickle.dumps(rec)) == rec  # noqa: S301 (our own bytes)
