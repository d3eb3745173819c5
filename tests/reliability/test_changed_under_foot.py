"""A file deleted, truncated or replaced between its event and its processing.

The quiet period is long here so the change lands in that gap for sure. What is
recorded is what is on disk when it is read, once.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.daemonproc import start, wait_rows
from tests.imagefiles import sha256_of, write_image


def test_changes_between_event_and_processing(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    with start(tmp_path, image_dir, db_url, quiet_period="1.5") as daemon:
        write_image(image_dir / "deleted.jpg")
        write_image(image_dir / "truncated.png", 80, 80)
        write_image(image_dir / "replaced.jpg", 30, 30)
        write_image(image_dir / "marker.gif")
        # All within the quiet period: nothing has been read yet.
        (image_dir / "deleted.jpg").unlink()
        size = (image_dir / "truncated.png").stat().st_size
        os.truncate(image_dir / "truncated.png", size // 2)
        write_image(tmp_path / "new.jpg", 50, 50)
        os.replace(tmp_path / "new.jpg", image_dir / "replaced.jpg")
        rows = wait_rows(
            db_url, lambda r: {"truncated.png", "replaced.jpg", "marker.gif"} <= set(r)
        )
        assert daemon.stop() == 0
    assert "deleted.jpg" not in rows  # gone before it was read: nothing to record
    assert rows["truncated.png"]["status"] == Status.REJECTED
    assert "truncated PNG" in rows["truncated.png"]["last_error"]
    assert rows["replaced.jpg"]["status"] == Status.DONE
    assert rows["replaced.jpg"]["width"] == 50
    assert rows["replaced.jpg"]["sha256"] == sha256_of(image_dir / "replaced.jpg")
    log = daemon.log()
    assert log.count("'replaced.jpg'") == 1  # read once, the final content
    assert log.count("'truncated.png'") == 1
    assert "'deleted.jpg'" not in log
