"""kill -9 at random moments during a burst, again and again, then a clean run.

Ends with: every file recorded once (one row, its content's hash), every file
uploaded once (as many new media items as files, each row its own), and the
daemon running cleanly after the last restart.
"""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

from imgwatch.model import Status
from tests.daemonproc import DaemonProcess, daemon_env, wait_rows, wp_settings
from tests.imagefiles import sha256_of, write_image
from tests.servers import MariaDB, WordPress

FILES = 200
KILLS = 10


def test_repeated_kill_9_during_a_burst_loses_nothing_and_uploads_once(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    media_before = site.media_count()
    env = daemon_env(image_dir, db, **wp_settings(site))
    names = [f"burst/{i // 50}/{i:03d}.jpg" for i in range(FILES)]
    stop_dropping = threading.Event()

    def drop() -> None:  # files keep arriving while the daemon is killed and restarted
        for name in names:
            if stop_dropping.is_set():
                return
            write_image(image_dir / name, 24, 24)
            stop_dropping.wait(0.02)

    dropper = threading.Thread(target=drop)
    dropper.start()
    rng = random.Random(20261125)
    logs = []
    try:
        for _ in range(KILLS):
            daemon = DaemonProcess(tmp_path / "run", env)
            daemon.wait_notified("READY=1", timeout=60)
            # Somewhere in the startup reconcile, the recording or the uploads.
            threading.Event().wait(rng.uniform(0.05, 1.2))
            daemon.signal(signal.SIGKILL)
            daemon.process.wait(10)
            logs.append(daemon.log())
            daemon.close()
    finally:
        stop_dropping.set()
        dropper.join()
    dropped = [n for n in names if (image_dir / n).exists()]
    final = DaemonProcess(tmp_path / "run", env)
    try:
        final.wait_notified("READY=1", timeout=60)
        rows = wait_rows(
            db,
            lambda r: (
                set(dropped)
                <= {n for n, x in r.items() if x["status"] == Status.DONE and x["wp_url"]}
            ),
            timeout=180,
        )
        assert final.stop() == 0
    finally:
        final.close()
    logs.append(final.log())
    assert set(rows) == set(dropped)
    for name in dropped:
        assert rows[name]["sha256"] == sha256_of(image_dir / name), name
    # Uploaded once: one new media item per file, none shared, none left over.
    assert len({r["wp_media_id"] for r in rows.values()}) == len(dropped)
    assert site.media_count() == media_before + len(dropped)
    assert all("Traceback" not in log for log in logs)
