"""Deleting media items (wordpress/purge.py): against the real WordPress and databases,
an item goes only when no other row uses it, nor will."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgwatch.db.store import ImageStore
from imgwatch.errors import SiteCondition
from imgwatch.model import ImageRecord, Status, UploadJob
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.wordpress.client import Media, MediaClient
from imgwatch.wordpress.outcomes import RetryPolicy
from imgwatch.wordpress.purge import delete_unless_shared, purge
from imgwatch.wordpress.uploader import Uploader
from tests.imagefiles import sha256_of, write_image
from tests.rows import row_of
from tests.servers import WordPress, free_port
from tests.wordpress.test_uploader import FakeClient, job_for, make_uploader


def test_a_purge_whose_delete_fails_keeps_the_row_missing_with_the_reason(
    store: ImageStore, image_dir: Path
) -> None:
    from imgwatch.reconcile.deletions import GoneRow

    job = job_for(store, image_dir)
    store.record_upload(job, 7, "http://wp/x.jpg", "")
    (image_dir / "u.jpg").unlink()
    client = FakeClient(["503"] * 3)  # the site answers its probe: this item's trouble
    up = make_uploader(client, store, image_dir)
    assert up.purge(GoneRow(job.id, "u.jpg")) == "failed"
    row = row_of(store, "u.jpg") or {}
    assert row["status"] == "missing" and "could not delete media 7" in row["last_error"]
    assert up.pause.condition is None


# --- against the real WordPress ------------------------------------------------------


@pytest.fixture
def uploader(live_wordpress: WordPress, store: ImageStore, image_dir: Path) -> Iterator[Uploader]:
    client = MediaClient(
        live_wordpress.media_endpoint,
        "uploader",
        live_wordpress.passwords["uploader"],
        read_timeout=60,
    )
    yield Uploader(client, store, image_dir, policy=RetryPolicy(attempts=2, base=0.01, cap=0.05))
    client.close()


def in_wordpress(up: Uploader, path: Path) -> Media:
    """The file as a media item, uploaded under its content's slug."""
    data = path.read_bytes()
    media, _ = up.client.upload(
        io.BytesIO(data),
        file_name=path.name,
        mime_type="image/jpeg",
        md5_hex=hashlib.md5(data).hexdigest(),
        slug=f"img-{sha256_of(path)}",
        fields={},
    )
    return media


def recorded(up: Uploader, path: Path, media: Media | None) -> UploadJob:
    """The file's row, uploaded as media (or waiting for its upload with None)."""
    name = path.relative_to(up.image_dir).as_posix()
    up.store.upsert(
        [
            ImageRecord(
                name, name, "d", Status.PENDING, sha256=sha256_of(path), mime_type="image/jpeg"
            )
        ]
    )
    (job,) = [j for j in up.store.due_uploads() if j.file_name == name]
    if media is not None:
        assert up.store.record_upload(job, media.id, media.source_url, "")
    return job


def test_a_purged_file_s_media_item_and_row_go(uploader: Uploader) -> None:
    path = write_image(uploader.image_dir / "gone.jpg")
    media = in_wordpress(uploader, path)
    job = recorded(uploader, path, media)
    path.unlink()
    assert purge(uploader, GoneRow(job.id, "gone.jpg")) == "purged"
    assert uploader.client.get(media.id) is None
    assert row_of(uploader.store, "gone.jpg") is None


