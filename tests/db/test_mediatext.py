"""The media items' words (imgwatch/db/mediatext.py): updates due, text sent, baselines."""

from __future__ import annotations

from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from imgwatch.model import Status
from imgwatch.textdigest import text_digest
from tests.db.records import make_original_table, record, set_row
from tests.rows import row_of


def uploaded(store: ImageStore, name: str, media_id: int) -> None:
    """As if uploaded, its words as they are now sent along."""
    row = row_of(store, name) or {}
    sent = text_digest(row["title"], row["description"], row["caption"], row["alt_text"])
    set_row(store, name, wp_media_id=media_id, wp_url=f"https://wp/{media_id}", wp_text_digest=sent)


def due(store: ImageStore, limit: int = 500) -> list[str]:
    return [u.file_name for u in store.text_updates_due(limit=limit)]


def test_only_uploaded_rows_with_what_was_sent_known_can_be_due(store: ImageStore) -> None:
    names = ["due.jpg", "pending.jpg", "missing.jpg", "no-url.jpg", "never-sent.jpg"]
    store.upsert([record(n) for n in names])
    for media, name in enumerate(names, start=1):
        uploaded(store, name, media)
        set_row(store, name, title=f"{name} edited")
    set_row(store, "pending.jpg", status=Status.PENDING)
    set_row(store, "missing.jpg", status=Status.MISSING)
    set_row(store, "no-url.jpg", wp_url=None)
    set_row(store, "never-sent.jpg", wp_text_digest=None)  # from before it was kept
    (update,) = store.text_updates_due()
    row = row_of(store, "due.jpg") or {}
    assert (update.id, update.file_name, update.wp_media_id) == (row["id"], "due.jpg", 1)
    assert update.values == ("due.jpg edited", "Image description", None, None)
    assert update.wp_text_digest == text_digest("due.jpg", "Image description", None, None)


def test_updates_due_come_in_pages_in_id_order(store: ImageStore) -> None:
    names = [f"{i}.jpg" for i in range(7)]
    store.upsert([record(n) for n in names])
    for media, name in enumerate(names, start=1):
        uploaded(store, name, media)
    for name in reversed(names):
        set_row(store, name, caption="new")
    set_row(store, "3.jpg", caption=None)  # back to what was sent: not due
    pages: list[list[str]] = []
    after = 0
    while page := store.text_updates_due(after_id=after, limit=2):
        pages.append([u.file_name for u in page])
        after = page[-1].id
    assert pages == [["0.jpg", "1.jpg"], ["2.jpg", "4.jpg"], ["5.jpg", "6.jpg"]]
    assert due(store, limit=100) == ["0.jpg", "1.jpg", "2.jpg", "4.jpg", "5.jpg", "6.jpg"]


def test_text_sent_is_recorded_only_for_the_item_the_row_still_has(store: ImageStore) -> None:
    store.upsert([record("a.jpg")])
    uploaded(store, "a.jpg", 8)
    set_row(store, "a.jpg", alt_text="Alt")
    (update,) = store.text_updates_due()
    sent = text_digest(*update.values)
    # Uploaded again meanwhile (the item was deleted in WordPress): another item.
    set_row(store, "a.jpg", wp_media_id=9)
    assert not store.record_text_sent(update.id, 8, sent)
    assert (row_of(store, "a.jpg") or {})["wp_text_digest"] != sent
    assert due(store) == ["a.jpg"]
    assert store.record_text_sent(update.id, 9, sent)
    assert (row_of(store, "a.jpg") or {})["wp_text_digest"] == sent
    assert due(store) == []


def test_a_baseline_takes_the_words_of_uploaded_rows_that_have_none(store: ImageStore) -> None:
    names = ["old.jpg", "known.jpg", "pending.jpg", "not-uploaded.jpg"]
    store.upsert([record(n, caption="Cap") for n in names])
    for media, name in enumerate(names[:3], start=1):
        uploaded(store, name, media)
    set_row(store, "old.jpg", wp_text_digest=None, title="Typed before digests were kept")
    set_row(store, "known.jpg", title="Edited since sent")
    set_row(store, "pending.jpg", wp_text_digest=None, status=Status.PENDING)
    assert store.baseline_text_digests() == 1
    digests = {n: (row_of(store, n) or {})["wp_text_digest"] for n in names}
    assert digests == {
        "old.jpg": text_digest("Typed before digests were kept", "Image description", "Cap", None),
        "known.jpg": text_digest("known.jpg", "Image description", "Cap", None),
        "pending.jpg": None,
        "not-uploaded.jpg": None,
    }
    # The old row is not due for what it already said, only for what changes next.
    assert due(store) == ["known.jpg"]
    set_row(store, "old.jpg", alt_text="Now with alt")
    assert due(store) == ["old.jpg", "known.jpg"]


def test_an_unadopted_table_has_no_text_to_send(db_url: URL) -> None:
    make_original_table(db_url)
    store = ImageStore(db_url)
    store.open(create=False)  # only looked at: no wp_text_digest column yet
    try:
        assert store.text_updates_due() == []
        assert store.baseline_text_digests() == 0
    finally:
        store.close()
