"""`imgwatch --rescan` as a person runs it: a real process, real files, real databases."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from imgwatch import cli
from imgwatch.db.store import ImageStore
from imgwatch.files import inspect as imaging
from imgwatch.model import Status
from tests.db.records import make_original_table
from tests.imagefiles import write_image
from tests.rows import file_states, row_of
from tests.runner import mysql_env, run
from tests.servers import HOSTILE_PASSWORD, MariaDB, free_port


def test_rescan_on_default_sqlite(tmp_path: Path, image_dir: Path) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "sub" / "b.png")
    (image_dir / "bad.gif").write_text("hello")
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rescan: 2 new, 0 changed, 0 unchanged, 1 rejected")
    assert "Traceback" not in result.stderr
    assert "rejected 'bad.gif': not an image: content looks like text" in result.stderr
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "imgwatch.db")))
    assert sorted(file_states(store)) == ["a.jpg", "bad.gif", "sub/b.png"]
    store.close()
    again = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path)
    assert again.stdout.startswith("rescan: 0 new, 0 changed, 3 unchanged")


def test_missing_image_dir_exits_78_without_creating_a_database(tmp_path: Path) -> None:
    result = run("--rescan", "--image-dir", str(tmp_path / "nope"), cwd=tmp_path)
    assert result.returncode == 78
    assert "image directory" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "imgwatch.db").exists()


def test_image_dir_that_is_a_file_exits_78(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = run("--rescan", "--image-dir", str(tmp_path / "file"), cwd=tmp_path)
    assert result.returncode == 78
    assert "is not a directory" in result.stderr


def test_invalid_settings_exit_78_with_one_line(tmp_path: Path) -> None:
    result = run("--rescan", cwd=tmp_path, env={"IMGWATCH_BATCH_SIZE": "lots"})
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "IMGWATCH_IMAGE_DIR is required" in lines[0]
    assert "IMGWATCH_BATCH_SIZE" in lines[0]


def test_help_lists_every_setting_and_takes_passwords_only_from_files() -> None:
    result = run("--help")
    assert result.returncode == 0
    for flag in ["--image-dir", "--db-url", "--db-host", "--db-port", "--db-user", "--db-name"]:
        assert flag in result.stdout
    for flag in ["--wp-api-url", "--wp-user", "--extensions", "--default-description"]:
        assert flag in result.stdout
    assert "--db-password-file" in result.stdout and "--wp-password-file" in result.stdout
    assert "--db-password " not in result.stdout


def test_env_file_flag(tmp_path: Path, image_dir: Path) -> None:
    write_image(image_dir / "a.jpg")
    env = tmp_path / "site.env"
    env.write_text(
        f"IMGWATCH_IMAGE_DIR={image_dir}\nIMGWATCH_DB_URL=sqlite:///{tmp_path}/other.db\n"
    )
    result = run("--rescan", "--env-file", str(env), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "other.db").exists()


def test_rescan_on_mariadb_with_hostile_password(
    mariadb: MariaDB, tmp_path: Path, image_dir: Path
) -> None:
    url = mariadb.create_database(HOSTILE_PASSWORD)
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "caf\u00e9 \U0001f600.png")
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path, env=mysql_env(url))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rescan: 2 new")
    assert HOSTILE_PASSWORD not in result.stderr + result.stdout
    store = ImageStore(url)
    assert sorted(file_states(store)) == ["a.jpg", "caf\u00e9 \U0001f600.png"]
    store.close()


def test_password_file_flag(mariadb: MariaDB, tmp_path: Path, image_dir: Path) -> None:
    url = mariadb.create_database("from-a-file")
    secret = tmp_path / "db.pw"
    secret.write_text("from-a-file\n")
    env = mysql_env(url)
    del env["IMGWATCH_DB_PASSWORD"]
    result = run(
        "--rescan", "--image-dir", str(image_dir), "--db-password-file", str(secret), env=env
    )
    assert result.returncode == 0, result.stderr


def test_adopts_the_original_services_table(
    mariadb: MariaDB, tmp_path: Path, image_dir: Path
) -> None:
    url = mariadb.create_database()
    make_original_table(url)
    write_image(image_dir / "a.jpg")  # b.png is gone from disk
    write_image(image_dir / "new.gif")
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path, env=mysql_env(url))
    assert result.returncode == 0, result.stderr
    assert "1 new, 1 changed" in result.stdout and "1 missing" in result.stdout
    store = ImageStore(url)
    a, b = row_of(store, "a.jpg"), row_of(store, "b.png")
    assert a is not None and b is not None
    assert (a["title"], a["description"], a["wp_url"], a["status"]) == (
        "Sunset",
        "Edited",
        "https://x/a.jpg",
        Status.DONE,
    )
    assert (b["status"], b["title"]) == (Status.MISSING, "b.png")
    store.close()


def test_unreachable_database_exits_75_and_hides_the_password(
    tmp_path: Path, image_dir: Path
) -> None:
    env = {
        "IMGWATCH_DB_HOST": "127.0.0.1",
        "IMGWATCH_DB_PORT": str(free_port()),
        "IMGWATCH_DB_USER": "u",
        "IMGWATCH_DB_PASSWORD": "hunter2-secret",
        "IMGWATCH_DB_NAME": "d",
    }
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path, env=env)
    assert result.returncode == 75
    assert "unreachable" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_wrong_database_password_exits_78(
    mariadb: MariaDB, tmp_path: Path, image_dir: Path
) -> None:
    env = mysql_env(mariadb.create_database())
    env["IMGWATCH_DB_PASSWORD"] = "not-the-password"
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path, env=env)
    assert result.returncode == 78
    assert "Access denied" in result.stderr
    assert "not-the-password" not in result.stderr


def test_failed_file_makes_rescan_exit_1(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_image(image_dir / "good.jpg")
    write_image(image_dir / "flaky.jpg")
    real = imaging.inspect_image

    # A disk I/O error cannot be made on demand; it is raised where the read happens.
    def inspect(path: str, max_bytes: int | None = None) -> Any:
        if path.endswith("flaky.jpg"):
            raise OSError(errno.EIO, "Input/output error")
        return real(path, max_bytes)

    monkeypatch.setattr("imgwatch.files.record.inspect_image", inspect)
    assert cli.main(["--rescan", "--image-dir", str(image_dir)]) == 1
    out = capsys.readouterr().out
    assert "1 new" in out and "1 failed" in out
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "imgwatch.db")))
    row = row_of(store, "flaky.jpg")
    assert row is not None
    assert (row["status"], row["last_error"]) == (Status.FAILED, "read error: Input/output error")
    assert row["next_attempt_at"] is not None
    store.close()


def test_unknown_flag_is_a_usage_error_64() -> None:
    result = run("--no-such-flag")
    assert result.returncode == 64  # EX_USAGE: the unit does not restart on it
    assert "unrecognized arguments: --no-such-flag" in result.stderr


def test_a_large_rescan_reads_in_several_processes(tmp_path: Path, image_dir: Path) -> None:
    names = {f"d{i % 4}/{i:03d}.png" for i in range(200)}
    for name in names:
        write_image(image_dir / name, 6, 6)
    (image_dir / "d0" / "bad.png").write_text("<html>")
    env = {"IMGWATCH_WORKERS": "2"}
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rescan: 200 new, 0 changed, 0 unchanged, 1 rejected")
    if (os.cpu_count() or 1) >= 2:
        assert "reading files in 2 processes" in result.stderr
    for name in names:  # each logged once, by whichever process read it
        assert result.stderr.count(f"recorded {name!r}") == 1, name
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "imgwatch.db")))
    assert store.counts_by_status() == {Status.DONE: 200, "rejected": 1}
    store.close()
