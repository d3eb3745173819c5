"""The upload queue (imgwatch/db/uploadqueue.py): rows due, claims, outcomes, shared media."""

from __future__ import annotations

import datetime as dt

from imgwatch.db.store import ImageStore
from imgwatch.model import Status, UploadJob, utcnow
from tests.db.records import job_of, record, set_row
from tests.rows import row_of

HOUR = dt.timedelta(hours=1)
# What the end of an upload sets.
RECORDED = (
    "status",
    "wp_media_id",
    "wp_url",
    "wp_text_digest",
    "attempts",
    "last_error",
    "next_attempt_at",
    "claimed_by",
    "claimed_until",
)


def pending(store: ImageStore, *names: str) -> list[UploadJob]:
    """Rows read and waiting for their upload, as the row writer leaves them."""
    store.upsert([record(n, status=Status.PENDING, sha256=n[0] * 64) for n in names])
    return [job_of(store, n) for n in names]


def due(store: ImageStore, *, include_scheduled: bool = False, owner: str = "") -> list[str]:
    return [
        j.file_name for j in store.due_uploads(include_scheduled=include_scheduled, owner=owner)
    ]


def test_due_uploads_are_the_rows_whose_file_is_not_in_wordpress_in_id_order(
    store: ImageStore,
) -> None:
    now = utcnow()
    store.upsert(
        [
            record("pending.jpg", status=Status.PENDING),
            record("unread.jpg", status=Status.PENDING, sha256=None),
            record("uploading.jpg", status=Status.PENDING),
            record("done-no-url.jpg"),
            record("done.jpg"),
            record("failed-due.jpg", status=Status.FAILED, next_attempt_at=now - HOUR),
            record("failed-later.jpg", status=Status.FAILED, next_attempt_at=now + HOUR),
            record("failed-for-good.jpg", status=Status.FAILED),
            record("rejected.jpg", status=Status.REJECTED),
            record("missing.jpg", status=Status.MISSING),
        ]
    )
    set_row(store, "uploading.jpg", status=Status.UPLOADING)
    set_row(store, "done.jpg", wp_url="https://wp/done.jpg", wp_media_id=3)
    # Listed out of order: the queue follows the rows' ids.
    set_row(store, "pending.jpg", file_name="zz-pending.jpg")
    assert due(store) == ["zz-pending.jpg", "uploading.jpg", "done-no-url.jpg", "failed-due.jpg"]
    assert due(store, include_scheduled=True) == [
        "zz-pending.jpg",
        "uploading.jpg",
        "done-no-url.jpg",
        "failed-due.jpg",
        "failed-later.jpg",
    ]


def test_a_due_upload_carries_what_the_upload_needs(store: ImageStore) -> None:
    store.upsert(
        [
            record(
                "a.jpg",
                status=Status.PENDING,
                sha256="a" * 64,
                mime_type="image/png",
                title="T",
                description="D",
                caption="C",
                alt_text="A",
            )
        ]
    )
    set_row(store, "a.jpg", wp_media_id=12, attempts=2)
    (job,) = store.due_uploads()
    assert job == UploadJob(
        (row_of(store, "a.jpg") or {})["id"],
        "a.jpg",
        "a" * 64,
        "image/png",
        "T",
        "D",
        12,
        2,
        "C",
        "A",
    )


def test_rows_another_uploader_holds_are_not_due_for_an_owner(store: ImageStore) -> None:
    a, b, c = pending(store, "a.jpg", "b.jpg", "c.jpg")
    assert store.mark_uploading(a, "host-a:1", lease=600)
    assert store.mark_uploading(b, "host-b:2", lease=600)
    assert store.mark_uploading(c, "host-b:2", lease=-1)  # a claim run out
    assert due(store, owner="host-a:1") == ["a.jpg", "c.jpg"]
    assert due(store, owner="host-b:2") == ["b.jpg", "c.jpg"]
    assert due(store, owner="host-c:3") == ["c.jpg"]
    assert due(store) == ["a.jpg", "b.jpg", "c.jpg"]  # no owner: every row to upload


def test_a_claim_marks_the_row_uploading_until_its_lease_runs_out(store: ImageStore) -> None:
    (job,) = pending(store, "a.jpg")
    before = utcnow()
    assert store.mark_uploading(job, "host-a:1", lease=600)
    row = row_of(store, "a.jpg") or {}
    assert (row["status"], row["claimed_by"]) == (Status.UPLOADING, "host-a:1")
    lease_end = before + dt.timedelta(seconds=600)
    assert lease_end <= row["claimed_until"] <= lease_end + dt.timedelta(seconds=5)


