"""What the in-process daemon tests share: a daemon built as `imgwatch` builds it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

from imgwatch.config import Settings, load_settings
from imgwatch.daemon.app import Daemon
from imgwatch.files.decide import examine
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import find_one
from imgwatch.model import ImageRecord


def settings_for(image_dir: Path, db: URL, **more: str) -> Settings:
    url = db.render_as_string(hide_password=False)
    return load_settings({"image_dir": image_dir, "db_url": url, **more})


def daemon_over(image_dir: Path, db: URL, **settings: str) -> Daemon:
    """A daemon built, not started: its parts are wired as in a real one."""
    return Daemon(settings_for(image_dir, db, **settings))


@contextmanager
def running(d: Daemon) -> Iterator[Daemon]:
    """The store open, the watch on and the file threads running (no main loop, no
    reconcile thread, no uploads); all stopped after, within a deadline."""
    d.store.open()
    d.watcher.start()
    d.writer.start()
    d.files.start()
    try:
        yield d
    finally:
        d.watcher.stop()
        deadline = time.monotonic() + 10
        stopped = d.files.stop(deadline) and d.writer.stop(deadline)
        d.store.close()
        assert stopped, "a file thread outlived its deadline"


def record_of(image_dir: Path, name: str, *, uploads: bool = False) -> ImageRecord:
    """The row a file worker hands the writer for this file, as if it had none yet
    (`pending` when it is to go to WordPress)."""
    found = find_one(image_dir, name)
    assert found is not None, name
    record = examine(found, None, FileProcessor("Image description"), uploads)
    assert isinstance(record, ImageRecord), record
    return record
