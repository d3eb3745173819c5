"""`imgwatch --rescan --dry-run` as a person runs it: real processes; nothing is changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from tests.commands.helpers import imgwatch, tables, three_files
from tests.imagefiles import write_image
from tests.rows import all_rows


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
