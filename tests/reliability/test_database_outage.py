"""MariaDB stopped under a running daemon, then started again.

The daemon stays up (no crash loop), keeps watching, says so once, and once the
database is back records everything that arrived meanwhile, each file once.
"""

from __future__ import annotations

import time
from pathlib import Path

from imgwatch.model import Status
from tests.daemonproc import start, wait_for, wait_rows
from tests.imagefiles import sha256_of, write_image
from tests.servers import MariaDB


def test_database_outage_while_files_arrive(
    tmp_path: Path, image_dir: Path, own_mariadb: MariaDB
) -> None:
    db = own_mariadb.create_database()
    before = {f"before/{i}.jpg" for i in range(10)}
    during = {f"during/{i}.jpg" for i in range(30)}
    with start(tmp_path, image_dir, db, reconcile_interval="2") as daemon:
        for name in sorted(before):
            write_image(image_dir / name)
        wait_rows(db, lambda r: before <= {n for n, x in r.items() if x["status"] == Status.DONE})

        own_mariadb.halt()
        try:
            for name in sorted(during):
                write_image(image_dir / name)
            daemon.wait_log(r"ERROR .*database .*retrying, nothing is lost meanwhile", 30)
            time.sleep(4)  # a while down: workers, writer and the periodic reconcile all fail
            assert daemon.process.poll() is None  # still up, still watching
        finally:
            own_mariadb.resume()

        rows = wait_rows(
            db,
            lambda r: (before | during) <= {n for n, x in r.items() if x["status"] == Status.DONE},
        )
        daemon.wait_log(r"database is back after \d+s")
        wait_for(lambda: daemon.process.poll() is None, 1, "the daemon to be running")
        assert daemon.stop() == 0
    for name in before | during:
        assert rows[name]["sha256"] == sha256_of(image_dir / name)
    log = daemon.log()
    assert "Traceback" not in log
    # One story, not a line per file per second.
    assert log.count("retrying, nothing is lost meanwhile") == 1
    for name in during:
        assert log.count(f"recorded {name!r}") == 1, name
