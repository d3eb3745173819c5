"""A photo's words in step with its media item: the digests, the rule that tells a
person's edit from the file's own words, and which rows are due, on SQLite and the
real MariaDB (each computes the digest itself, and must agree with Python)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import ImageRecord, Status
from imgwatch.textdigest import UNKNOWN, changed_fields, text_digest
from tests.daemonproc import (
    DaemonProcess,
    daemon_env,
    rows_by_name,
    start,
    wait_for,
    wait_rows,
    wp_settings,
)
from tests.imagefiles import write_image
from tests.rows import row_of
from tests.runner import run
from tests.servers import MariaDB, WordPress
from tests.wordpress.test_uploader import wp_env

AWKWARD = [
    "",
    "plain",
    "caf\u00e9 \u00e0 l'\u00e9t\u00e9",
    "cafe\u0301 (NFD)",
    "emoji \U0001f600 and \u4e2d\u6587",
    "quotes ' \" and back\\slash",
    "trailing spaces   ",
    "line\nbreaks\r\nand\ttabs",
    "percent %s %(x)s",
]


def record(name: str, title: str | None, **fields: Any) -> ImageRecord:
    base: dict[str, Any] = {
        "file_name": name,
        "title": title,
        "description": fields.pop("description", "Image description"),
        "status": Status.DONE,
        "sha256": "0" * 64,
        "size_bytes": 1,
        "mtime_ns": 1,
        "mime_type": "image/jpeg",
    }
    base.update(fields)
    rec = ImageRecord(**base)
    rec.file_text_digest = text_digest(rec.title, rec.description, rec.caption, rec.alt_text)
    return rec


def row(store: ImageStore, name: str) -> dict[str, Any]:
    got = row_of(store, name)
    assert got is not None
    return got


def set_row(store: ImageStore, name: str, **values: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(images).where(images.c.file_name == name).values(**values))


def uploaded(store: ImageStore, name: str, media_id: int) -> None:
    """As if uploaded with its words as they are now."""
    r = row(store, name)
    sent = text_digest(r["title"], r["description"], r["caption"], r["alt_text"])
    set_row(store, name, wp_media_id=media_id, wp_url=f"https://wp/{media_id}", wp_text_digest=sent)


def test_the_database_computes_the_same_digest(store: ImageStore) -> None:
    store.upsert(
        [
            record(f"w{i}.jpg", text, description=text, caption=text[::-1] or None, alt_text=text)
            for i, text in enumerate(AWKWARD)
        ]
    )
    for i in range(len(AWKWARD)):
        set_row(store, f"w{i}.jpg", wp_media_id=100 + i, wp_url="u")
    assert store.baseline_text_digests() == len(AWKWARD)
    for i in range(len(AWKWARD)):
        r = row(store, f"w{i}.jpg")
        assert r["wp_text_digest"] == text_digest(
            r["title"], r["description"], r["caption"], r["alt_text"]
        ), AWKWARD[i]
        assert r["file_text_digest"] == r["wp_text_digest"]  # the upsert kept Python's
    assert store.text_updates_due() == []  # and compares them the same way
    assert store.baseline_text_digests() == 0  # only rows that had none


def test_new_words_from_the_file_replace_its_old_ones_but_not_a_persons(
    store: ImageStore,
) -> None:
    store.upsert([record("p.jpg", "Embedded", caption="Cap")])
    # The file's metadata changed: the row follows (it still said what the file said).
    store.upsert([record("p.jpg", "Embedded again", caption="Cap 2")])
    r = row(store, "p.jpg")
    assert (r["title"], r["caption"]) == ("Embedded again", "Cap 2")
    # A person edits the title in the database; the file changes again.
    set_row(store, "p.jpg", title="Typed by a person")
    store.upsert([record("p.jpg", "Embedded a third time", caption=None)])
    r = row(store, "p.jpg")
    assert r["title"] == "Typed by a person"  # kept
    assert r["caption"] is None  # the file no longer gives one: it goes with it
    # An empty field is filled from the file, as ever.
    set_row(store, "p.jpg", alt_text=None)
    store.upsert([record("p.jpg", "Embedded a third time", alt_text="Alt")])
    assert row(store, "p.jpg")["alt_text"] == "Alt"


def test_rows_from_before_the_digest_keep_their_words_once(store: ImageStore) -> None:
    # The original service's values, or an older imgwatch's: no file_text_digest.
    store.upsert([record("o.jpg", "Original")])
    set_row(store, "o.jpg", file_text_digest=None, title="Set by the old service")
    store.upsert([record("o.jpg", "From the file")])
    assert row(store, "o.jpg")["title"] == "Set by the old service"
    # From now on the row's words count as the file's: the next change is followed.
    store.upsert([record("o.jpg", "From the file, changed")])
    assert row(store, "o.jpg")["title"] == "From the file, changed"


def test_a_file_first_recorded_unreadable_follows_its_words_once_read(
    store: ImageStore,
) -> None:
    # A rejected or failed read records the defaults, with their digest.
    rejected = record("r.jpg", "r.jpg", status="rejected", sha256=None)
    store.upsert([rejected])
    store.upsert([record("r.jpg", "The embedded title")])
    assert row(store, "r.jpg")["title"] == "The embedded title"


def test_anything_a_person_stores_in_a_text_column_is_digested(store: ImageStore) -> None:
    store.upsert([record("b.jpg", "B")])
    uploaded(store, "b.jpg", 3)
    if store.dialect == "sqlite":  # SQLite stores what it is given: a blob, a number
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE images SET title = X'c3a9', caption = 42 WHERE file_name = 'b.jpg'"
            )
    else:  # the original service's table may have latin1 columns
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "ALTER TABLE images MODIFY title VARCHAR(255) CHARACTER SET latin1"
            )
            conn.exec_driver_sql("UPDATE images SET title = 'caf\u00e9' WHERE file_name='b.jpg'")
    (due,) = store.text_updates_due()  # no error, and the same digest as Python's
    assert store.record_text_sent(due.id, 3, text_digest(*due.values))
    assert store.text_updates_due() == []
    store.upsert([record("b.jpg", "B")])  # and the upsert's comparison works too


def test_which_rows_are_due_and_which_fields(store: ImageStore) -> None:
    store.upsert([record("a.jpg", "A"), record("b.jpg", "B"), record("c.jpg", "C")])
    for name, media in (("a.jpg", 1), ("b.jpg", 2), ("c.jpg", 2)):
        uploaded(store, name, media)
    assert store.text_updates_due() == []
    set_row(store, "a.jpg", title="A edited", alt_text="new alt")
    (due,) = store.text_updates_due()
    assert (due.file_name, due.wp_media_id) == ("a.jpg", 1)
    assert changed_fields(due.wp_text_digest, due.values) == ["title", "alt_text"]
    assert store.text_updates_due(names=["b.jpg"]) == []
    assert [u.file_name for u in store.text_updates_due(names=["a.jpg"])] == ["a.jpg"]
    assert store.text_updates_due(after_id=due.id) == []
    assert store.record_text_sent(due.id, 1, text_digest(*due.values))
    assert store.text_updates_due() == []
    # b and c share media 2: b, the first, speaks for it; c's edit stays in c's row...
    set_row(store, "c.jpg", title="C edited")
    assert store.text_updates_due() == []
    # ... until b is gone (or no longer done: failed, rejected): then c's words are the
    # item's.
    set_row(store, "b.jpg", status=Status.MISSING)
    assert [u.file_name for u in store.text_updates_due()] == ["c.jpg"]
    set_row(store, "b.jpg", status="rejected")
    assert [u.file_name for u in store.text_updates_due()] == ["c.jpg"]
    # Unknown (a linked item, retry FILE): everything is sent.
    set_row(store, "a.jpg", wp_text_digest=UNKNOWN)
    first = store.text_updates_due()[0]
    assert (
        first.file_name == "a.jpg" and len(changed_fields(first.wp_text_digest, first.values)) == 4
    )


@pytest.mark.parametrize("reupload", [True, False])
def test_a_media_item_deleted_in_wordpress(store: ImageStore, reupload: bool) -> None:
    store.upsert([record("a.jpg", "A"), record("b.jpg", "B")])
    uploaded(store, "a.jpg", 9)
    uploaded(store, "b.jpg", 9)
    assert sorted(store.media_deleted(9, reupload=reupload)) == ["a.jpg", "b.jpg"]
    for name in ("a.jpg", "b.jpg"):
        r = row(store, name)
        assert (r["wp_media_id"], r["wp_url"], r["wp_text_digest"]) == (None, None, None)
        assert r["status"] == (Status.PENDING if reupload else "failed")
    due = {j.file_name for j in store.due_uploads()}
    assert due == ({"a.jpg", "b.jpg"} if reupload else set())
    if not reupload:
        assert "deleted in WordPress" in row(store, "a.jpg")["last_error"]
        with store.engine.connect() as conn:
            assert conn.execute(select(images.c.next_attempt_at)).scalars().all() == [None, None]


# --- against the real daemon, MariaDB and WordPress ------------------------------------


def media_words(site: WordPress, media_id: int) -> tuple[str, str, str, str]:
    """title.raw, caption.raw, description.raw, alt_text, read back over REST."""
    item, _ = site.api(f"/wp/v2/media/{media_id}", context="edit")
    return (
        item["title"]["raw"],
        item["caption"]["raw"],
        item["description"]["raw"],
        item["alt_text"],
    )


def wait_words(site: WordPress, media_id: int, expected: tuple[str, str, str, str]) -> None:
    seen: list[tuple[str, str, str, str]] = []

    def arrived() -> bool:
        seen.append(media_words(site, media_id))
        return seen[-1] == expected

    try:
        wait_for(arrived, 30, f"media {media_id} to say {expected}")
    except AssertionError:
        raise AssertionError(f"media {media_id} says {seen[-1]}, not {expected}") from None


def edit_in_wordpress(site: WordPress, media_id: int, **fields: str) -> None:
    """A person's edit in wp-admin, as the REST API makes it."""
    resp = requests.post(
        f"{site.url}/?rest_route=/wp/v2/media/{media_id}",
        json=fields,
        auth=("uploader", site.passwords["uploader"]),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


def sidecar(image: Path, **fields: str) -> None:
    image.with_name(image.name + ".json").write_text(json.dumps(fields))


def test_words_reach_the_same_media_item_from_every_source(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    photo = write_image(image_dir / "photo.jpg")
    with start(tmp_path, image_dir, db, **wp_settings(site)) as daemon:
        first = wait_rows(db, lambda r: bool(r.get("photo.jpg", {}).get("wp_media_id")))
        media = int(first["photo.jpg"]["wp_media_id"])
        count = site.media_count()
        # A sidecar written: every field it gives reaches the item.
        sidecar(photo, title="Harbour", caption="Boats", description="Long", alt_text="Boats")
        wait_words(site, media, ("Harbour", "Boats", "Long", "Boats"))
        # Corrected, without a description: the row's goes back to the file's own.
        sidecar(photo, title="Harbour at dawn", caption="Boats", alt_text="Boats in a harbour")
        wait_words(
            site, media, ("Harbour at dawn", "Boats", "Image description", "Boats in a harbour")
        )
        # A person's edit in WordPress stays while the folder's value does not change.
        edit_in_wordpress(site, media, description="Written in wp-admin")
        sidecar(photo, title="Dawn", caption="Boats", alt_text="Boats in a harbour")
        wait_words(site, media, ("Dawn", "Boats", "Written in wp-admin", "Boats in a harbour"))
        # Removed: the file's own words again (here: none but the defaults).
        photo.with_name("photo.jpg.json").unlink()
        wait_words(site, media, ("photo.jpg", "", "Written in wp-admin", ""))
        # A person's edit in the database, noticed at the reconcile SIGHUP asks for.
        set_db(db, "photo.jpg", title="Typed in the database", alt_text="Typed alt")
        daemon.signal(signal.SIGHUP)
        wait_words(site, media, ("Typed in the database", "", "Written in wp-admin", "Typed alt"))
        # `imgwatch retry FILE` gives the item every field again.
        edit_in_wordpress(site, media, title="Changed in wp-admin", caption="wp caption")
        retried = run("retry", "photo.jpg", env=daemon_env(image_dir, db))
        assert retried.returncode == 0, retried.stderr
        wait_words(site, media, ("Typed in the database", "", "Image description", "Typed alt"))
        rows = rows_by_name(db)
        assert daemon.stop() == 0
    assert site.media_count() == count  # one media item in all: updated, never uploaded again
    assert rows["photo.jpg"]["wp_media_id"] == media
    assert "Traceback" not in daemon.log()


KILL_AT_UPDATE = """
import os, signal
from imgwatch.wordpress import client as wordpress

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

wordpress.MediaClient.update_fields = die
"""


def test_kill_9_between_the_row_change_and_the_update_loses_nothing(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    photo = write_image(image_dir / "k.jpg")
    harness = tmp_path / "harness"
    harness.mkdir()
    (harness / "sitecustomize.py").write_text(KILL_AT_UPDATE)
    env = {**daemon_env(image_dir, db, **wp_settings(site)), "PYTHONPATH": str(harness)}
    doomed = DaemonProcess(tmp_path / "doomed", env)
    try:
        doomed.wait_started()
        row = wait_rows(db, lambda r: bool(r.get("k.jpg", {}).get("wp_media_id")))["k.jpg"]
        sidecar(photo, title="Kept across a crash", alt_text="Alt")
        assert doomed.process.wait(30) == -signal.SIGKILL  # the instant it would update
    finally:
        doomed.close()
    assert rows_by_name(db)["k.jpg"]["title"] == "Kept across a crash"  # the row has it...
    media = int(row["wp_media_id"])
    assert media_words(site, media)[0] == "k.jpg"  # ... WordPress not yet
    with start(tmp_path, image_dir, db, **wp_settings(site)) as daemon:
        wait_words(site, media, ("Kept across a crash", "", "Image description", "Alt"))
        assert daemon.stop() == 0


@pytest.mark.parametrize("reupload", [True, False])
def test_a_media_item_deleted_in_wordpress_is_uploaded_again(
    image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress, reupload: bool
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    write_image(image_dir / "d.jpg")
    wp = {**wp_env(site), "IMGWATCH_WP_REUPLOAD_DELETED": str(reupload).lower()}
    assert run("--rescan", env={**daemon_env(image_dir, db), **wp}).returncode == 0
    old = int(rows_by_name(db)["d.jpg"]["wp_media_id"])
    requests.delete(
        f"{site.url}/?rest_route=/wp/v2/media/{old}&force=true",
        auth=("uploader", site.passwords["uploader"]),
        timeout=30,
    ).raise_for_status()
    assert run("retry", "d.jpg", env=daemon_env(image_dir, db)).returncode == 0
    again = run("--rescan", env={**daemon_env(image_dir, db), **wp})
    row = rows_by_name(db)["d.jpg"]
    if reupload:
        assert again.returncode == 0, again.stderr
        assert "1 uploaded" in again.stdout and "(1 deleted in WordPress)" in again.stdout
        assert row["status"] == Status.DONE and row["wp_media_id"] not in (None, old)
        assert media_words(site, int(row["wp_media_id"]))[0] == "d.jpg"
    else:
        assert again.returncode == 1
        assert row["status"] == "failed" and row["wp_media_id"] is None
        assert f"media {old} was deleted in WordPress" in row["last_error"]
    assert f"media {old} of 'd.jpg' was deleted in WordPress" in again.stderr


def test_identical_content_shows_the_first_names_words(
    image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    one = write_image(image_dir / "one.jpg")
    (image_dir / "two.jpg").write_bytes(one.read_bytes())
    env = {**daemon_env(image_dir, db), **wp_env(site)}
    assert run("--rescan", env=env).returncode == 0
    rows = rows_by_name(db)
    media = int(rows["one.jpg"]["wp_media_id"])
    assert rows["two.jpg"]["wp_media_id"] == media
    set_db(db, "two.jpg", title="Second name's title")
    assert "updated in place" not in run("--rescan", env=env).stdout
    assert media_words(site, media)[0] == "one.jpg"  # the first name speaks for the item
    set_db(db, "one.jpg", title="First name's title")
    assert "1 updated in place" in run("--rescan", env=env).stdout
    assert media_words(site, media)[0] == "First name's title"


def set_db(db: URL, name: str, **values: Any) -> None:
    store = ImageStore(db)
    try:
        set_row(store, name, **values)
    finally:
        store.close()
