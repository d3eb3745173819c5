"""The daemon's upload side (daemon/uploads.py) against the real WordPress."""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import URL

from imgwatch.daemon.stages import Count, Outage, Stats
from imgwatch.daemon.uploads import UploadDispatcher
from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.errors import SiteCondition
from imgwatch.model import ConditionKind, Status, UploadJob
from imgwatch.pipeline import media_client, uploader
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.wordpress.claims import take_over
from imgwatch.wordpress.pause import UploadPause
from tests.daemon.helpers import record_of, settings_for
from tests.daemonproc import wait_for, wp_settings
from tests.imagefiles import write_image
from tests.rows import all_rows, row_of
from tests.servers import WordPress
from tests.wordpress.test_uploader import job_for

UNREACHABLE = {
    "wp_api_url": "http://127.0.0.1:1/wp-json/wp/v2/media",
    "wp_user": "u",
    "wp_password": "pw",
}


@contextmanager
def dispatching(
    store: ImageStore, image_dir: Path, db: URL, wordpress: dict[str, str]
) -> Iterator[UploadDispatcher]:
    """A dispatcher built as the daemon builds it, not started; stopped after."""
    settings = settings_for(image_dir, db, **wordpress)
    client = media_client(settings)
    assert client is not None
    take_over(store)
    dispatcher = UploadDispatcher(uploader(settings, client, store), store, Stats(), Outage())
    try:
        yield dispatcher
    finally:
        began = time.monotonic()
        if dispatcher.alive():
            assert dispatcher.stop(began + 20)
            assert not dispatcher.alive()
        client.close()


def pending(store: ImageStore, image_dir: Path, *names: str) -> None:
    """Files on disk, recorded to go to WordPress (as the writer records them)."""
    for name in names:
        write_image(image_dir / name)
    store.upsert([record_of(image_dir, n, uploads=True) for n in names])
    assert {job.file_name for job in store.due_uploads()} == set(names)


def uploaded(store: ImageStore, names: set[str]) -> bool:
    done = {r["file_name"] for r in all_rows(store) if r["status"] == Status.DONE}
    return names <= done


def paused_in_database(store: ImageStore, owner: str) -> list[str]:
    return [
        c.message
        for c in store.conditions()
        if c.kind == ConditionKind.UPLOADS_PAUSED and c.owner == owner
    ]


def media(site: WordPress, media_id: int) -> dict[str, Any] | None:
    try:
        item, _ = site.api(f"/wp/v2/media/{media_id}", context="edit")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    assert isinstance(item, dict)
    return item


def test_due_rows_go_up_when_new_rows_are_told(
    store: ImageStore, db_url: URL, image_dir: Path, live_wordpress: WordPress
) -> None:
    names = {"a.jpg", "b.png", "sub/c.jpg"}
    pending(store, image_dir, *names)
    before = live_wordpress.media_count()
    with dispatching(store, image_dir, db_url, wp_settings(live_wordpress)) as dispatcher:
        dispatcher.start()
        dispatcher.new_rows()  # as the writer does after a commit
        wait_for(lambda: uploaded(store, names), 30, "the uploads")
        assert dispatcher.stats[Count.UPLOADED] == 3
        assert dispatcher.stop(time.monotonic() + 20) and dispatcher.in_flight() == 0
    assert live_wordpress.media_count() == before + 3
    assert all(row["wp_url"] and row["wp_media_id"] for row in all_rows(store))


def test_uploads_wait_while_the_site_is_paused_and_go_once_it_answers(
    store: ImageStore, db_url: URL, image_dir: Path, live_wordpress: WordPress
) -> None:
    pending(store, image_dir, "a.jpg", "b.jpg")
    with dispatching(store, image_dir, db_url, wp_settings(live_wordpress)) as dispatcher:
        up = dispatcher.uploader
        # As an upload meets it: the first probe is seconds away.
        up.pause.report(SiteCondition("firewall", "a firewall answers uploads"))
        dispatcher.start()
        dispatcher.new_rows()
        # Kept in the database for `imgwatch status`, by the round that held the uploads.
        wait_for(lambda: paused_in_database(store, up.owner), 10, "the pause recorded")
        assert paused_in_database(store, up.owner) == ["a firewall answers uploads"]
        rows = all_rows(store)
        assert {(r["status"], r["attempts"]) for r in rows} == {(Status.PENDING, 0)}
        dispatcher.retry_now()  # SIGHUP: the site is probed now, and answers
        wait_for(lambda: uploaded(store, {"a.jpg", "b.jpg"}), 30, "the uploads")
        wait_for(lambda: not paused_in_database(store, up.owner), 10, "the pause cleared")
        assert up.pause.condition is None


