"""Connections (imgwatch/db/engine.py): settings errors, outages, timeouts, SQLite's
pragmas, and write conflicts run again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from imgwatch.db.engine import CONFLICT_ATTEMPTS, chunks, create_engine_for
from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.errors import ConfigError, DatabaseUnavailable
from imgwatch.textdigest import field_digest
from tests.db.records import record
from tests.servers import MariaDB, free_port


@pytest.mark.usefixtures("mariadb")
def test_mariadb_unreachable_is_database_unavailable() -> None:
    url = URL.create(
        "mysql+pymysql", username="u", password="secret-pw", host="127.0.0.1", port=free_port()
    )
    with pytest.raises(DatabaseUnavailable) as info:
        ImageStore(url).open()
    assert "secret-pw" not in str(info.value)
    assert "***" in str(info.value)


def test_mariadb_wrong_password_is_config_error(mariadb: MariaDB) -> None:
    url = mariadb.create_database().set(password="wrong-pw")
    with pytest.raises(ConfigError, match="Access denied") as info:
        ImageStore(url).open()
    assert "wrong-pw" not in str(info.value)


def test_database_lost_after_open_is_database_unavailable(mariadb: MariaDB) -> None:
    url = mariadb.create_database()
    store = ImageStore(url)
    store.open()
    # The account is removed and its sessions killed while imgwatch runs.
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute(f"DROP USER '{url.username}'@'127.0.0.1'")
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER=%s", (url.username,))
        for (session,) in cur.fetchall():
            cur.execute(f"KILL {int(session)}")
    admin.close()
    with pytest.raises(DatabaseUnavailable, match=r"writing rows failed: .*Access denied") as info:
        store.upsert([record("a.jpg")])
    assert str(url.password) not in str(info.value)
    store.close()


def test_sqlite_in_a_missing_directory_is_config_error(tmp_path: Path) -> None:
    url = URL.create("sqlite", database=str(tmp_path / "no" / "such" / "dir" / "x.db"))
    with pytest.raises(ConfigError, match="unable to open database file"):
        ImageStore(url).open()


@pytest.mark.parametrize("value", ["0", "2.5", "-1", "soon", ""])
def test_an_unusable_io_timeout_in_the_url_is_a_settings_error(value: str) -> None:
    # pymysql would refuse it at every connect: a restart loop, not a clear exit 78.
    url = URL.create(
        "mysql+pymysql", "u", "secret", "127.0.0.1", 3306, "db", query={"read_timeout": value}
    )
    with pytest.raises(ConfigError, match="read_timeout must be a whole number") as info:
        ImageStore(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("query", "expected"),
    [({}, (120, 120)), ({"read_timeout": "7"}, (7, 120)), ({"write_timeout": "9"}, (120, 9))],
)
def test_io_timeouts_reach_the_driver_and_the_urls_win(
    query: dict[str, str], expected: tuple[int, int]
) -> None:
    url = URL.create("mysql+pymysql", "u", "p", "127.0.0.1", 1, "db", query=query)
    store = ImageStore(url)
    seen: list[dict[str, Any]] = []

    def do_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.append(dict(cparams))
        raise RuntimeError("no connecting in this test")

    event.listen(store.engine, "do_connect", do_connect)
    with pytest.raises(RuntimeError):
        store.engine.connect()
    assert (seen[0]["read_timeout"], seen[0]["write_timeout"]) == expected


def _connect_params(url: URL, io_timeout: int | None) -> dict[str, Any]:
    """What the engine for url would hand pymysql, without connecting."""
    engine = create_engine_for(url, io_timeout)
    seen: list[dict[str, Any]] = []

    def do_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        seen.append(dict(cparams))
        raise RuntimeError("no connecting in this test")

    event.listen(engine, "do_connect", do_connect)
    with pytest.raises(RuntimeError):
        engine.connect()
    engine.dispose()
    return seen[0]


def test_an_engine_without_io_timeout_drops_even_the_urls() -> None:
    # The engine that adopts a large table: no limit at all, whatever the URL says.
    url = URL.create(
        "mysql+pymysql",
        "u",
        "p",
        "127.0.0.1",
        1,
        "db",
        query={"read_timeout": "7", "write_timeout": "9"},
    )
    unlimited = _connect_params(url, None)
    assert "read_timeout" not in unlimited and "write_timeout" not in unlimited
    assert (
        _connect_params(URL.create("mysql+pymysql", "u", "p", "127.0.0.1", 1, "db"), 5)[
            "read_timeout"
        ]
        == 5
    )


def test_a_url_whose_driver_is_not_there_is_a_settings_error() -> None:
    url = make_url("nosuchdb+nosuchdriver://u:secret-pw@127.0.0.1/db")
    with pytest.raises(ConfigError, match="cannot use database URL") as info:
        ImageStore(url)
    assert "secret-pw" not in str(info.value)


def test_ping_says_why_a_database_does_not_answer(store: ImageStore) -> None:
    assert store.ping() is None
    down = ImageStore(
        URL.create(
            "mysql+pymysql", username="u", password="ping-pw", host="127.0.0.1", port=free_port()
        )
    )
    try:
        why = down.ping()
    finally:
        down.close()
    assert why is not None and why.startswith("database mysql+pymysql://u:***@127.0.0.1:")
    assert "is unreachable: (2003)" in why and "ping-pw" not in why
    assert "\n" not in why


def test_sqlite_connections_use_wal_and_compute_the_field_digest(tmp_path: Path) -> None:
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "x.db")))
    store.open()
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
            for value in ("caf\u00e9", None, 12, b"\xffblob"):
                got = conn.exec_driver_sql("SELECT imgwatch_field_digest(?)", (value,)).scalar()
                assert got == field_digest(value), value
    finally:
        store.close()


def test_chunks_cover_every_item_in_order_in_slices_of_at_most_size() -> None:
    items = list(range(2501))
    slices = list(chunks(items, 1000))
    assert [len(s) for s in slices] == [1000, 1000, 501]
    assert [i for s in slices for i in s] == items
    assert list(chunks([], 1000)) == []


# --- write conflicts (MySQL 1213), run again at once -------------------------------------


def _write_conflict() -> OperationalError:
    """What SQLAlchemy raises when MySQL answers a commit with 1213, as a Galera node
    does to the loser of a certification conflict."""
    words = "Deadlock found when trying to get lock; try restarting transaction"
    return OperationalError("COMMIT", None, pymysql.err.OperationalError(1213, words))


def _warned(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _add_row(conn: Connection) -> None:
    conn.execute(images.insert().values(file_name="a.jpg"))


def test_a_write_conflict_is_run_again_at_once_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "x.db")))
    store.open()
    runs: list[int] = []

    def body(conn: Connection) -> int:
        runs.append(1)
        _add_row(conn)
        if len(runs) < 3:
            raise _write_conflict()
        return len(runs)

    try:
        with caplog.at_level(logging.WARNING, logger="imgwatch.db.engine"):
            assert store.transaction("writing rows", body) == 3
        # The two that lost were rolled back: one row, from the run that committed.
        assert store.count_rows() == 1
    finally:
        store.close()
    assert [(r.levelname, r.getMessage()) for r in _warned(caplog)] == [
        (
            "WARNING",
            "write conflict with another node while writing rows "
            "(certification failed or deadlock, error 1213); retrying",
        )
    ] * 2


def test_a_write_conflict_that_persists_is_the_usual_database_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "x.db")))
    store.open()
    runs: list[int] = []

    def body(conn: Connection) -> None:
        runs.append(1)
        _add_row(conn)
        raise _write_conflict()

    try:
        with (
            caplog.at_level(logging.WARNING, logger="imgwatch.db.engine"),
            pytest.raises(DatabaseUnavailable, match=r"writing rows failed: \(1213\) Dead"),
        ):
            store.transaction("writing rows", body)
        assert store.count_rows() == 0
    finally:
        store.close()
    assert len(runs) == CONFLICT_ATTEMPTS
    assert len(_warned(caplog)) == CONFLICT_ATTEMPTS - 1


def test_other_errors_in_a_transaction_are_not_run_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ImageStore(URL.create("sqlite", database=str(tmp_path / "x.db")))
    store.open()
    runs: list[int] = []
    lost = OperationalError(
        "COMMIT", None, pymysql.err.OperationalError(2013, "Lost connection to server")
    )

    def body(_conn: Connection) -> None:
        runs.append(1)
        raise lost

    def broken(_conn: Connection) -> None:
        runs.append(1)
        raise ValueError("a bug, not the database")

    try:
        with caplog.at_level(logging.WARNING, logger="imgwatch.db.engine"):
            with pytest.raises(DatabaseUnavailable, match=r"\(2013\) Lost connection"):
                store.transaction("writing rows", body)
            with pytest.raises(ValueError, match="a bug"):
                store.transaction("writing rows", broken)
    finally:
        store.close()
    assert len(runs) == 2
    assert _warned(caplog) == []


def test_released_connections_leave_none_for_a_fork_to_copy(store: ImageStore) -> None:
    assert store.lookup_many(["x.jpg"]) == {}
    pool = store.engine.pool
    assert isinstance(pool, QueuePool) and pool.checkedin() >= 1
    store.release_connections()
    assert store.engine.pool is not pool and store.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    assert store.lookup_many(["x.jpg"]) == {}  # and new ones are opened as needed
