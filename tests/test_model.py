"""The domain's types (model.py): stored statuses, row states, records and summaries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
from typing import Any

import pytest
from sqlalchemy import String, select

from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.files.decide import row_state
from imgwatch.model import (
    FACTS_READ,
    FILE_NAME_MAX,
    GONE,
    NOT_AN_IMAGE,
    STATE,
    STATE_ID,
    STATE_MTIME,
    STATE_SIDECAR,
    STATE_SIZE,
    TO_READ,
    ConditionKind,
    ImageRecord,
    KnownFile,
    ScanSummary,
    Status,
    TextUpdate,
    UploadJob,
    utcnow,
)
from imgwatch.textdigest import TEXT_FIELDS
from tests.rows import file_states


def test_statuses_are_the_strings_stored_in_the_images_table(store: ImageStore) -> None:
    store.upsert([ImageRecord(f"{s.value}.jpg", "t", "d", s) for s in Status])
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(images.c.file_name, images.c.status)).all())
    assert stored == {f"{s.value}.jpg": s.value for s in Status}
    # Read back as plain strings, they compare equal to the members.
    assert all(Status(value) == value for value in stored.values())


def test_the_statuses_are_the_original_service_s_words() -> None:
    assert [str(s) for s in Status] == [
        "pending",
        "uploading",
        "done",
        "failed",
        "rejected",
        "missing",
    ]
    assert f"{Status.DONE}" == "done"  # in messages and SQL text alike
    assert [str(k) for k in ConditionKind] == ["uploads_paused", "deletions_held"]


def test_the_state_indices_pick_their_fields_from_a_row_s_file_state(
    store: ImageStore,
) -> None:
    store.upsert(
        [
            ImageRecord(
                "a.jpg",
                "t",
                "d",
                Status.DONE,
                sha256="0" * 64,
                size_bytes=1234,
                mtime_ns=5_000_000_007,
                sidecar_mtime_ns=6_000_000_009,
            )
        ]
    )
    row = file_states(store)["a.jpg"]
    row_id = store.lookup("a.jpg")
    assert row_id is not None
    assert row[0] == "a.jpg"
    assert row[STATE_SIZE] == 1234
    assert row[STATE_MTIME] == 5_000_000_007
    assert row[STATE] == FACTS_READ == row_state(Status.DONE, "0" * 64)
    assert row[STATE_ID] == row_id.id
    assert row[STATE_SIDECAR] == 6_000_000_009
    assert len(row) == STATE_SIDECAR + 1


def test_the_row_states_are_distinct() -> None:
    assert len({TO_READ, FACTS_READ, GONE, NOT_AN_IMAGE}) == 4


def test_now_is_naive_utc_in_whole_seconds() -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    now = utcnow()
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert now.tzinfo is None and now.microsecond == 0
    assert before.replace(microsecond=0) <= now <= after


def test_a_new_record_says_only_what_it_is_given() -> None:
    record = ImageRecord("d/a.jpg", "a.jpg", "Image description", Status.PENDING)
    given = {"file_name", "title", "description", "status"}
    for field in dataclasses.fields(ImageRecord):
        if field.name not in given:
            assert getattr(record, field.name) in (None, ()), field.name
    assert record.sidecar_fields == ()


def test_a_record_has_no_room_for_a_misspelt_field() -> None:
    record = ImageRecord("a.jpg", "a.jpg", "d", Status.DONE)
    with pytest.raises(AttributeError):
        record.captoin = "x"  # type: ignore[attr-defined]


def every_field_set() -> ImageRecord:
    """A record with a distinct value in each field, however many there are."""
    values: dict[str, Any] = {}
    for i, field in enumerate(dataclasses.fields(ImageRecord)):
        if field.name == "next_attempt_at":
            values[field.name] = dt.datetime(2026, 1, 2, 3, 4, 5)
        elif field.name == "sidecar_fields":
            values[field.name] = ("title", "alt_text")
        elif str(field.type).startswith("int"):
            values[field.name] = 1000 + i
        else:
            values[field.name] = f"{field.name}-{i}"
    return ImageRecord(**values)


def test_a_pickled_record_keeps_every_field_even_ones_added_later() -> None:
    whole = every_field_set()
    again = pickle.loads(pickle.dumps(whole))  # noqa: S301 (our own bytes)
    assert again == whole
    assert dataclasses.astuple(again) == dataclasses.astuple(whole)


def test_the_texts_of_an_update_come_in_the_digest_s_order() -> None:
    update = TextUpdate(1, "a.jpg", 7, "T", "D", "C", "A", "")
    assert dict(zip(TEXT_FIELDS, update.values, strict=True)) == {
        "title": "T",
        "description": "D",
        "caption": "C",
        "alt_text": "A",
    }


def test_what_a_known_file_and_an_upload_job_leave_out_is_empty() -> None:
    known = KnownFile(1, 10, 20, Status.DONE, None, None)
    assert (known.wp_media_id, known.sidecar_mtime_ns) == (None, None)
    job = UploadJob(1, "a.jpg", "0" * 64, "image/jpeg", "t", "d", None, 0)
    assert (job.caption, job.alt_text) == (None, None)


def test_changes_count_rows_recorded_anew_or_settled_as_gone() -> None:
    summary = ScanSummary(new=1, changed=2, unchanged=50, rejected=3, missing=4, failed=6, busy=7)
    assert summary.changes == 10  # a file failing again and again is no change
    assert ScanSummary(unchanged=9, failed=2, busy=1).changes == 0


def test_the_summary_line_says_every_count() -> None:
    summary = ScanSummary(
        new=1, changed=2, unchanged=3, rejected=4, missing=5, failed=6, busy=7, elapsed=1.234
    )
    assert summary.line() == (
        "1 new, 2 changed, 3 unchanged, 4 rejected, 5 missing, 6 failed, "
        "7 still being written, in 1.23s"
    )


def test_the_summary_line_says_an_interruption_and_held_deletions_only_when_there() -> None:
    summary = ScanSummary(new=1, interrupted=True, held=12)
    assert summary.line().endswith("in 0.00s (interrupted); 12 deletion(s) held")
    assert "interrupted" not in ScanSummary().line() and "held" not in ScanSummary().line()


def test_a_row_name_is_as_long_as_the_file_name_column_takes() -> None:
    column_type = images.c.file_name.type
    assert isinstance(column_type, String) and column_type.length == FILE_NAME_MAX
