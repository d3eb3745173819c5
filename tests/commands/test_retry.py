"""`imgwatch retry` as a person runs it: real processes, both databases, WordPress, a daemon."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from imgwatch.model import Status, utcnow
from tests.commands.helpers import imgwatch, three_files
from tests.daemonproc import start, wait_rows
from tests.imagefiles import write_image
from tests.rows import row_of
from tests.servers import MariaDB, WordPress
from tests.wordpress.test_uploader import wp_env


def test_retry_rejected_after_raising_the_size_limit(image_dir: Path, db_url: URL) -> None:
    big = write_image(image_dir / "big.png", 800, 800)
    assert big.stat().st_size > 0.1 * 2**20
    limit = {"IMGWATCH_MAX_FILE_MB": "0.1"}
    imgwatch("--rescan", image_dir=image_dir, db=db_url, **limit)
    store = ImageStore(db_url)
    try:
        assert row_of(store, "big.png")["status"] == Status.REJECTED  # type: ignore[index]
        # Unchanged on disk: a rescan alone does not read it again.
        again = imgwatch("--rescan", image_dir=image_dir, db=db_url)
        assert again.stdout.startswith("rescan: 0 new, 0 changed, 1 unchanged")
        result = imgwatch("retry", "--rejected", image_dir=image_dir, db=db_url)
        assert result.returncode == 0, result.stderr
        assert (
            result.stdout.strip() == "retry: 0 failed upload(s) due now, 1 file(s) to be read again"
        )
        row = row_of(store, "big.png")
        assert row is not None and (row["status"], row["sha256"]) == (Status.PENDING, None)
        done = imgwatch("--rescan", image_dir=image_dir, db=db_url)
        assert done.stdout.startswith("rescan: 0 new, 1 changed, 0 unchanged, 0 rejected")
        row = row_of(store, "big.png")
        assert row is not None and (row["status"], row["last_error"]) == (Status.DONE, None)
    finally:
        store.close()


def test_retry_failed_uploads_makes_them_due_now(image_dir: Path, db_url: URL) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "b.jpg")
    imgwatch("--rescan", image_dir=image_dir, db=db_url)
    store = ImageStore(db_url)
    try:
        # What WordPress refusing a file leaves: failed, not scheduled again.
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE images SET status='failed', attempts=5, wp_url=NULL, "
                "last_error='WordPress answered 500', next_attempt_at=NULL"
            )
        assert store.due_uploads(include_scheduled=True) == []
        result = imgwatch("retry", image_dir=image_dir, db=db_url)  # --failed by default
        assert (
            result.stdout.strip() == "retry: 2 failed upload(s) due now, 0 file(s) to be read again"
        )
        due = store.due_uploads()
        assert sorted(j.file_name for j in due) == ["a.jpg", "b.jpg"]
        assert all(j.attempts == 0 for j in due)
        row = row_of(store, "a.jpg")
        assert row is not None and row["next_attempt_at"] <= utcnow()
    finally:
        store.close()


def test_a_retried_failed_upload_reaches_wordpress(
    image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    write_image(image_dir / "a.jpg")
    wp = wp_env(live_wordpress)
    imgwatch("--rescan", image_dir=image_dir, db=db, **wp)
    store = ImageStore(db)
    try:
        # As WordPress refusing it for good would have left it.
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE images SET status='failed', wp_url=NULL, wp_media_id=NULL, "
                "last_error='WordPress answered 413', next_attempt_at=NULL"
            )
        imgwatch("retry", "--failed", image_dir=image_dir, db=db)
        result = imgwatch("--rescan", image_dir=image_dir, db=db, **wp)
        assert "; wordpress: 0 uploaded, 1 linked to existing media, 0 failed" in result.stdout
        row = row_of(store, "a.jpg")
        assert row is not None and row["status"] == Status.DONE and row["wp_url"]
    finally:
        store.close()


def test_retry_named_files(image_dir: Path, db_url: URL) -> None:
    three_files(image_dir)
    imgwatch("--rescan", image_dir=image_dir, db=db_url)
    result = imgwatch(
        "retry",
        str(image_dir / "sub" / "b.png"),  # a path
        "a.jpg",  # a name in the image directory
        "nope.jpg",
        image_dir=image_dir,
        db=db_url,
    )
    assert result.returncode == 1
    assert "2 file(s) to be read again" in result.stdout
    assert "retry: no row for 'nope.jpg'" in result.stderr
    again = imgwatch("--rescan", image_dir=image_dir, db=db_url)
    assert again.stdout.startswith("rescan: 0 new, 2 changed, 1 unchanged")
    outside = imgwatch("retry", "/etc/passwd", image_dir=image_dir, db=db_url)
    assert outside.returncode == 64
    assert "is not inside the image directory" in outside.stderr


def test_the_daemon_reads_retried_files_without_a_signal(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    write_image(image_dir / "big.png", 800, 800)
    imgwatch("--rescan", image_dir=image_dir, db=db_url, IMGWATCH_MAX_FILE_MB="0.1")
    with start(tmp_path, image_dir, db_url) as daemon:
        daemon.wait_log(r"startup reconcile: 0 new")
        imgwatch("retry", "--rejected", image_dir=image_dir, db=db_url)
        daemon.wait_log(r"retry reconcile: 0 new, 1 changed", timeout=40)
        wait_rows(db_url, lambda rows: rows["big.png"]["status"] == Status.DONE)
        assert daemon.stop() == 0
