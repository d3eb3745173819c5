"""What the daemon says about itself (daemon/health.py): health answer, watchdog, STATUS=."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.daemon import health as health_module
from imgwatch.daemon.stages import Count
from imgwatch.errors import SiteCondition
from imgwatch.model import utcnow
from imgwatch.reconcile.deletions import Hold
from tests.daemon.helpers import daemon_over, running
from tests.daemonproc import wait_for
from tests.servers import MariaDB


def test_a_dead_watcher_is_restarted_and_a_reconcile_follows(
    tmp_path: Path, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from imgwatch.config import load_settings
    from imgwatch.daemon.app import Daemon

    settings = load_settings({"image_dir": image_dir, "db_url": f"sqlite:///{tmp_path / 'x.db'}"})
    daemon = Daemon(settings)
    daemon.watcher.start()
    try:
        observer = daemon.watcher.observer
        assert observer is not None
        observer.stop()  # what an exception inside watchdog's thread leaves behind
        observer.join(5)
        assert not daemon.watcher.alive()
        daemon.health.check_watcher()
        assert daemon.watcher.alive()
        assert daemon.reconciles.asked() == "watcher restart"
        assert "the watcher thread stopped; restarting the watch and reconciling" in caplog.text
    finally:
        daemon.watcher.stop()


def test_a_worker_stuck_on_one_file_makes_the_daemon_unhealthy(
    tmp_path: Path, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from imgwatch.config import load_settings
    from imgwatch.daemon import health as health_module
    from imgwatch.daemon.app import Daemon

    settings = load_settings({"image_dir": image_dir, "db_url": f"sqlite:///{tmp_path / 'x.db'}"})
    d = Daemon(settings)
    unblock = threading.Event()

    def hung_read(key: str, row: object) -> bool:  # a read from a dead NFS server
        unblock.wait(10)
        return False

    monkeypatch.setattr(d.files, "process", hung_read)
    monkeypatch.setattr(health_module, "STUCK_AFTER", 0.2)
    d.store.open()  # the workers look rows up before reading files
    d.watcher.start()
    d.files.start()
    d.writer.start()
    try:
        assert d.health.healthy()
        assert d.files.submit("slow.jpg")
        wait_for(lambda: not d.health.healthy(), 5, "the stuck read to be noticed")
        assert d.files.stuck(0.2) == "slow.jpg"
        unblock.set()
        wait_for(d.health.healthy, 5, "health back once the read returns")
    finally:
        unblock.set()
        d.watcher.stop()
        deadline = time.monotonic() + 10
        assert d.files.stop(deadline) and d.writer.stop(deadline)  # no threads left behind
        d.store.close()


def test_a_watching_daemon_is_healthy_and_its_status_line_counts(
    image_dir: Path, db_url: URL
) -> None:
    d = daemon_over(image_dir, db_url)
    with running(d):
        h = d.health
        assert (h.trouble(), h.healthy(), h.watching()) == (None, True, True)
        assert h.status_line() == (
            f"watching {d.root}: 0 queued, 0 recorded, 0 rejected, 0 gone"
        )  # no WordPress: no upload counts
        d.stats.add(Count.RECORDED, 3)
        d.stats.add(Count.REJECTED)
        d.stats.add(Count.MISSING, 2)
        d.stats.last_error = "reading 'x.jpg' failed"
        assert h.status_line() == (
            f"watching {d.root}: 0 queued, 3 recorded, 1 rejected, 2 gone; "
            "last error: reading 'x.jpg' failed"
        )


def test_a_stopped_watch_is_trouble_and_stops_the_watchdog(image_dir: Path, db_url: URL) -> None:
    d = daemon_over(image_dir, db_url)
    with running(d):
        d.watcher.stop()
        assert d.health.trouble() == f"not watching {d.root}: the file watcher has stopped"
        assert not d.health.watching()
        assert not d.health.healthy()


def test_a_gone_image_directory_is_waited_for_then_watched_again(
    image_dir: Path,
    db_url: URL,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="imgwatch.daemon.health")
    monkeypatch.setattr(health_module, "RESTART_WATCHER_EVERY", 0.0)  # no wait between tries
    d = daemon_over(image_dir, db_url)
    with running(d):
        h = d.health
        image_dir.rmdir()  # an unmounted share, say
        h.check_watcher()
        problem = f"cannot watch {d.root}: No such file or directory"
        assert h.watch_problem == problem
        assert h.trouble() == problem
        # Waiting for the directory is what should happen: no restart by the watchdog.
        assert h.healthy() and not h.watching()
        assert h.status_line().startswith(f"NOT watching, waiting for {d.root}: ")
        assert d.reconciles.asked() is None
        h.check_watcher()  # still gone: said once
        assert caplog.text.count(problem) == 1
        image_dir.mkdir()
        h.check_watcher()
        assert d.watcher.alive()
        assert d.reconciles.asked() == "watcher restart"  # what happened meanwhile is read
        h.check_watcher()
        assert h.trouble() is None  # the problem is over
        assert f"watching {d.root} again" in caplog.text


def test_held_deletions_are_trouble_but_not_a_hang(image_dir: Path, db_url: URL) -> None:
    d = daemon_over(image_dir, db_url)
    with running(d):
        d.hold.set(Hold(40, "40 of 50 rows would be marked missing at once", utcnow()))
        assert d.health.trouble() == "deletions held: 40 of 50 rows would be marked missing at once"
        assert d.health.healthy()  # the watchdog has nothing to restart
        assert d.health.status_line().endswith(
            "; 40 deletion(s) held, waiting for the files to come back or "
            "imgwatch retry --confirm-deletes"
        )


def test_uploads_paused_too_long_are_trouble(image_dir: Path, db_url: URL) -> None:
    # Not contacted: the pause is reported here as an upload would report it.
    wordpress = {
        "wp_api_url": "http://127.0.0.1:1/wp-json/wp/v2/media",
        "wp_user": "u",
        "wp_password": "pw",
    }
    d = daemon_over(image_dir, db_url, wp_pause_unhealthy="0.05", **wordpress)
    assert d.uploads is not None
    with running(d):
        h = d.health
        assert h.pause_state() is None and h.trouble() is None
        assert ", 0 uploaded, 0 upload failures" in h.status_line()
        d.uploads.uploader.pause.report(SiteCondition("firewall", "a firewall answers uploads"))
        line = h.status_line()
        assert "; uploads paused " in line and line.endswith("s: a firewall answers uploads")
        trouble = wait_for(h.trouble, 5, "the pause to last longer than allowed")
        assert trouble is not None
        assert trouble.startswith("uploads paused for ")
        assert trouble.endswith("s: a firewall answers uploads")
        d.uploads.uploader.pause.resume()
        assert h.trouble() is None


def test_a_database_that_stops_answering_is_trouble(image_dir: Path, own_mariadb: MariaDB) -> None:
    db = own_mariadb.create_database()
    d = daemon_over(image_dir, db)
    with running(d):
        own_mariadb.halt()  # its own server: the shared one stays up
        trouble = d.health.trouble()  # the first look asks at once
        assert trouble is not None
        assert trouble.startswith("database mysql+pymysql://") and "is unreachable" in trouble
        assert str(db.password) not in trouble