def test_a_media_item_another_row_uses_is_kept(
    uploader: Uploader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = write_image(uploader.image_dir / "one.jpg")
    second = uploader.image_dir / "two.jpg"
    second.write_bytes(first.read_bytes())  # identical content shares one media item
    media = in_wordpress(uploader, first)
    job = recorded(uploader, first, media)
    recorded(uploader, second, media)
    first.unlink()
    assert purge(uploader, GoneRow(job.id, "one.jpg")) == "purged"
    assert uploader.client.get(media.id) == media  # two.jpg still shows it
    assert row_of(uploader.store, "one.jpg") is None
    assert (row_of(uploader.store, "two.jpg") or {})["wp_media_id"] == media.id
    assert f"kept media {media.id} of 'one.jpg': another file shares it" in caplog.text


@pytest.mark.parametrize("share_identical", [True, False])
def test_a_row_waiting_to_link_to_the_item_keeps_it_when_content_is_shared(
    uploader: Uploader, share_identical: bool
) -> None:
    # The same content under a new name (a move), not uploaded yet: with shared
    # content its upload finds the item by its slug, so the item must stay.
    old = write_image(uploader.image_dir / "old.jpg")
    media = in_wordpress(uploader, old)
    job = recorded(uploader, old, media)
    new = uploader.image_dir / "new.jpg"
    old.rename(new)
    recorded(uploader, new, None)
    uploader.share_identical = share_identical
    assert purge(uploader, GoneRow(job.id, "old.jpg")) == "purged"
    assert (uploader.client.get(media.id) is not None) is share_identical


def test_a_file_back_on_disk_keeps_its_item_and_row(uploader: Uploader) -> None:
    path = write_image(uploader.image_dir / "back.jpg")
    media = in_wordpress(uploader, path)
    job = recorded(uploader, path, media)
    assert purge(uploader, GoneRow(job.id, "back.jpg")) == "kept"
    assert uploader.client.get(media.id) == media
    assert (row_of(uploader.store, "back.jpg") or {})["wp_media_id"] == media.id


def test_a_row_already_gone_or_renamed_is_not_touched(uploader: Uploader) -> None:
    path = write_image(uploader.image_dir / "a.jpg")
    media = in_wordpress(uploader, path)
    job = recorded(uploader, path, media)
    path.unlink()
    # The name now belongs to another row (the id differs): not this purge's.
    assert purge(uploader, GoneRow(job.id + 1000, "a.jpg")) == "purged"
    assert purge(uploader, GoneRow(job.id, "never-recorded.jpg")) == "purged"
    assert uploader.client.get(media.id) == media
    assert row_of(uploader.store, "a.jpg") is not None


def test_a_row_without_media_is_only_forgotten(uploader: Uploader) -> None:
    path = write_image(uploader.image_dir / "local.jpg")
    job = recorded(uploader, path, None)
    path.unlink()
    assert purge(uploader, GoneRow(job.id, "local.jpg")) == "purged"
    assert row_of(uploader.store, "local.jpg") is None


def test_while_uploads_are_paused_a_purge_waits(uploader: Uploader) -> None:
    path = write_image(uploader.image_dir / "w.jpg")
    media = in_wordpress(uploader, path)
    job = recorded(uploader, path, media)
    path.unlink()
    uploader.pause.report(SiteCondition("firewall", "WordPress answers 403 with an HTML page"))
    assert purge(uploader, GoneRow(job.id, "w.jpg")) == "waiting"
    assert uploader.client.get(media.id) == media
    assert (row_of(uploader.store, "w.jpg") or {})["status"] == Status.DONE


def test_an_unreachable_site_pauses_uploads_and_the_row_stays_as_it_is(
    store: ImageStore, image_dir: Path
) -> None:
    client = MediaClient(f"http://127.0.0.1:{free_port()}/wp-json/wp/v2/media", "u", "pw")
    up = Uploader(client, store, image_dir, policy=RetryPolicy(attempts=2, base=0.01, cap=0.05))
    path = write_image(image_dir / "u.jpg")
    job = recorded(up, path, Media(41, "https://wp.example/u.jpg"))
    path.unlink()
    assert purge(up, GoneRow(job.id, "u.jpg")) == "waiting"
    assert up.pause.condition is not None and up.pause.condition.kind == "unreachable"
    row = row_of(store, "u.jpg") or {}
    assert (row["status"], row["last_error"]) == (Status.DONE, None)  # the next reconcile
    client.close()


def test_a_replaced_item_is_deleted_unless_shared(uploader: Uploader) -> None:
    old = write_image(uploader.image_dir / "old-content.jpg")
    media = in_wordpress(uploader, old)
    job = recorded(uploader, old, media)
    other = recorded(uploader, write_image(uploader.image_dir / "other.jpg"), media)
    delete_unless_shared(uploader, media.id, job.id, job.file_name, "replaced media")
    assert uploader.client.get(media.id) == media  # other.jpg uses it
    uploader.store.forget([other.id])
    delete_unless_shared(uploader, media.id, job.id, job.file_name, "replaced media")
    assert uploader.client.get(media.id) is None
    # Already gone: nothing to do, nothing raised.
    delete_unless_shared(uploader, media.id, job.id, job.file_name, "replaced media")
