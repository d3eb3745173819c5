"""`imgwatch --rescan` (commands/rescan.py) run in-process: exit codes, summary line, rows."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.commands import rescan
from imgwatch.config import Settings, load_settings
from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import ConditionKind, ScanSummary, Status, utcnow
from imgwatch.pipeline import media_client, uploader
from imgwatch.wordpress.outcomes import Outcome, UploadTally
from tests.commands.helpers import three_files
from tests.daemonproc import wp_settings
from tests.imagefiles import write_image
from tests.rows import all_rows, row_of
from tests.servers import WordPress

NO_ARGS = argparse.Namespace()


def settings_for(image_dir: Path, db: URL, **more: str) -> Settings:
    url = db.render_as_string(hide_password=False)
    # One reading process: the few files here are read in this one anyway.
    return load_settings({"image_dir": image_dir, "db_url": url, "workers": "1", **more})


def statuses(db: URL) -> dict[str, str]:
    store = ImageStore(db)
    try:
        return {r["file_name"]: r["status"] for r in all_rows(store)}
    finally:
        store.close()


def last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.splitlines()[-1]


def test_a_rescan_records_the_tree_says_so_and_exits_0(
    image_dir: Path, db_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    three_files(image_dir)
    settings = settings_for(image_dir, db_url)
    assert rescan.run(settings, NO_ARGS) == 0  # a rejected file is not a failure
    line = last_line(capsys)
    assert line.startswith("rescan: 2 new, 0 changed, 0 unchanged, 1 rejected, 0 missing, 0 failed")
    assert "wordpress" not in line  # not configured: nothing said of it
    assert statuses(db_url) == {
        "a.jpg": Status.DONE,
        "sub/b.png": Status.DONE,
        "bad.gif": Status.REJECTED,
    }
    store = ImageStore(db_url)
    try:
        scan = store.last_scan()
        assert scan is not None
        assert (scan["reason"], scan["new"], scan["rejected"]) == ("rescan", 2, 1)
        (image_dir / "a.jpg").unlink()
        write_image(image_dir / "sub" / "b.png", 40, 30)
        assert rescan.run(settings, NO_ARGS) == 0
        assert last_line(capsys).startswith(
            "rescan: 0 new, 1 changed, 1 unchanged, 0 rejected, 1 missing, 0 failed"
        )
        row = row_of(store, "sub/b.png")
        assert row is not None and row["width"] == 40
        assert statuses(db_url)["a.jpg"] == Status.MISSING
    finally:
        store.close()


def test_held_deletions_exit_with_files_failed(
    image_dir: Path, db_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(image_dir / name)
    settings = settings_for(image_dir, db_url, delete_guard_min="2")
    assert rescan.run(settings, NO_ARGS) == 0
    capsys.readouterr()
    (image_dir / "a.jpg").unlink()
    (image_dir / "b.jpg").unlink()
    assert rescan.run(settings, NO_ARGS) == rescan.EXIT_FILES_FAILED
    line = last_line(capsys)
    assert line.startswith("rescan: 0 new, 0 changed, 1 unchanged, 0 rejected, 0 missing")
    assert line.endswith("; 2 deletion(s) held")
    assert set(statuses(db_url).values()) == {Status.DONE}  # nothing marked while held
    store = ImageStore(db_url)
    try:
        (held,) = [c for c in store.conditions() if c.kind == ConditionKind.DELETIONS_HELD]
        assert held.rows == 2
    finally:
        store.close()


def test_a_site_that_does_not_answer_stops_the_uploads_and_exits_with_files_failed(
    image_dir: Path, db_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "b.jpg")
    settings = settings_for(
        image_dir,
        db_url,
        wp_api_url="http://127.0.0.1:1/wp-json/wp/v2/media",
        wp_user="u",
        wp_password="pw",
        wp_connect_timeout="2",
    )
    assert rescan.run(settings, NO_ARGS) == rescan.EXIT_FILES_FAILED
    line = last_line(capsys)
    assert line.startswith("rescan: 2 new, 0 changed")
    assert "; wordpress: 0 uploaded, 0 linked to existing media, 0 failed, 2 waiting " in line
    assert "(uploads stopped: cannot connect to WordPress at 127.0.0.1:1" in line
    # The site's trouble, not the files': they wait, none failed, none tried.
    store = ImageStore(db_url)
    try:
        assert {r["status"] for r in all_rows(store)} == {Status.PENDING}
        assert {r["attempts"] for r in all_rows(store)} == {0}
    finally:
        store.close()


def test_files_go_to_wordpress_once_and_a_refused_one_exits_with_files_failed(
    image_dir: Path,
    db_url: URL,
    live_wordpress: WordPress,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_image(image_dir / "ok.jpg")
    write_image(image_dir / "refused.bmp")  # a type WordPress does not take
    settings = settings_for(
        image_dir, db_url, extensions=".jpg,.bmp", **wp_settings(live_wordpress)
    )
    before = live_wordpress.media_count()
    assert rescan.run(settings, NO_ARGS) == rescan.EXIT_FILES_FAILED
    line = last_line(capsys)
    assert line.startswith("rescan: 2 new, 0 changed, 0 unchanged, 0 rejected, 0 missing, 0 failed")
    assert line.endswith("; wordpress: 1 uploaded, 0 linked to existing media, 1 failed")
    assert live_wordpress.media_count() == before + 1
    store = ImageStore(db_url)
    try:
        ok = row_of(store, "ok.jpg")
        assert ok is not None and ok["status"] == Status.DONE and ok["wp_media_id"]
        refused = row_of(store, "refused.bmp")
        assert refused is not None and refused["status"] == Status.FAILED
        assert refused["last_error"]
    finally:
        store.close()
    write_image(image_dir / "new.jpg")
    rescan.run(settings, NO_ARGS)
    assert "; wordpress: 1 uploaded, 0 linked to existing media" in last_line(capsys)
    assert live_wordpress.media_count() == before + 2  # ok.jpg did not go up again


def test_purged_files_lose_their_media_item_after_the_uploads(
    image_dir: Path,
    db_url: URL,
    live_wordpress: WordPress,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(image_dir / name)
    settings = settings_for(image_dir, db_url, on_delete="purge", **wp_settings(live_wordpress))
    assert rescan.run(settings, NO_ARGS) == 0
    uploaded = live_wordpress.media_count()
    (image_dir / "a.jpg").unlink()
    capsys.readouterr()
    assert rescan.run(settings, NO_ARGS) == 0
    assert ", 1 missing, " in last_line(capsys)
    assert live_wordpress.media_count() == uploaded - 1
    assert set(statuses(db_url)) == {"b.jpg", "c.jpg"}


def test_to_wordpress_retries_a_failed_upload_whatever_its_schedule(
    image_dir: Path, db_url: URL, live_wordpress: WordPress
) -> None:
    write_image(image_dir / "a.jpg")
    plain = settings_for(image_dir, db_url)
    assert rescan.run(plain, NO_ARGS) == 0  # recorded without WordPress
    settings = settings_for(image_dir, db_url, **wp_settings(live_wordpress))
    store = ImageStore(db_url)
    client = media_client(settings)
    assert client is not None
    try:
        store.open()
        with store.engine.begin() as conn:  # failed, and not due for an hour
            conn.execute(
                images.update().values(
                    status=Status.FAILED,
                    attempts=3,
                    last_error="WordPress answered 503",
                    next_attempt_at=utcnow() + dt.timedelta(hours=1),
                )
            )
        assert store.due_uploads() == []  # the daemon would wait
        tally = rescan.to_wordpress(uploader(settings, client, store), store, [])
        assert (tally[Outcome.DONE], tally[Outcome.FAILED]) == (1, 0)
        row = row_of(store, "a.jpg")
        assert row is not None and (row["status"], row["last_error"]) == (Status.DONE, None)
        assert row["wp_url"]
    finally:
        client.close()
        store.close()


def test_the_summary_line_and_exit_follow_the_counts() -> None:
    assert not rescan.RescanResult(ScanSummary(new=2, rejected=1), None).incomplete
    failed = rescan.RescanResult(ScanSummary(failed=1), None)
    assert failed.incomplete and failed.failed == 1
    tally = UploadTally()
    tally.add(Outcome.DONE, 3)
    tally.add(Outcome.FAILED, 2)
    tally.add(Outcome.UPDATED)
    tally.add(Outcome.GONE)
    result = rescan.RescanResult(ScanSummary(new=3, failed=1), tally)
    assert result.failed == 3 and result.incomplete
    assert result.line().endswith(
        "; wordpress: 3 uploaded, 0 linked to existing media, 2 failed, "
        "1 updated in place (1 deleted in WordPress)"
    )
    tally.add(Outcome.WAITING, 4)
    stopped = rescan.RescanResult(ScanSummary(), tally, stopped_by="the firewall says no")
    assert stopped.incomplete
    assert stopped.line().endswith(", 4 waiting (uploads stopped: the firewall says no)")