def test_a_stop_while_paused_takes_the_pause_out_of_the_database(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    with dispatching(store, image_dir, db_url, UNREACHABLE) as dispatcher:
        up = dispatcher.uploader
        up.pause.report(SiteCondition("unreachable", "cannot connect to WordPress"))
        dispatcher.start()
        dispatcher.new_rows()
        wait_for(lambda: paused_in_database(store, up.owner), 10, "the pause recorded")
        assert dispatcher.stop(time.monotonic() + 10)
        assert paused_in_database(store, up.owner) == []  # this process is not waiting any more


def test_changed_words_and_purges_reach_wordpress(
    store: ImageStore, db_url: URL, image_dir: Path, live_wordpress: WordPress
) -> None:
    pending(store, image_dir, "a.jpg", "b.jpg")
    with dispatching(store, image_dir, db_url, wp_settings(live_wordpress)) as dispatcher:
        dispatcher.start()
        dispatcher.new_rows()
        wait_for(lambda: uploaded(store, {"a.jpg", "b.jpg"}), 30, "the uploads")
        a, b = row_of(store, "a.jpg"), row_of(store, "b.jpg")
        assert a is not None and b is not None
        with store.engine.begin() as conn:  # the writer recorded new words for a.jpg
            conn.execute(update(images).where(images.c.id == a["id"]).values(title="A new title"))
        dispatcher.words_written(["a.jpg"])

        def titled() -> bool:
            item = media(live_wordpress, a["wp_media_id"])
            return item is not None and item["title"]["raw"] == "A new title"

        wait_for(titled, 30, "the new title in WordPress")
        (image_dir / "b.jpg").unlink()
        dispatcher.purge([GoneRow(b["id"], "b.jpg")])  # IMGWATCH_ON_DELETE=purge
        wait_for(lambda: row_of(store, "b.jpg") is None, 30, "the row purged")
        assert media(live_wordpress, b["wp_media_id"]) is None  # its item went first
        assert media(live_wordpress, a["wp_media_id"]) is not None


class SlowUploader:
    """Stands in for the Uploader in the dispatcher: an upload that takes its time."""

    workers = 2
    owner = "host:1"

    def __init__(self) -> None:
        self.pause = UploadPause()
        self.release = threading.Event()
        self.texts: list[str] = []

    def upload(self, job: UploadJob) -> str:
        self.release.wait(30)
        return "done"

    def update_text(self, update: Any) -> str:
        self.texts.append(update.file_name)
        return "updated"


def test_the_dispatcher_does_not_spin_while_an_upload_is_under_way(
    store: ImageStore, image_dir: Path
) -> None:
    from imgwatch.daemon.stages import Stats
    from imgwatch.daemon.uploads import UploadDispatcher

    job_for(store, image_dir)  # a pending row: due, and soon under way
    up = SlowUploader()
    dispatcher = UploadDispatcher(up, store, Stats())  # type: ignore[arg-type]
    try:
        dispatcher.sweep_text()
        dispatcher.wake.clear()
        dispatcher._dispatch()
        assert dispatcher.in_flight() == 1
        # The row under way is due too; it is not taken for new work, and nothing
        # asks for another round at once: the worker wakes the thread when it is done.
        for _ in range(3):
            dispatcher._dispatch()
            assert dispatcher.in_flight() == 1 and not dispatcher.wake.is_set()
    finally:
        up.release.set()
        dispatcher._pool.shutdown(wait=True)  # its thread was never started
