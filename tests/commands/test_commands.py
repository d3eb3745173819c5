"""`imgwatch status`, `retry`, `check` and `--rescan --dry-run`, run as a person runs
them: real processes, on SQLite and on the real MariaDB (and WordPress for check)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from imgwatch.commands import check as checkup
from imgwatch.config import load_settings
from imgwatch.db.store import ImageStore
from imgwatch.model import Status, utcnow
from tests.daemon.test_app import daemon_env, start
from tests.daemonproc import wait_rows
from tests.db.test_store import make_original_table
from tests.imagefiles import write_image
from tests.rows import all_rows, row_of
from tests.runner import run
from tests.servers import MariaDB, WordPress
from tests.wordpress.test_uploader import wp_env


def imgwatch(*args: str, image_dir: Path, db: URL, **env: str) -> Any:
    result = run(*args, env={**daemon_env(image_dir, db), **env}, cwd=image_dir.parent)
    secret = db.password
    if secret:
        assert str(secret) not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def three_files(image_dir: Path) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "sub" / "b.png")
    (image_dir / "bad.gif").write_text("hello")


def tables(db: URL) -> set[str]:
    engine = create_engine(db)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def image_columns(db: URL) -> set[str]:
    engine = create_engine(db)
    try:
        return {c["name"] for c in inspect(engine).get_columns("images")}
    finally:
        engine.dispose()


# --- status ----------------------------------------------------------------------------


def test_status_counts_problems_and_the_last_scan(image_dir: Path, db_url: URL) -> None:
    three_files(image_dir)
    assert imgwatch("--rescan", image_dir=image_dir, db=db_url).returncode == 0
    result = imgwatch("status", image_dir=image_dir, db=db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("database: ")
    assert lines[1] == "rows: 3 (2 done, 1 rejected)"
    assert lines[2].startswith("last scan: ") and "(rescan on " in lines[2]
    assert ": 2 new, 0 changed, 0 unchanged, 1 rejected, 0 missing, 0 failed" in lines[2]
    assert lines[3] == "recent failures and rejections, newest first:"
    assert "bad.gif" in lines[4] and "not an image: content looks like text" in lines[4]

    report = json.loads(imgwatch("status", "--json", image_dir=image_dir, db=db_url).stdout)
    assert report["total"] == 3
    assert report["counts"][Status.DONE] == 2 and report["counts"][Status.REJECTED] == 1
    assert report["counts"][Status.FAILED] == 0  # every status is there, zeros too
    assert report["last_scan"]["reason"] == "rescan"
    assert (report["last_scan"]["new"], report["last_scan"]["rejected"]) == (2, 1)
    assert report["last_scan"]["started_at"].endswith("Z")
    (problem,) = report["problems"]
    assert problem["file_name"] == "bad.gif" and problem["status"] == Status.REJECTED
    assert problem["last_error"] == "not an image: content looks like text"


def test_status_of_an_empty_database_creates_nothing(image_dir: Path, db_url: URL) -> None:
    result = imgwatch("status", image_dir=image_dir, db=db_url)
    assert result.returncode == 0, result.stderr
    assert "rows: 0\nlast scan: none recorded" in result.stdout
    assert tables(db_url) == set()


def test_status_retry_and_dry_run_on_the_original_services_table(
    image_dir: Path, db_url: URL
) -> None:
    make_original_table(db_url)  # a.jpg (with a URL) and b.png, as the old service left them
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "c.jpg")
    result = imgwatch("status", image_dir=image_dir, db=db_url)
    assert result.returncode == 0, result.stderr
    assert "rows: 2\n" in result.stdout
    assert "the images table is the original service's" in result.stdout
    report = json.loads(imgwatch("status", "--json", image_dir=image_dir, db=db_url).stdout)
    assert (report["adopted"], report["total"]) == (False, 2)
    retried = imgwatch("retry", "--rejected", image_dir=image_dir, db=db_url)
    assert retried.returncode == 0
    assert "has not adopted the images table yet" in retried.stdout
    plan = imgwatch("--rescan", "--dry-run", image_dir=image_dir, db=db_url).stdout
    assert "would add columns sha256, size_bytes" in plan and "to table images" in plan
    assert "would record new: c.jpg" in plan and "would mark missing: b.png" in plan
    assert plan.splitlines()[-1].startswith("dry run: 1 new, 1 changed, 0 unchanged")
    check = imgwatch("check", image_dir=image_dir, db=db_url).stdout
    assert (
        "the daemon would create table imgwatch_scans; create table imgwatch_conditions; "
        "add columns sha256"
    ) in check
    assert "would read 1 new and 1 changed file(s), leave 0 unchanged, mark 1 row(s)" in check
    # Nothing was adopted by looking.
    assert image_columns(db_url) == {"id", "file_name", "title", "description", "wp_url"}


def test_commands_on_an_older_imgwatch_table_read_around_new_columns(
    image_dir: Path, db_url: URL
) -> None:
    three_files(image_dir)
    imgwatch("--rescan", image_dir=image_dir, db=db_url)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:  # as the version before metadata left it
            for column in ("caption", "alt_text", "sidecar_mtime_ns"):
                conn.exec_driver_sql(f"ALTER TABLE images DROP COLUMN {column}")
    finally:
        engine.dispose()
    status = imgwatch("status", image_dir=image_dir, db=db_url).stdout
    assert "rows: 3 (2 done, 1 rejected)" in status and "original service" not in status
    plan = imgwatch("--rescan", "--dry-run", image_dir=image_dir, db=db_url).stdout
    assert "would add columns caption, alt_text, sidecar_mtime_ns to table images" in plan
    assert plan.splitlines()[-1].startswith("dry run: 0 new, 0 changed, 3 unchanged")
    check = imgwatch("check", image_dir=image_dir, db=db_url).stdout
    assert "would read 0 new and 0 changed file(s), leave 3 unchanged" in check
    retried = imgwatch("retry", "--rejected", image_dir=image_dir, db=db_url).stdout
    assert "1 file(s) to be read again" in retried
    assert "caption" not in image_columns(db_url)  # looking adopted nothing


def test_status_when_the_database_is_down_exits_75(image_dir: Path, tmp_path: Path) -> None:
    env = {"IMGWATCH_DB_URL": "mysql+pymysql://u:secret-pw@127.0.0.1:1/x"}
    result = run("status", "--image-dir", str(image_dir), env=env, cwd=tmp_path)
    assert result.returncode == 75
    assert "unreachable" in result.stderr and "secret-pw" not in result.stderr


# --- retry -----------------------------------------------------------------------------


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


# --- --rescan --dry-run ----------------------------------------------------------------


def test_dry_run_says_what_would_happen_and_changes_nothing(image_dir: Path, db_url: URL) -> None:
    write_image(image_dir / "same.jpg")
    write_image(image_dir / "edited.jpg")
    write_image(image_dir / "gone.jpg")
    imgwatch("--rescan", image_dir=image_dir, db=db_url)
    write_image(image_dir / "edited.jpg", 40, 30)
    (image_dir / "gone.jpg").unlink()
    write_image(image_dir / "new.png")
    (image_dir / "bad.gif").write_text("hello")
    store = ImageStore(db_url)
    try:
        before = all_rows(store)
        env = {
            "IMGWATCH_WP_API_URL": "http://127.0.0.1:9/wp-json/wp/v2/media",
            "IMGWATCH_WP_USER": "u",
            "IMGWATCH_WP_PASSWORD": "wp-secret",
        }
        result = imgwatch("--rescan", "--dry-run", image_dir=image_dir, db=db_url, **env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "dry run: nothing was changed"
        assert "would record new: new.png" in lines
        assert "would record changed: edited.jpg" in lines
        assert "would reject: bad.gif: not an image: content looks like text" in lines
        assert "would mark missing: gone.jpg" in lines
        # Recorded before without WordPress, so everything on disk would go up.
        uploads = {line.removeprefix("would upload: ") for line in lines if "upload:" in line}
        assert uploads == {"new.png", "edited.jpg", "same.jpg"}
        assert lines[-1] == (
            "dry run: 1 new, 1 changed, 1 unchanged, 1 rejected, 1 missing, 3 to upload"
        )
        assert "wp-secret" not in result.stdout + result.stderr
        assert all_rows(store) == before
        status = json.loads(imgwatch("status", "--json", image_dir=image_dir, db=db_url).stdout)
        assert status["last_scan"]["new"] == 3  # the real rescan, not the dry run
    finally:
        store.close()


def test_dry_run_on_a_new_database_creates_no_table(image_dir: Path, db_url: URL) -> None:
    three_files(image_dir)
    result = imgwatch("--rescan", "--dry-run", image_dir=image_dir, db=db_url)
    assert result.returncode == 0, result.stderr
    assert "would create table images" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("dry run: 2 new, 0 changed")
    assert "WordPress not configured" in result.stdout
    assert tables(db_url) == set()


def test_dry_run_needs_rescan(image_dir: Path, db_url: URL) -> None:
    result = imgwatch("--dry-run", image_dir=image_dir, db=db_url)
    assert result.returncode == 64
    assert "--dry-run goes with --rescan" in result.stderr


# --- check -----------------------------------------------------------------------------


def test_check_passes_and_says_what_would_happen(image_dir: Path, db_url: URL) -> None:
    three_files(image_dir)
    (image_dir / "one" / "two").mkdir(parents=True)
    result = imgwatch("check", image_dir=image_dir, db=db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ok: settings: valid" in out
    assert f"ok: image directory: {image_dir.resolve()} is a readable directory" in out
    assert "the daemon would create table images; create table imgwatch_scans" in out
    if db_url.password:
        assert "***" in out  # the password is masked
    assert "ok: WordPress: not configured" in out
    assert "ok: watch: inotify on 4 directory(ies)" in out  # root, sub, one, one/two
    assert "would read 3 new and 0 changed file(s), leave 0 unchanged, mark 0 row(s)" in out
    assert out.endswith("check: ok\n")
    assert tables(db_url) == set()  # checking changed nothing


def test_check_with_wordpress(image_dir: Path, db_url: URL, live_wordpress: WordPress) -> None:
    result = imgwatch("check", image_dir=image_dir, db=db_url, **wp_env(live_wordpress))
    assert result.returncode == 0, result.stdout
    assert "accepts uploads from user 'uploader'" in result.stdout
    bad = wp_env(live_wordpress, IMGWATCH_WP_PASSWORD="wrong pass word")
    refused = imgwatch("check", image_dir=image_dir, db=db_url, **bad)
    assert refused.returncode == 78
    assert "problem: WordPress at" in refused.stdout and "refused user 'uploader'" in refused.stdout
    assert "wrong pass word" not in refused.stdout + refused.stderr
    assert refused.stdout.endswith("check: failed\n")


def test_a_moved_site_is_named_by_check_and_stops_the_daemon_at_start(
    image_dir: Path, tmp_path: Path, live_wordpress: WordPress
) -> None:
    from tests.faultproxy import FaultProxy

    db = URL.create("sqlite", database=str(tmp_path / "moved.db"))
    proxy = FaultProxy(live_wordpress.url)
    proxy.mode, proxy.redirect_to = "redirect301", live_wordpress.url
    try:
        env = wp_env(live_wordpress, IMGWATCH_WP_API_URL=proxy.url + "/wp-json/wp/v2/media")
        said = (
            f"WordPress at {proxy.url}/wp-json/wp/v2/media redirects to "
            f"{live_wordpress.url}/wp-json/wp/v2/media; set IMGWATCH_WP_API_URL to it"
        )
        checked = imgwatch("check", image_dir=image_dir, db=db, **env)
        assert checked.returncode == 78 and f"problem: {said}\n" in checked.stdout
        daemon = imgwatch(image_dir=image_dir, db=db, **env)  # the daemon, at start
        assert daemon.returncode == 78 and said in daemon.stderr
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"IMGWATCH_DB_URL": "mysql+pymysql://u:pw-secret@127.0.0.1:1/x"}, "is unreachable"),
        ({"IMGWATCH_IMAGE_DIR": "/no/such/dir"}, "does not exist"),
        (
            {
                "IMGWATCH_WP_API_URL": "http://127.0.0.1:1/wp-json/wp/v2/media",
                "IMGWATCH_WP_USER": "u",
                "IMGWATCH_WP_PASSWORD": "pw-secret",
                "IMGWATCH_WP_CONNECT_TIMEOUT": "2",
            },
            "cannot connect to WordPress at 127.0.0.1:1",
        ),
    ],
)
def test_check_stops_at_the_first_problem_with_78(
    image_dir: Path, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = run("check", env={"IMGWATCH_IMAGE_DIR": str(image_dir), **env}, cwd=tmp_path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert "problem: " in result.stdout and expected in result.stdout
    assert "pw-secret" not in result.stdout + result.stderr
    assert result.stdout.endswith("check: failed\n")


def test_check_compares_the_tree_with_the_inotify_limit(
    image_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(5):
        (image_dir / f"d{i}").mkdir()
    monkeypatch.setattr(checkup, "read_limit", lambda name: 4)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    settings = load_settings({"image_dir": image_dir, "db_url": url, "watch_mode": "inotify"})
    assert checkup.run(settings) == 78
    out = capsys.readouterr().out
    assert "the tree has 6 directories but fs.inotify.max_user_watches is 4" in out
    assert "sysctl fs.inotify.max_user_watches=12" in out
    assert (
        not os.path.exists(tmp_path / "x.db")
        or tables(URL.create("sqlite", database=str(tmp_path / "x.db"))) == set()
    )


@pytest.mark.parametrize("on_delete", ["missing", "forget", "purge"])
def test_dry_run_and_check_say_what_the_deletion_guard_would_do(
    image_dir: Path, tmp_path: Path, on_delete: str
) -> None:
    db_url = URL.create("sqlite", database=str(tmp_path / "guard.db"))  # the verbs vary, not SQL
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(image_dir / name)
    imgwatch("--rescan", image_dir=image_dir, db=db_url)
    (image_dir / "a.jpg").unlink()
    env = {"IMGWATCH_ON_DELETE": on_delete, "IMGWATCH_DELETE_GUARD_MIN": "2"}
    plan = imgwatch("--rescan", "--dry-run", image_dir=image_dir, db=db_url, **env).stdout
    verb = {"missing": "mark missing", "forget": "forget", "purge": "forget"}[on_delete]
    assert f"would {verb}: a.jpg" in plan  # 1 of 3: fewer than the guard's 2
    check = imgwatch("check", image_dir=image_dir, db=db_url, **env).stdout
    # Without WordPress there is no media item to purge: a purge is a forget.
    planned = "mark 1 row(s) missing" if on_delete == "missing" else "forget 1 row(s)"
    assert "leave 2 unchanged, " + planned in check
    (image_dir / "b.jpg").unlink()  # 2 of 3 at once: held
    plan = imgwatch("--rescan", "--dry-run", image_dir=image_dir, db=db_url, **env).stdout
    assert "would hold the deletions: 2 of 3 row(s) would be" in plan
    assert plan.splitlines()[-1].endswith(", 2 deletion(s) held")
    assert "would mark missing" not in plan and "would forget" not in plan
    check = imgwatch("check", image_dir=image_dir, db=db_url, **env).stdout
    assert "hold the deletion of 2 row(s) (the mass-deletion guard)" in check
    # Nothing held for real by looking; the real rescan holds, and exits 1.
    status = json.loads(imgwatch("status", "--json", image_dir=image_dir, db=db_url).stdout)
    assert status["deletions_held"] is None
    real = imgwatch("--rescan", image_dir=image_dir, db=db_url, **env)
    assert real.returncode == 1 and "; 2 deletion(s) held" in real.stdout
    status = json.loads(imgwatch("status", "--json", image_dir=image_dir, db=db_url).stdout)
    assert status["deletions_held"]["rows"] == 2
    confirmed = imgwatch("retry", "--confirm-deletes", image_dir=image_dir, db=db_url)
    assert "2 held deletion(s) confirmed" in confirmed.stdout
    applied = imgwatch("--rescan", image_dir=image_dir, db=db_url, **env)
    assert applied.returncode == 0 and "2 missing" in applied.stdout
    again = imgwatch("retry", "--confirm-deletes", image_dir=image_dir, db=db_url)
    assert again.stdout == "retry: no deletions are held\n"
