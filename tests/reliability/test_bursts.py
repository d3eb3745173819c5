"""Thousands of files at once: in one directory, and in thousands of new directories.

Everything is recorded exactly once, whether it came through the watcher, the
scan of a new directory, or the reconcile that follows a queue overflow.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.daemonproc import start, wait_rows

ONE_DIR = 3000
NEW_DIRS = 1500


def tiny_png(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (i % 256, i // 256 % 256, i // 65536)).save(out, "PNG")
    return out.getvalue()


def test_thousands_of_files_in_one_directory_and_in_new_directories(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    flat = {f"flat/{i:05d}.png" for i in range(ONE_DIR)}
    deep = {f"tree/{i:04d}/x/{i:04d}.png" for i in range(NEW_DIRS)}
    (image_dir / "flat").mkdir()
    with start(tmp_path, image_dir, db_url) as daemon:
        for i, name in enumerate(sorted(flat)):
            (image_dir / name).write_bytes(tiny_png(i))
        for i, name in enumerate(sorted(deep)):
            path = image_dir / name
            path.parent.mkdir(parents=True)  # a new directory, its file written at once
            path.write_bytes(tiny_png(ONE_DIR + i))
        rows = wait_rows(
            db_url,
            lambda r: sum(1 for x in r.values() if x["status"] == Status.DONE) >= len(flat | deep),
            timeout=300,
        )
        assert daemon.stop() == 0
    assert set(rows) == flat | deep
    assert len({r["sha256"] for r in rows.values()}) == len(rows)
    log = daemon.log()
    assert log.count("recorded '") == len(flat | deep)  # each read once
    if (os.cpu_count() or 1) > 1:
        # Read in the reading processes, whose lines are in the daemon's log above.
        assert "reading files in 2 processes" in log
    assert "Traceback" not in log


def test_a_directory_larger_than_the_queue_moved_in_is_recorded_without_an_overflow(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    # As a camera card or an rsync run lands: the files written elsewhere, then the
    # directory moved in at once. The queue holds 100 changes; the directory has 1,200
    # files in 3 directories.
    staging = tmp_path / "card"
    names = {f"card/{i // 400}/{i:04d}.png" for i in range(1200)}
    for i, name in enumerate(sorted(names)):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tiny_png(i))
    with start(tmp_path, image_dir, db_url, queue_size="100") as daemon:
        staging.rename(image_dir / "card")
        rows = wait_rows(
            db_url,
            lambda r: sum(1 for x in r.values() if x["status"] == Status.DONE) >= len(names),
            timeout=300,
        )
        assert daemon.stop() == 0
    assert set(rows) == names
    log = daemon.log()
    assert log.count("recorded '") == len(names)  # each read once
    assert "queue overflow" not in log  # no change lost, no reconcile of the whole tree
