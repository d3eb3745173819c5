"""The disk under the SQLite database fills up while files arrive, then frees up.

A clear error, the daemon stays up, nothing is lost once there is room again,
and the database passes SQLite's integrity check afterwards (WAL mode).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.daemonproc import DaemonProcess, wait_rows
from tests.imagefiles import write_image


def test_disk_full_under_sqlite(tmp_path: Path, image_dir: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small filesystem to fill needs root (mount -t tmpfs)")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    try:
        db = URL.create("sqlite", database=str(state / "imgwatch.db"))
        # The embedded default: no database setting, SQLite under $STATE_DIRECTORY.
        env = {"IMGWATCH_IMAGE_DIR": str(image_dir), "STATE_DIRECTORY": str(state)}
        with DaemonProcess(tmp_path / "run", env) as daemon:
            daemon.wait_started()
            write_image(image_dir / "before.jpg")
            wait_rows(db, lambda r: r.get("before.jpg", {}).get("status") == Status.DONE)
            filler = state / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:  # take every free block
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            names = {f"full/{i:03d}.jpg" for i in range(60)}
            for name in sorted(names):
                write_image(image_dir / name, 16, 16)
            daemon.wait_log(r"ERROR .*database or disk is full; retrying, nothing is lost")
            assert daemon.process.poll() is None
            filler.unlink()
            rows = wait_rows(
                db, lambda r: names <= {n for n, x in r.items() if x["status"] == Status.DONE}
            )
            assert daemon.stop() == 0
        assert len(rows) == len(names) + 1
        # closing(): a sqlite3 connection's own context manager does not close it,
        # and an open file keeps the filesystem from being unmounted.
        with closing(sqlite3.connect(state / "imgwatch.db")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert "Traceback" not in daemon.log()
    finally:
        if subprocess.run(["umount", str(state)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(state)], check=False)
