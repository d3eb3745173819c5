"""The image directory itself goes away: removed and recreated, or unmounted.

The daemon says so, keeps running (and keeps telling systemd it is fine, since
a restart would only exit 78), marks nothing missing for an unmounted share, and
picks up where it left off when the directory is back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.daemonproc import DaemonProcess, db_env, start, wait_for, wait_rows
from tests.imagefiles import write_image


def done(names: set[str]) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda r: names <= {n for n, x in r.items() if x["status"] == Status.DONE}


def test_image_directory_removed_and_recreated(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    env = {
        "IMGWATCH_IMAGE_DIR": str(image_dir),
        "WATCHDOG_USEC": "1000000",
        **db_env(db_url),
    }
    with DaemonProcess(tmp_path / "run", env) as daemon:
        daemon.wait_started()
        write_image(image_dir / "first.jpg")
        wait_rows(db_url, done({"first.jpg"}))
        shutil.rmtree(image_dir)
        daemon.wait_log(r"cannot watch .*: No such file or directory; trying again")
        pings = daemon.all_messages().count("WATCHDOG=1")
        wait_for(
            lambda: daemon.all_messages().count("WATCHDOG=1") >= pings + 2,
            10,
            "watchdog pings while waiting for the directory",
        )
        wait_for(
            lambda: any("STATUS=NOT watching, waiting for" in m for m in daemon.all_messages()),
            10,
            "a STATUS= line saying it is not watching",
        )
        image_dir.mkdir()
        write_image(image_dir / "second.jpg")
        rows = wait_rows(db_url, done({"second.jpg"}), timeout=30)
        daemon.wait_log(r"watching .* again")
        assert daemon.stop() == 0
    assert rows["first.jpg"]["status"] == Status.MISSING  # really deleted with the directory
    log = daemon.log()
    assert log.count("trying again every") == 1  # said once, not every five seconds
    assert "Traceback" not in log


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def test_unmounted_share_marks_nothing_missing_and_recovers(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root")
    share = tmp_path / "share"
    names = {f"photo{i}.jpg" for i in range(3)}
    for name in names:
        write_image(share / name)
    mount("--bind", str(share), str(image_dir))
    try:
        with start(tmp_path, image_dir, db_url, reconcile_interval="1") as daemon:
            wait_rows(db_url, done(names))
            subprocess.run(["umount", str(image_dir)], check=True)
            daemon.wait_log(r"unmounted; restarting the watch and reconciling")
            daemon.wait_log(r"is empty but 3 row\(s\) say files were there")
            mount("--bind", str(share), str(image_dir))
            write_image(share / "while-away.jpg")  # appears once the share is back
            rows = wait_rows(db_url, done(names | {"while-away.jpg"}), timeout=30)
            assert daemon.stop() == 0
    finally:
        subprocess.run(["umount", str(image_dir)], check=False, capture_output=True)
    assert all(rows[n]["status"] == Status.DONE for n in names)  # never went missing
    assert "Traceback" not in daemon.log()
