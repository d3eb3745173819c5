"""ImageStore (db/store.py): every part of the db package on one engine."""

from __future__ import annotations

from imgwatch.db.conditions import Conditions
from imgwatch.db.images import ImageRows
from imgwatch.db.mediatext import MediaText
from imgwatch.db.retries import Retries
from imgwatch.db.scans import ScanHistory
from imgwatch.db.store import ImageStore
from imgwatch.db.uploadqueue import UploadQueue
from imgwatch.db.upsert import RowUpserts
from imgwatch.model import ScanSummary, Status
from tests.db.records import record


def test_the_store_is_every_part() -> None:
    for part in (ImageRows, RowUpserts, UploadQueue, MediaText, Conditions, ScanHistory, Retries):
        assert issubclass(ImageStore, part), part.__name__


def test_what_one_part_writes_the_others_read(store: ImageStore) -> None:
    store.upsert([record("a.jpg", status=Status.PENDING), record("b.jpg", status=Status.REJECTED)])
    assert store.counts_by_status() == {Status.PENDING.value: 1, Status.REJECTED.value: 1}
    assert [job.file_name for job in store.due_uploads()] == ["a.jpg"]
    summary = ScanSummary(new=2)
    store.record_scan("startup", summary)
    last = store.last_scan()
    assert last is not None and last["new"] == 2
