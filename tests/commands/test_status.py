"""`imgwatch status`, and every command on older tables, as a person runs them: real processes."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.commands.helpers import image_columns, imgwatch, tables, three_files
from tests.db.records import make_original_table
from tests.imagefiles import write_image
from tests.runner import run


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
