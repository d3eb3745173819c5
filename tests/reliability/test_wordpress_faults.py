"""WordPress unreachable, then slow, then broken, then back, under a running daemon.

Files keep arriving throughout. Ends with every file uploaded once and the
daemon never down.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imgwatch.store import DONE, FAILED
from tests.daemonproc import wait_for, wait_rows
from tests.faultproxy import FaultProxy
from tests.imagefiles import write_image
from tests.servers import MariaDB, WordPress
from tests.test_daemon import start, wp_settings


@pytest.fixture
def proxy(live_wordpress: WordPress) -> Iterator[FaultProxy]:
    p = FaultProxy(live_wordpress.url, slow_seconds=2.5)
    yield p
    p.close()


def failed_with(names: set[str], words: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda rows: all(
        n in rows and rows[n]["status"] == FAILED and words in (rows[n]["last_error"] or "")
        for n in names
    )


def test_wordpress_unreachable_slow_broken_then_back(
    tmp_path: Path,
    image_dir: Path,
    mariadb: MariaDB,
    live_wordpress: WordPress,
    proxy: FaultProxy,
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    media_before = site.media_count()
    settings = {
        **wp_settings(site),
        "wp_api_url": proxy.url + "/wp-json/wp/v2/media",
        "wp_read_timeout": "1",
        "wp_retries": "2",
        # Every level: the secrets check on the log must cover debug lines too
        # (requests', urllib3's and the database driver's among them).
        "log_level": "DEBUG",
    }
    phases = {"drop": "", "slow": "timed out", "error": "500"}
    dropped: set[str] = set()
    with start(tmp_path, image_dir, db, **settings) as daemon:
        for mode, words in phases.items():
            proxy.mode = mode
            names = {f"{mode}/{i}.jpg" for i in range(4)}
            for name in sorted(names):
                write_image(image_dir / name)
            dropped |= names
            # Everything so far fails again in this mode (SIGHUP: retry now).
            daemon.signal(signal.SIGHUP)
            wait_rows(db, failed_with(dropped, words), timeout=60)
            assert daemon.process.poll() is None
        proxy.mode = "pass"
        daemon.signal(signal.SIGHUP)
        rows = wait_rows(
            db, lambda r: dropped <= {n for n, x in r.items() if x["status"] == DONE}, timeout=90
        )
        assert daemon.stop() == 0
    # Slow answers may have landed uploads the daemon never heard about: the slug
    # lookup found them, so still one media item per file.
    assert site.media_count() == media_before + len(dropped)
    assert len({rows[n]["wp_media_id"] for n in dropped}) == len(dropped)
    log = daemon.log()
    assert "Traceback" not in log
    # Each file was uploaded or linked once: no job finished twice.
    for name in dropped:
        assert log.count(f"uploaded {name!r}") + log.count(f"linked {name!r}") == 1, name
    assert site.passwords["uploader"] not in log


def test_a_second_sigterm_cuts_a_shutdown_short(
    tmp_path: Path,
    image_dir: Path,
    mariadb: MariaDB,
    live_wordpress: WordPress,
    proxy: FaultProxy,
) -> None:
    # An upload hangs on a WordPress that never answers in time; the first SIGTERM
    # waits for it (up to the stop timeout), the second one ends the process at once.
    db = mariadb.create_database()
    proxy.slow_seconds = 60
    settings = {
        **wp_settings(live_wordpress),
        "wp_api_url": proxy.url + "/wp-json/wp/v2/media",
        "wp_read_timeout": "120",
        "stop_timeout": "120",
    }
    with start(tmp_path, image_dir, db, **settings) as daemon:
        proxy.mode = "slow"
        requests_before = proxy.requests
        write_image(image_dir / "held.jpg")
        wait_for(lambda: proxy.requests > requests_before, 30, "a WordPress request under way")
        daemon.signal(signal.SIGTERM)
        daemon.wait_log(r"received SIGTERM, stopping")
        assert daemon.process.poll() is None  # waiting for the upload, as it should
        daemon.signal(signal.SIGTERM)
        code = daemon.process.wait(10)
    assert code == 128 + signal.SIGTERM
    # What was left is in the row: the next start resolves it by the slug lookup.
    row = wait_rows(db, lambda r: "held.jpg" in r)["held.jpg"]
    assert row["status"] == "uploading"
