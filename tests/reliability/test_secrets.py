"""Passwords stay out of everything imgwatch prints.

Every daemon run in the suite is already checked (tests/daemonproc.py: its log,
its STATUS= lines, its command line, the rows it leaves). Here: the paths that
run no daemon, and the warning about an env file others can read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.config import load_settings
from tests.daemonproc import assert_no_secrets
from tests.runner import mysql_env, run
from tests.servers import HOSTILE_PASSWORD, MariaDB


def test_env_file_readable_by_everyone_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / "imgwatch.env"
    env.write_text(
        "IMGWATCH_IMAGE_DIR=/srv\nIMGWATCH_DB_HOST=db\nIMGWATCH_DB_USER=u\nIMGWATCH_DB_NAME=n\n"
        f"IMGWATCH_DB_PASSWORD='{HOSTILE_PASSWORD.replace(chr(39), '')}'\n"
    )
    env.chmod(0o644)
    load_settings({}, env)
    assert "holds a password and is readable by every user (mode 644)" in caplog.text
    assert_no_secrets(caplog.text, "the warning")
    caplog.clear()
    env.chmod(0o600)
    load_settings({}, env)
    assert "readable by every user" not in caplog.text


def test_env_file_without_passwords_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / "imgwatch.env"
    env.write_text("IMGWATCH_IMAGE_DIR=/srv\nIMGWATCH_DB_PASSWORD=\n")
    env.chmod(0o644)
    load_settings({}, env)
    assert "readable by every user" not in caplog.text


def test_no_password_in_rescan_output_help_or_errors(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB
) -> None:
    db: URL = mariadb.create_database()
    outputs = [run("--help")]
    outputs.append(run("--rescan", env={"IMGWATCH_IMAGE_DIR": str(image_dir), **mysql_env(db)}))
    # Refused: a wrong database name, and an unreachable server.
    wrong = {**mysql_env(db), "IMGWATCH_DB_NAME": "nope"}
    outputs.append(run("--rescan", env={"IMGWATCH_IMAGE_DIR": str(image_dir), **wrong}))
    down = {**mysql_env(db), "IMGWATCH_DB_PORT": "1"}
    outputs.append(run("--rescan", env={"IMGWATCH_IMAGE_DIR": str(image_dir), **down}))
    # A DB_URL given on the command line (warned about) still never echoes it.
    url = db.render_as_string(hide_password=False)
    outputs.append(run("--rescan", "--db-url", url, "--image-dir", str(image_dir)))
    assert [o.returncode for o in outputs] == [0, 0, 78, 75, 0]
    for o in outputs:
        assert_no_secrets(o.stdout + o.stderr, "imgwatch's output")
    assert "--db-url carries a password" in outputs[-1].stderr
    assert os.environ.get("IMGWATCH_DB_PASSWORD") is None
