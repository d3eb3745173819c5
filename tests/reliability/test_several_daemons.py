"""Several daemons, one tree, one MariaDB, one WordPress: each file uploaded once.

On one host here, standing in for several hosts over a shared folder: both
daemons see every file and both try to upload it; the claim in the database
decides which one does.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from imgwatch.db.store import ImageStore
from imgwatch.model import Status, UploadJob
from tests.daemonproc import DaemonProcess, start, wait_rows, wp_settings
from tests.imagefiles import write_image
from tests.rows import row_of
from tests.servers import MariaDB, WordPress


def test_two_daemons_upload_each_file_exactly_once(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    media_before = site.media_count()
    names = {f"shared/{i:02d}.jpg" for i in range(40)}
    # Polling, as over a shared network folder (where inotify sees no other host).
    settings = {**wp_settings(site), "watch_mode": "polling", "poll_interval": "0.5"}
    daemons: list[DaemonProcess] = []
    try:
        daemons.append(start(tmp_path / "a", image_dir, db, **settings))
        daemons.append(start(tmp_path / "b", image_dir, db, **settings))
        for name in sorted(names):
            write_image(image_dir / name, 20, 20)
        rows = wait_rows(
            db,
            lambda r: (
                names <= {n for n, x in r.items() if x["status"] == Status.DONE and x["wp_url"]}
            ),
            timeout=120,
        )
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            d.close()
    assert site.media_count() == media_before + len(names)
    uploads = sum(d.log().count("uploaded 'shared/") for d in daemons)
    assert uploads == len(names)
    assert len({r["wp_media_id"] for r in rows.values()}) == len(names)
    assert all(r["claimed_by"] is None for r in rows.values())


def test_a_claim_of_a_live_uploader_is_respected_and_an_expired_one_is_not(
    mariadb: MariaDB,
) -> None:
    store = ImageStore(mariadb.create_database())
    store.open()
    try:
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO images (file_name, status, sha256, mime_type, attempts) "
                    "VALUES ('a.jpg', 'pending', :sha, 'image/jpeg', 0)"
                ),
                {"sha": "a" * 64},
            )
        job = UploadJob(1, "a.jpg", "a" * 64, "image/jpeg", None, None, None, 0)
        assert store.mark_uploading(job, "host-a:1", lease=60)
        assert not store.mark_uploading(job, "host-b:2", lease=60)  # held by host-a
        assert store.mark_uploading(job, "host-a:1", lease=60)  # its own claim: renewed
        assert store.mark_uploading(job, "host-a:1", lease=-1)  # expires at once
        assert store.mark_uploading(job, "host-b:2", lease=60)  # expired: taken over
        row = row_of(store, "a.jpg")
        assert (
            row is not None
            and row["status"] == Status.UPLOADING
            and row["claimed_by"] == "host-b:2"
        )
        assert store.claim_owners("host-b:") == ["host-b:2"]
        assert store.release_claims_of(["host-b:2"]) == 1
        assert store.mark_uploading(job, "host-c:3", lease=60)  # released: free again
    finally:
        store.close()
