"""A MySQL server that hangs (answers nothing, refuses nothing) rather than goes down.

Queries give up after the I/O timeout and the usual outage handling takes over; the
schema changes of adopting a table are not held to that timeout.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import URL

from imgwatch.db import engine as store_module
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.model import Status
from tests.daemonproc import DaemonProcess, wait_rows
from tests.db.records import record
from tests.imagefiles import write_image
from tests.rows import row_of
from tests.servers import MariaDB


def test_a_query_to_a_hung_server_gives_up(
    own_mariadb: MariaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MYSQL_IO_TIMEOUT", 2)
    store = ImageStore(own_mariadb.create_database())
    store.open()
    store.upsert([record("before.jpg")])
    outcome: list[BaseException | int] = []

    def count() -> None:
        try:
            outcome.append(store.count_rows())
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    own_mariadb.freeze()
    try:
        started = time.monotonic()
        asking = threading.Thread(target=count, daemon=True)
        asking.start()
        asking.join(60)  # the ping's read timeout, then the reconnect's (2 + 2 s)
        assert not asking.is_alive(), "still waiting for a hung server"
        assert isinstance(outcome[0], DatabaseUnavailable), outcome
        assert time.monotonic() - started >= 2
    finally:
        own_mariadb.thaw()
    assert store.count_rows() == 1  # the dead connection was replaced
    store.close()


@pytest.mark.parametrize("timeout_from", ["imgwatch", "the URL"])
def test_adopting_a_table_is_not_held_to_the_timeout(
    mariadb: MariaDB, monkeypatch: pytest.MonkeyPatch, timeout_from: str
) -> None:
    # The ALTER waits for another session's transaction on the table, longer than the
    # timeout; on a large table, adding an index could take as long.
    url = mariadb.create_database()
    other = _connect(url)
    if timeout_from == "imgwatch":
        monkeypatch.setattr(store_module, "MYSQL_IO_TIMEOUT", 1)
    else:
        url = url.update_query_dict({"read_timeout": "1", "write_timeout": "1"})
    with other.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE images (id INT AUTO_INCREMENT PRIMARY KEY, file_name VARCHAR(255) "
            "NOT NULL UNIQUE, title VARCHAR(255), description TEXT, wp_url VARCHAR(255))"
        )
        cursor.execute("INSERT INTO images (file_name) VALUES ('old.jpg')")
        other.commit()
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM images")  # holds the table's metadata lock
    ending = threading.Timer(3, other.commit)
    ending.start()
    try:
        store = ImageStore(url)
        started = time.monotonic()
        store.open()
        assert time.monotonic() - started >= 2, "the ALTER did wait for the other session"
        assert row_of(store, "old.jpg") is not None
        assert row_of(store, "old.jpg")["status"] == "pending"  # type: ignore[index]
        store.close()
    finally:
        ending.join()
        other.close()


def test_the_daemon_goes_on_after_the_server_hung(
    tmp_path: Path, image_dir: Path, own_mariadb: MariaDB
) -> None:
    # A timeout in the URL wins over imgwatch's own (and keeps the test short).
    db = own_mariadb.create_database().update_query_dict(
        {"read_timeout": "3", "write_timeout": "3"}
    )
    env = {
        "IMGWATCH_IMAGE_DIR": str(image_dir),
        "IMGWATCH_DB_URL": db.render_as_string(hide_password=False),
    }
    daemon = DaemonProcess(tmp_path / "run", env)
    daemon.wait_started()
    try:
        daemon.wait_log(r"startup reconcile")
        own_mariadb.freeze()
        try:
            write_image(image_dir / "during.jpg")
            daemon.wait_log(r"ERROR .*database .*retrying, nothing is lost meanwhile", 60)
            assert daemon.process.poll() is None
        finally:
            own_mariadb.thaw()
        rows = wait_rows(db, lambda r: r.get("during.jpg", {}).get("status") == Status.DONE, 90)
        assert rows["during.jpg"]["status"] == Status.DONE
        assert daemon.stop() == 0
    finally:
        daemon.close()


def _connect(url: URL) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        autocommit=False,
    )
