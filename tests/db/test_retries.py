"""Rows in trouble (imgwatch/db/retries.py): retried, shown, and counted until read again."""

from __future__ import annotations

import datetime as dt
from typing import Any

from imgwatch.db.retries import RETRY_REQUESTED, RetryResult
from imgwatch.db.store import ImageStore
from imgwatch.model import Status, utcnow
from imgwatch.textdigest import UNKNOWN
from tests.db.records import record, set_row
from tests.rows import all_rows, row_of

FACTS = ("sha256", "size_bytes", "mtime_ns")


def troubled(store: ImageStore) -> None:
    """A failed upload, a failed read, a rejected file and a file that is fine."""
    store.upsert(
        [
            record("upload-failed.jpg", status=Status.FAILED, last_error="503"),
            record("read-failed.jpg", status=Status.FAILED, sha256=None, last_error="truncated"),
            record("rejected.txt", status=Status.REJECTED, last_error="not an image"),
            record("fine.jpg"),
        ]
    )
    set_row(store, "upload-failed.jpg", attempts=3)
    set_row(store, "read-failed.jpg", attempts=2)


def rows(store: ImageStore) -> dict[str, dict[str, Any]]:
    return {r["file_name"]: r for r in all_rows(store)}


def assert_to_be_read_again(row: dict[str, Any], since: dt.datetime) -> None:
    assert row["status"] == Status.PENDING
    assert [row[k] for k in FACTS] == [None, None, None]
    assert (row["attempts"], row["last_error"]) == (0, RETRY_REQUESTED)
    assert (row["claimed_by"], row["claimed_until"]) == (None, None)
    assert row["next_attempt_at"] >= since


def test_retrying_failed_rows_makes_uploads_due_and_reads_happen_again(
    store: ImageStore,
) -> None:
    troubled(store)
    before = rows(store)
    now = utcnow()
    result = store.retry(failed=True, rejected=False)
    assert result == RetryResult(uploads=1, rereads=1)
    after = rows(store)
    upload = after["upload-failed.jpg"]
    # Its file was read: only its upload is due again, now, with attempts reset.
    assert (upload["status"], upload["sha256"], upload["attempts"]) == (Status.FAILED, "0" * 64, 0)
    assert upload["next_attempt_at"] >= now
    assert [j.file_name for j in store.due_uploads()] == ["upload-failed.jpg", "fine.jpg"]
    assert_to_be_read_again(after["read-failed.jpg"], now)
    assert after["rejected.txt"] == before["rejected.txt"]
    assert after["fine.jpg"] == before["fine.jpg"]


def test_retrying_rejected_rows_reads_them_again_and_nothing_else(store: ImageStore) -> None:
    troubled(store)
    before = rows(store)
    now = utcnow()
    assert store.retry(failed=False, rejected=True) == RetryResult(rereads=1)
    after = rows(store)
    assert_to_be_read_again(after["rejected.txt"], now)
    for name in ("upload-failed.jpg", "read-failed.jpg", "fine.jpg"):
        assert after[name] == before[name]


def test_retrying_nothing_changes_nothing(store: ImageStore) -> None:
    troubled(store)
    before = rows(store)
    assert store.retry(failed=False, rejected=False) == RetryResult()
    assert rows(store) == before


def test_named_rows_are_read_again_whatever_their_status(store: ImageStore) -> None:
    troubled(store)
    store.upsert([record("busy.jpg", status=Status.PENDING), record("linked.jpg")])
    set_row(store, "busy.jpg", status=Status.UPLOADING, claimed_by="host-a:1")
    set_row(store, "linked.jpg", wp_media_id=7, wp_url="https://wp/7", wp_text_digest="d" * 64)
    before = rows(store)
    now = utcnow()
    result = store.retry(
        failed=False,
        rejected=False,
        names=["linked.jpg", "busy.jpg", "nowhere.jpg", "upload-failed.jpg", "linked.jpg"],
    )
    assert result == RetryResult(
        uploads=1, rereads=1, in_progress=["busy.jpg"], unknown=["nowhere.jpg"]
    )
    after = rows(store)
    linked = after["linked.jpg"]
    assert_to_be_read_again(linked, now)
    # Still linked to its media item, which is to be given every field again.
    assert (linked["wp_media_id"], linked["wp_url"]) == (7, "https://wp/7")
    assert linked["wp_text_digest"] == UNKNOWN
    assert after["upload-failed.jpg"]["attempts"] == 0
    assert after["busy.jpg"] == before["busy.jpg"]  # being uploaded: left alone
    for name in ("read-failed.jpg", "rejected.txt", "fine.jpg"):
        assert after[name] == before[name]


def test_recent_problems_are_the_newest_failed_and_rejected_rows(store: ImageStore) -> None:
    troubled(store)
    now = utcnow()
    for minutes, name in enumerate(("rejected.txt", "upload-failed.jpg", "read-failed.jpg")):
        set_row(store, name, updated_at=now - dt.timedelta(minutes=minutes))
    set_row(store, "fine.jpg", updated_at=now + dt.timedelta(minutes=1))
    problems = store.recent_problems(10)
    assert [p["file_name"] for p in problems] == [
        "rejected.txt",
        "upload-failed.jpg",
        "read-failed.jpg",
    ]
    assert problems[1] == {
        "file_name": "upload-failed.jpg",
        "status": Status.FAILED,
        "last_error": "503",
        "attempts": 3,
        "next_attempt_at": None,
        "updated_at": now - dt.timedelta(minutes=1),
    }
    assert [p["file_name"] for p in store.recent_problems(2)] == [
        "rejected.txt",
        "upload-failed.jpg",
    ]


def test_rereads_due_count_the_retried_rows_no_reconcile_has_read(store: ImageStore) -> None:
    troubled(store)
    assert store.rereads_due() == 0
    store.retry(failed=True, rejected=True)
    assert store.rereads_due() == 2
    # A row merely waiting to be read is not one retry asked for.
    store.upsert([record("new.jpg", status=Status.PENDING, sha256=None)])
    assert store.rereads_due() == 2
    set_row(store, "rejected.txt", updated_at=utcnow() - dt.timedelta(hours=2))
    assert store.rereads_due(since=utcnow() - dt.timedelta(hours=1)) == 1
    # The reconcile reads the file again: its new row replaces the request.
    store.upsert([record("read-failed.jpg", status=Status.PENDING)])
    assert store.rereads_due() == 1
    assert (row_of(store, "read-failed.jpg") or {})["last_error"] is None
