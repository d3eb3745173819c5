"""Uploads end to end: `imgwatch --rescan` against the real WordPress and MariaDB.

Every test checks what WordPress holds afterwards, not only what imgwatch says.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from imgwatch.errors import PermanentError, SiteCondition, TransientError
from imgwatch.model import ImageRecord, Status, UploadJob, utcnow
from imgwatch.wordpress.client import Media
from imgwatch.wordpress.outcomes import RetryPolicy
from imgwatch.wordpress.uploader import Uploader
from tests.imagefiles import sha256_of, write_image
from tests.rows import all_rows, row_of
from tests.runner import mysql_env, run
from tests.servers import MariaDB, WordPress


def wp_env(site: WordPress, **extra: str) -> dict[str, str]:
    return {
        "IMGWATCH_WP_API_URL": site.media_endpoint,
        "IMGWATCH_WP_USER": "uploader",
        "IMGWATCH_WP_PASSWORD": site.passwords["uploader"],
        # Short pauses keep the suite fast; the schedule itself is unit-tested.
        "IMGWATCH_WP_BACKOFF": "0.05",
        "IMGWATCH_WP_BACKOFF_MAX": "0.2",
        "IMGWATCH_WP_CONNECT_TIMEOUT": "2",
        **extra,
    }


@pytest.fixture
def db(mariadb: MariaDB) -> URL:
    return mariadb.create_database()


def rescan(
    image_dir: Path, db: URL, site: WordPress, **extra: str
) -> subprocess.CompletedProcess[str]:
    return run(
        "--rescan", "--image-dir", str(image_dir), env={**mysql_env(db), **wp_env(site, **extra)}
    )


def rows(db: URL) -> dict[str, dict[str, object]]:
    store = ImageStore(db)
    try:
        return {r["file_name"]: r for r in all_rows(store)}
    finally:
        store.close()


def slug_count(site: WordPress, sha: str) -> int:
    items, _ = site.api("/wp/v2/media", slug=f"img-{sha}", context="edit")
    return len(items)


def test_uploads_each_image_once_and_stores_source_url(
    live_wordpress: WordPress, db: URL, image_dir: Path
) -> None:
    files = [write_image(image_dir / "a.jpg"), write_image(image_dir / "sub" / "caf\u00e9.png")]
    before = live_wordpress.media_count()
    result = rescan(image_dir, db, live_wordpress)
    assert result.returncode == 0, result.stderr
    assert "wordpress: 2 uploaded" in result.stdout
    assert live_wordpress.media_count() == before + 2
    for path in files:
        row = rows(db)[path.relative_to(image_dir).as_posix()]
        assert row["status"] == Status.DONE
        item, _ = live_wordpress.api(f"/wp/v2/media/{row['wp_media_id']}", context="edit")
        assert row["wp_url"] == item["source_url"]
        served = requests.get(str(row["wp_url"]), timeout=30).content
        assert hashlib.sha256(served).hexdigest() == row["sha256"] == sha256_of(path)
        assert item["slug"] == f"img-{row['sha256']}"
        assert item["title"]["raw"] == path.name
    assert live_wordpress.passwords["uploader"] not in result.stderr + result.stdout
    # A second run uploads nothing.
    again = rescan(image_dir, db, live_wordpress)
    assert again.returncode == 0, again.stderr
    assert "wordpress: 0 uploaded" in again.stdout
    assert live_wordpress.media_count() == before + 2


@pytest.mark.parametrize("share", [True, False])
def test_identical_content_under_two_names(
    live_wordpress: WordPress, db: URL, image_dir: Path, share: bool
) -> None:
    first = write_image(image_dir / "one.jpg")
    (image_dir / "two.jpg").write_bytes(first.read_bytes())
    before = live_wordpress.media_count()
    result = rescan(image_dir, db, live_wordpress, IMGWATCH_WP_SHARE_IDENTICAL=str(share).lower())
    assert result.returncode == 0, result.stderr
    got = rows(db)
    assert got["one.jpg"]["status"] == got["two.jpg"]["status"] == Status.DONE
    if share:
        assert live_wordpress.media_count() == before + 1
        assert got["one.jpg"]["wp_media_id"] == got["two.jpg"]["wp_media_id"]
    else:
        assert live_wordpress.media_count() == before + 2
        assert got["one.jpg"]["wp_media_id"] != got["two.jpg"]["wp_media_id"]


@pytest.mark.parametrize("delete_replaced", [False, True])
def test_changed_content_is_uploaded_again(
    live_wordpress: WordPress, db: URL, image_dir: Path, delete_replaced: bool
) -> None:
    path = write_image(image_dir / "c.jpg")
    assert rescan(image_dir, db, live_wordpress).returncode == 0
    old = rows(db)["c.jpg"]
    write_image(path, 40, 40)
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 10_000_000))
    setting = {"IMGWATCH_WP_DELETE_REPLACED": str(delete_replaced).lower()}
    result = rescan(image_dir, db, live_wordpress, **setting)
    assert result.returncode == 0, result.stderr
    new = rows(db)["c.jpg"]
    assert new["wp_media_id"] != old["wp_media_id"]
    assert new["sha256"] == sha256_of(path)
    old_item_exists = slug_count(live_wordpress, str(old["sha256"])) == 1
    assert old_item_exists is not delete_replaced


def test_adopted_rows_with_a_url_are_not_uploaded_again(
    live_wordpress: WordPress, db: URL, image_dir: Path
) -> None:
    store = ImageStore(db)
    store.open()
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO images (file_name, title, wp_url) VALUES "
                "('old.jpg', 'Old', 'https://wp.example/old.jpg')"
            )
        )
    store.close()
    write_image(image_dir / "old.jpg")
    before = live_wordpress.media_count()
    result = rescan(image_dir, db, live_wordpress)
    assert result.returncode == 0, result.stderr
    row = rows(db)["old.jpg"]
    assert (row["status"], row["wp_url"]) == (Status.DONE, "https://wp.example/old.jpg")
    assert live_wordpress.media_count() == before


def test_wrong_password_exits_78_before_touching_files(
    live_wordpress: WordPress, db: URL, image_dir: Path
) -> None:
    write_image(image_dir / "a.jpg")
    result = rescan(image_dir, db, live_wordpress, IMGWATCH_WP_PASSWORD="wrong wrong wrong")
    assert result.returncode == 78
    assert "Application Password" in result.stderr
    assert "wrong wrong wrong" not in result.stderr
    assert "Traceback" not in result.stderr
    assert rows(db) == {}


def test_refused_type_fails_with_reason_and_others_continue(
    live_wordpress: WordPress, db: URL, image_dir: Path
) -> None:
    write_image(image_dir / "ok.jpg")
    write_image(image_dir / "refused.bmp")
    result = rescan(image_dir, db, live_wordpress, IMGWATCH_EXTENSIONS=".jpg,.bmp")
    assert result.returncode == 1
    got = rows(db)
    assert got["ok.jpg"]["status"] == Status.DONE
    refused = got["refused.bmp"]
    assert refused["status"] == Status.FAILED
    assert "rest_upload_sideload_error" in str(refused["last_error"])
    assert refused["next_attempt_at"] is None  # permanent: waits for the file to change
    assert "wordpress: 1 uploaded" in result.stdout and "1 failed" in result.stdout


def test_wordpress_down_then_back(live_wordpress: WordPress, db: URL, image_dir: Path) -> None:
    paths = [write_image(image_dir / f"w{i}.jpg") for i in range(6)]
    before = live_wordpress.media_count()
    live_wordpress.halt()
    try:
        down = rescan(image_dir, db, live_wordpress)
    finally:
        live_wordpress.serve()
    # The site's trouble, not the files': uploads stop with one line, exit 1, and
    # the rows stay due for the daemon or the next run, no attempt counted.
    assert down.returncode == 1
    assert down.stderr.count("uploads stopped: cannot connect to WordPress at") == 1
    assert "6 file(s) wait for the daemon or the next run" in down.stderr
    assert "0 uploaded, 0 linked to existing media, 0 failed, 6 waiting" in down.stdout
    got = rows(db)
    assert {r["status"] for r in got.values()} == {Status.PENDING}
    assert all(r["attempts"] == 0 for r in got.values())
    up = rescan(image_dir, db, live_wordpress)
    assert up.returncode == 0, up.stderr
    assert {r["status"] for r in rows(db).values()} == {Status.DONE}
    assert live_wordpress.media_count() == before + len(paths)


def test_wordpress_stopped_mid_run(live_wordpress: WordPress, db: URL, image_dir: Path) -> None:
    paths = [write_image(image_dir / f"m{i:02d}.jpg", 800, 600) for i in range(24)]
    before = live_wordpress.media_count()
    env = {**os.environ, **mysql_env(db), **wp_env(live_wordpress, IMGWATCH_WP_WORKERS="2")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgwatch", "--rescan", "--image-dir", str(image_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while live_wordpress.media_count() < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    live_wordpress.halt()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        live_wordpress.serve()
    assert proc.returncode == 1, err
    assert "uploads stopped: " in err
    statuses = {r["status"] for r in rows(db).values()}
    assert Status.FAILED not in statuses  # the site went away, no file is to blame
    assert Status.PENDING in statuses
    result = rescan(image_dir, db, live_wordpress)
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in rows(db).values()} == {Status.DONE}
    # Exactly once: one media item per file, none twice.
    assert live_wordpress.media_count() == before + len(paths)
    for path in paths:
        assert slug_count(live_wordpress, sha256_of(path)) == 1


CRASH_HARNESS = textwrap.dedent(
    """
    import os, signal, sys
    from imgwatch import cli
    from imgwatch.model import Status
    from imgwatch.db.store import ImageStore, ImageStore

    # The process dies the instant WordPress has the file and before the row says so.
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    ImageStore.record_upload = die
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def test_crash_between_upload_and_database_write(
    live_wordpress: WordPress, db: URL, image_dir: Path, tmp_path: Path
) -> None:
    path = write_image(image_dir / "crash.jpg")
    before = live_wordpress.media_count()
    harness = tmp_path / "harness.py"
    harness.write_text(CRASH_HARNESS)
    env = {**os.environ, **mysql_env(db), **wp_env(live_wordpress)}
    crashed = subprocess.run(
        [sys.executable, str(harness), "--rescan", "--image-dir", str(image_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL
    assert live_wordpress.media_count() == before + 1
    assert rows(db)["crash.jpg"]["status"] == "uploading"
    result = rescan(image_dir, db, live_wordpress)
    assert result.returncode == 0, result.stderr
    assert "1 linked to existing media" in result.stdout
    row = rows(db)["crash.jpg"]
    assert row["status"] == Status.DONE
    assert live_wordpress.media_count() == before + 1
    assert slug_count(live_wordpress, sha256_of(path)) == 1


# --- fast unit tests: retry rules and the exactly-once loop, with a fake client --------


class FakeClient:
    """Stands in for MediaClient; `script` says how each upload call goes, `site` what
    a probe finds."""

    def __init__(self, script: list[str], site: SiteCondition | None = None) -> None:
        self.script = script
        self.site = site
        self.calls: list[str] = []
        self.stored: dict[str, Media] = {}

    def find_by_slug(self, slug: str) -> Media | None:
        self.calls.append("find")
        return self.stored.get(slug)

    def probe(self) -> SiteCondition | None:
        self.calls.append("probe")
        return self.site

    def upload(self, body: IO[bytes], **kw: Any) -> tuple[Media, dict[str, str]]:
        self.calls.append("upload")
        step = self.script.pop(0)
        if step == "lands-then-times-out":
            self.stored[kw["slug"]] = Media(len(self.stored) + 1, "http://wp/x.jpg")
            raise TransientError("WordPress upload: timed out (ReadTimeout)")
        if step == "503":
            raise TransientError("WordPress upload: 503 (no message)", retry_after=0.01)
        if step == "refused":
            raise PermanentError("WordPress upload: 500 rest_upload_sideload_error: no")
        if step == "firewall":
            raise SiteCondition("firewall", "WordPress answers 403 with an HTML page")
        media = Media(len(self.stored) + 1, "http://wp/x.jpg")
        self.stored[kw["slug"]] = media
        return media, {}

    def delete(self, media_id: int) -> bool:
        self.calls.append("delete")
        step = self.script.pop(0)
        if step == "503":
            raise TransientError("WordPress delete: 503 (no message)")
        return True


def job_for(store: ImageStore, image_dir: Path) -> UploadJob:
    path = write_image(image_dir / "u.jpg")
    store.upsert(
        [
            ImageRecord(
                file_name="u.jpg",
                title="u.jpg",
                description="d",
                status=Status.PENDING,
                sha256=sha256_of(path),
                mime_type="image/jpeg",
            )
        ]
    )
    (job,) = store.due_uploads()
    return job


def make_uploader(client: FakeClient, store: ImageStore, image_dir: Path) -> Uploader:
    return Uploader(
        client,  # type: ignore[arg-type]
        store,
        image_dir,
        policy=RetryPolicy(attempts=3, base=0.001, cap=0.01),
    )


def test_upload_that_landed_before_a_timeout_is_found_not_repeated(
    store: ImageStore, image_dir: Path
) -> None:
    client = FakeClient(["lands-then-times-out"])
    outcome = make_uploader(client, store, image_dir).upload(job_for(store, image_dir))
    assert outcome == "reused"
    assert client.calls == ["find", "upload", "find"]
    assert (row_of(store, "u.jpg") or {})["status"] == Status.DONE


def test_transient_errors_are_retried_then_succeed(store: ImageStore, image_dir: Path) -> None:
    client = FakeClient(["503", "503", "ok"])
    outcome = make_uploader(client, store, image_dir).upload(job_for(store, image_dir))
    assert outcome == "done"
    assert client.calls == ["find", "upload"] * 3
    row = row_of(store, "u.jpg") or {}
    assert (row["status"], row["attempts"], row["last_error"]) == (Status.DONE, 0, None)


def test_transient_errors_of_one_file_on_a_healthy_site_schedule_its_retry(
    store: ImageStore, image_dir: Path
) -> None:
    # A 5xx each time, yet the site answers its probe: this file's trouble (PHP dying
    # on one huge image), retried on its own schedule without pausing the others.
    client = FakeClient(["503", "503", "503"])
    up = make_uploader(client, store, image_dir)
    assert up.upload(job_for(store, image_dir)) == "failed"
    assert client.calls[-1] == "probe"
    row = row_of(store, "u.jpg") or {}
    assert (row["status"], row["attempts"]) == (Status.FAILED, 1)
    assert "503" in str(row["last_error"])
    assert row["next_attempt_at"] > utcnow()
    assert up.pause.condition is None


def test_transient_errors_on_a_site_that_fails_its_probe_pause_and_fail_nothing(
    store: ImageStore, image_dir: Path
) -> None:
    down = SiteCondition("no_answer", "WordPress does not answer properly: 503")
    client = FakeClient(["503", "503", "503"], site=down)
    up = make_uploader(client, store, image_dir)
    job = job_for(store, image_dir)
    assert up.upload(job) == "waiting"
    row = row_of(store, "u.jpg") or {}
    assert (row["status"], row["attempts"], row["claimed_by"]) == (Status.PENDING, 0, None)
    assert up.pause.condition is down
    # While paused, nothing is tried, and the row stays due.
    calls = len(client.calls)
    assert up.upload(job) == "waiting"
    assert len(client.calls) == calls
    assert [j.file_name for j in store.due_uploads()] == ["u.jpg"]


def test_a_site_condition_pauses_at_once_and_gives_the_row_back(
    store: ImageStore, image_dir: Path
) -> None:
    client = FakeClient(["firewall", "ok"])
    up = make_uploader(client, store, image_dir)
    job = job_for(store, image_dir)
    assert up.upload(job) == "waiting"
    assert client.calls == ["find", "upload"]  # not retried: nothing about the file
    row = row_of(store, "u.jpg") or {}
    assert (row["status"], row["attempts"], row["last_error"]) == (Status.PENDING, 0, None)
    assert up.pause.condition is not None and up.pause.condition.kind == "firewall"
    up.pause.resume()
    assert up.upload(job) == "done"


def test_permanent_error_is_not_retried(store: ImageStore, image_dir: Path) -> None:
    client = FakeClient(["refused"])
    assert make_uploader(client, store, image_dir).upload(job_for(store, image_dir)) == "failed"
    assert client.calls == ["find", "upload"]
    row = row_of(store, "u.jpg") or {}
    assert row["next_attempt_at"] is None


def test_file_changed_after_recording_is_not_uploaded(store: ImageStore, image_dir: Path) -> None:
    client = FakeClient(["ok"])
    job = job_for(store, image_dir)
    write_image(image_dir / "u.jpg")  # new bytes, row still has the old hash
    assert make_uploader(client, store, image_dir).upload(job) == "skipped"
    assert "upload" not in client.calls


def test_shared_media_is_not_deleted_when_one_name_changes(
    live_wordpress: WordPress, db: URL, image_dir: Path
) -> None:
    first = write_image(image_dir / "one.jpg")
    (image_dir / "two.jpg").write_bytes(first.read_bytes())
    assert rescan(image_dir, db, live_wordpress).returncode == 0
    shared = rows(db)["one.jpg"]["wp_media_id"]
    write_image(first, 50, 50)
    os.utime(first, ns=(1, first.stat().st_mtime_ns + 10_000_000))
    result = rescan(image_dir, db, live_wordpress, IMGWATCH_WP_DELETE_REPLACED="true")
    assert result.returncode == 0, result.stderr
    got = rows(db)
    assert got["one.jpg"]["wp_media_id"] != shared
    assert got["two.jpg"]["wp_media_id"] == shared
    item, _ = live_wordpress.api(f"/wp/v2/media/{shared}", context="edit")
    assert item["id"] == shared  # still there: two.jpg uses it


def test_a_site_condition_stops_a_rescan_with_one_line(
    live_wordpress: WordPress, db: URL, image_dir: Path
) -> None:
    from tests.faultproxy import FaultProxy

    for i in range(5):
        write_image(image_dir / f"f{i}.jpg")
    proxy = FaultProxy(live_wordpress.url)
    proxy.mode = "html403"
    try:
        result = rescan(
            image_dir, db, live_wordpress, IMGWATCH_WP_API_URL=proxy.url + "/wp-json/wp/v2/media"
        )
    finally:
        proxy.close()
    assert result.returncode == 1
    line = "uploads stopped: WordPress answers 403 with an HTML page: a security plugin"
    assert result.stderr.count(line) == 1
    assert "5 waiting (uploads stopped: WordPress answers 403" in result.stdout
    assert {r["status"] for r in rows(db).values()} == {Status.PENDING}
    up = rescan(image_dir, db, live_wordpress)  # the site healthy: the next run does it
    assert up.returncode == 0 and "5 uploaded" in up.stdout


def test_a_condition_only_one_file_meets_fails_that_file_alone(
    store: ImageStore, image_dir: Path
) -> None:
    # A firewall rule that blocks this one upload: the site answers its probe, the
    # file meets the 403 page again and again.
    client = FakeClient(["firewall"] * 10)
    up = make_uploader(client, store, image_dir)
    job = job_for(store, image_dir)
    outcomes: list[str] = []
    while not outcomes or outcomes[-1] == "waiting":
        outcomes.append(up.upload(job))
        up.pause.resume()  # the probe passed
        (job,) = store.due_uploads() or (job,)
    assert outcomes == ["waiting"] * 3 + ["failed"]
    row = row_of(store, "u.jpg") or {}
    assert row["status"] == Status.FAILED and row["next_attempt_at"] is not None
    assert "to this file only" in row["last_error"]


def test_a_claim_taken_over_is_not_given_back(store: ImageStore, image_dir: Path) -> None:
    job = job_for(store, image_dir)
    assert store.mark_uploading(job, "host-a:1", lease=600)
    assert not store.release_upload(job, "host-b:2")  # not b's claim
    assert store.release_upload(job, "host-a:1")
    assert (row_of(store, "u.jpg") or {})["status"] == Status.PENDING
