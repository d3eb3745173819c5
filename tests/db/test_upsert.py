"""The row writer's upsert (imgwatch/db/upsert.py) on SQLite and on the real MariaDB."""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import URL

from imgwatch.db.rowsinsert import RowsInsert
from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import STATE_ID, ImageRecord, Status, utcnow
from tests.db.records import record
from tests.rows import all_rows, file_states, row_of
from tests.servers import MariaDB

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


def test_recording_the_same_content_again_keeps_upload_progress(store: ImageStore) -> None:
    # What a second daemon (or a reconcile) does when it records a file that the
    # first one is uploading, or has uploaded: it must not reopen the upload.
    from imgwatch.model import Status, UploadJob

    store.upsert(
        [record("up.jpg", status=Status.PENDING), record("done.jpg", status=Status.PENDING)]
    )
    rows = file_states(store)
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


def _no_backslash_escapes(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    cursor.close()


def test_a_batch_too_long_for_one_statement(store: ImageStore) -> None:
    # Long names and titles: more text than the driver sends in one statement.
    names = [f"{i:04d}-" + "\u00e9" * 240 + ".jpg" for i in range(1500)]
    store.upsert([record(n, title="\U0001f600" * 250) for n in names])
    assert store.counts_by_status() == {Status.DONE: 1500}
    assert sorted(file_states(store)) == sorted(names)


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


def test_a_sidecars_fields_replace_even_a_persons_edit(store: ImageStore) -> None:
    store.upsert([record("a.jpg", caption="from the file")])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE images SET title='Mine', caption='Mine too', alt_text='Alt'"))
    # The sidecar names title and caption: those two are the operator's instruction.
    store.upsert(
        [
            record(
                "a.jpg",
                title="Sidecar title",
                caption="Sidecar caption",
                alt_text="ignored",
                sidecar_fields=("title", "caption"),
            )
        ]
    )
    row = row_of(store, "a.jpg")
    assert row is not None
    assert (row["title"], row["caption"], row["alt_text"]) == (
        "Sidecar title",
        "Sidecar caption",
        "Alt",
    )


def test_prepared_rows_are_written_only_by_write_prepared(store: ImageStore) -> None:
    store.upsert([record("first.jpg")])  # so that MySQL's statements are made ahead
    prepared = store.prepare_upsert([record(f"{i}.jpg") for i in range(3)])
    assert [r.file_name for r in prepared.records] == ["0.jpg", "1.jpg", "2.jpg"]
    assert len(prepared.values) == 3
    assert bool(prepared.texts) == (store.dialect != "sqlite")
    assert store.count_rows() == 1
    store.write_prepared(prepared)
    assert sorted(file_states(store)) == ["0.jpg", "1.jpg", "2.jpg", "first.jpg"]
    store.write_prepared(store.prepare_upsert([]))  # nothing to write: no transaction
    assert store.count_rows() == 4


def test_each_written_batch_is_told_once_it_is_committed(db_url: URL) -> None:
    told: list[tuple[list[str], int]] = []
    store: ImageStore

    def on_written(records: Sequence[ImageRecord]) -> None:
        # Committed: another connection sees the rows already.
        told.append(([r.file_name for r in records], store.count_rows()))

    store = ImageStore(db_url, on_written=on_written)
    store.open()
    try:
        store.upsert([record("a.jpg"), record("b.jpg")])
        store.upsert([])
        store.write_prepared(store.prepare_upsert([record("c.jpg")]))
    finally:
        store.close()
    assert told == [(["a.jpg", "b.jpg"], 2), (["c.jpg"], 3)]