def test_a_claim_needs_the_same_content_and_a_row_still_to_upload(store: ImageStore) -> None:
    a, b = pending(store, "a.jpg", "b.jpg")
    set_row(store, "a.jpg", sha256="f" * 64)  # the file changed since the job was read
    assert not store.mark_uploading(a, "host-a:1")
    assert store.record_upload(b, 5, "https://wp/b.jpg", "")  # another daemon finished it
    assert not store.mark_uploading(b, "host-a:1")
    for name in ("a.jpg", "b.jpg"):
        row = row_of(store, name) or {}
        assert row["claimed_by"] is None and row["status"] != Status.UPLOADING
    set_row(store, "b.jpg", wp_url=None)  # done while WordPress was not configured
    assert store.mark_uploading(b, "host-a:1")


def test_an_upload_recorded_finishes_the_row_and_ends_the_claim(store: ImageStore) -> None:
    (job,) = pending(store, "a.jpg")
    set_row(store, "a.jpg", attempts=2, last_error="timed out")
    assert store.mark_uploading(job, "host-a:1")
    assert store.record_upload(job, 42, "https://wp/a.jpg", "d" * 64)
    row = row_of(store, "a.jpg") or {}
    assert {k: row[k] for k in RECORDED} == {
        "status": Status.DONE,
        "wp_media_id": 42,
        "wp_url": "https://wp/a.jpg",
        "wp_text_digest": "d" * 64,
        "attempts": 0,
        "last_error": None,
        "next_attempt_at": None,
        "claimed_by": None,
        "claimed_until": None,
    }
    assert due(store, include_scheduled=True) == []


def test_an_outcome_for_content_no_longer_there_changes_nothing(store: ImageStore) -> None:
    (job,) = pending(store, "a.jpg")
    assert store.mark_uploading(job, "host-a:1")
    store.upsert([record("a.jpg", status=Status.PENDING, sha256="e" * 64)])  # new content
    before = row_of(store, "a.jpg")
    assert not store.record_upload(job, 42, "https://wp/a.jpg", "")
    assert not store.record_upload_failure(job, "refused", None)
    assert not store.release_upload(job, "host-a:1")
    assert row_of(store, "a.jpg") == before
    assert due(store) == ["a.jpg"]


def test_a_failure_counts_the_attempt_and_says_when_to_try_again(store: ImageStore) -> None:
    later, never = pending(store, "later.jpg", "never.jpg")
    next_time = utcnow() + HOUR
    assert store.mark_uploading(later, "host-a:1")
    assert store.record_upload_failure(later, "503 from the site", next_time)
    assert store.record_upload_failure(later, "503 again", next_time)
    row = row_of(store, "later.jpg") or {}
    assert (row["status"], row["attempts"], row["last_error"], row["next_attempt_at"]) == (
        Status.FAILED,
        2,
        "503 again",
        next_time,
    )
    assert (row["claimed_by"], row["claimed_until"]) == (None, None)
    assert store.record_upload_failure(never, "type not allowed", None)
    assert due(store) == []
    # Only a scheduled failure comes back; one without a time waits for its file.
    assert due(store, include_scheduled=True) == ["later.jpg"]


def test_a_row_given_back_stays_due_with_nothing_counted(store: ImageStore) -> None:
    (job,) = pending(store, "a.jpg")
    set_row(store, "a.jpg", attempts=1, last_error="timed out")
    assert store.mark_uploading(job, "host-a:1", lease=600)
    assert store.release_upload(job, "host-a:1")
    row = row_of(store, "a.jpg") or {}
    assert (row["status"], row["attempts"], row["last_error"]) == (Status.PENDING, 1, "timed out")
    assert (row["claimed_by"], row["claimed_until"]) == (None, None)
    assert due(store, owner="host-b:2") == ["a.jpg"]
    assert not store.release_upload(job, "host-a:1")  # given back already: no claim left


def test_failures_that_passed_are_due_now_not_at_their_schedule(store: ImageStore) -> None:
    now = utcnow()
    store.upsert(
        [
            record("later.jpg", status=Status.FAILED, next_attempt_at=now + HOUR),
            record("already.jpg", status=Status.FAILED, next_attempt_at=now - HOUR),
            record("never.jpg", status=Status.FAILED),
            record("done.jpg"),
        ]
    )
    assert due(store) == ["already.jpg", "done.jpg"]
    assert store.retry_failed_now() == 1
    assert due(store) == ["later.jpg", "already.jpg", "done.jpg"]
    assert (row_of(store, "never.jpg") or {})["next_attempt_at"] is None
    assert (row_of(store, "already.jpg") or {})["next_attempt_at"] == now - HOUR
    assert store.retry_failed_now() == 0


def test_claims_of_dead_owners_are_let_go_and_no_others(store: ImageStore) -> None:
    jobs = pending(store, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    for job, owner in zip(jobs, ("host_1:5", "host_1:6", "hostX1:7", "other:8"), strict=True):
        assert store.mark_uploading(job, owner, lease=600)
    # '_' in the prefix is a character, not LIKE's any-character.
    assert sorted(store.claim_owners("host_1:")) == ["host_1:5", "host_1:6"]
    assert store.claim_owners("nobody:") == []
    assert store.release_claims_of([]) == 0
    assert store.release_claims_of(["host_1:5", "host_1:6"]) == 2
    assert store.claim_owners("host_1:") == []
    assert sorted(store.claim_owners("")) == ["hostX1:7", "other:8"]
    # Released rows are free for any uploader; the others' claims still hold.
    assert store.mark_uploading(jobs[0], "other:8")
    assert not store.mark_uploading(jobs[2], "other:8")


def test_a_deleted_media_item_reopens_only_its_done_rows(store: ImageStore) -> None:
    store.upsert(
        [
            record("a.jpg"),
            record("b.jpg", status=Status.FAILED),
            record("c.jpg"),
        ]
    )
    for name, media in (("a.jpg", 9), ("b.jpg", 9), ("c.jpg", 10)):
        set_row(store, name, wp_media_id=media, wp_url=f"https://wp/{media}", attempts=3)
    set_row(store, "a.jpg", claimed_by="host-a:1", last_error="old")
    assert store.media_deleted(9, reupload=True) == ["a.jpg"]
    a = row_of(store, "a.jpg") or {}
    assert (a["status"], a["attempts"], a["last_error"], a["claimed_by"]) == (
        Status.PENDING,
        0,
        None,
        None,
    )
    b, c = row_of(store, "b.jpg") or {}, row_of(store, "c.jpg") or {}
    assert (b["status"], b["wp_media_id"]) == (Status.FAILED, 9)
    assert (c["status"], c["wp_media_id"], c["wp_url"]) == (Status.DONE, 10, "https://wp/10")
    assert store.media_deleted(77, reupload=False) == []


def test_the_first_user_of_a_media_item_is_its_lowest_done_row(store: ImageStore) -> None:
    store.upsert([record(n) for n in ("gone.jpg", "first.jpg", "second.jpg", "other.jpg")])
    for name in ("gone.jpg", "first.jpg", "second.jpg"):
        set_row(store, name, wp_media_id=5)
    set_row(store, "gone.jpg", status=Status.MISSING)
    set_row(store, "other.jpg", wp_media_id=6)
    assert store.first_user(5) == (row_of(store, "first.jpg") or {})["id"]
    set_row(store, "first.jpg", status=Status.FAILED)
    assert store.first_user(5) == (row_of(store, "second.jpg") or {})["id"]
    assert store.first_user(404) is None


def test_a_media_item_is_in_use_while_another_row_has_or_awaits_it(store: ImageStore) -> None:
    store.upsert([record("a.jpg", sha256="a" * 64), record("b.jpg", sha256="b" * 64)])
    set_row(store, "a.jpg", wp_media_id=5, wp_url="https://wp/5")
    a_id = (row_of(store, "a.jpg") or {})["id"]
    b_id = (row_of(store, "b.jpg") or {})["id"]
    assert not store.media_in_use(5, except_id=a_id)
    set_row(store, "b.jpg", wp_media_id=5)
    assert store.media_in_use(5, except_id=a_id)
    assert store.media_in_use(5, except_id=b_id)
    set_row(store, "b.jpg", wp_media_id=None)
    # Same content as a.jpg: once it waits for its upload, that upload links to the item.
    set_row(store, "b.jpg", sha256="a" * 64, wp_url="https://wp/elsewhere")
    assert not store.media_in_use(5, except_id=a_id, sha256="a" * 64)  # done elsewhere
    for waiting in (Status.PENDING, Status.UPLOADING, Status.FAILED):
        set_row(store, "b.jpg", status=waiting)
        assert store.media_in_use(5, except_id=a_id, sha256="a" * 64), waiting
        assert not store.media_in_use(5, except_id=a_id), waiting
    set_row(store, "b.jpg", status=Status.REJECTED)
    assert not store.media_in_use(5, except_id=a_id, sha256="a" * 64)
