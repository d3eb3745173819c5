"""Connections: the engine for a database URL, its timeouts, the one way a
database error becomes a line an operator can read (`Database.guard`), and the one
way a write transaction that lost a write conflict is run again
(`Database.transaction`)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Column, Engine, Index, and_, create_engine, event, select
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from imgwatch.db import schema
from imgwatch.errors import ConfigError, DatabaseUnavailable
from imgwatch.textdigest import field_digest

log = logging.getLogger(__name__)

T = TypeVar("T")

# MySQL: seconds a query may go without a byte from the server before its connection
# is given up, and the outage handling (retries, one log line) takes over. Without
# it a server that hangs rather than refuses (a frozen VM, a partition that drops
# packets) blocks a worker for good. Longer than InnoDB's lock wait (50 s by
# default), which the server ends with an error of its own. A read_timeout or
# write_timeout in the database URL wins.
MYSQL_IO_TIMEOUT = 120

_IO_TIMEOUT_KEYS = ("read_timeout", "write_timeout")
# MySQL errors that mean the settings are wrong, not that the server is down:
# 1044/1045 access denied, 1049 unknown database.
_MYSQL_CONFIG_ERRORS = {1044, 1045, 1049}
# ER_DUP_KEYNAME: an index of that name exists.
_DUPLICATE_KEY_NAME = 1061
# GROUP_CONCAT's limit on every MySQL connection: enough for a page of 10,000 rows
# of the longest names (255 characters of up to 4 bytes, and the numbers) packed into
# one value (db/images.py: _packed_page); it cuts at this length, which the row count
# beside it shows.
PACKED_MAX = 16 * 1024 * 1024
# Rows per statement when touching many ids at once (keeps IN (...) lists small).
ID_CHUNK = 1000
# MySQL's 1213: the transaction lost a write conflict and was rolled back. On a
# multi-writer cluster (Galera) it is the normal outcome of two nodes writing one row
# at once (certification failed, or a replicated write aborted the local one); on one
# server, a deadlock. The other writer has committed, so the cure is to run the
# transaction again at once. Not 1205 (lock wait timeout): that has already waited
# innodb_lock_wait_timeout (50 s) on a lock someone holds, which is worth an error
# line, and the callers' outage handling retries it anyway.
WRITE_CONFLICT = 1213
CONFLICT_ATTEMPTS = 5
# At most this many seconds, times the attempt number, before running it again: two
# losers of one conflict must not meet again in step.
CONFLICT_JITTER = 0.05


class Database:
    """One database: its engine, its tables made ready by open(), and guard()."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.display_url = url.render_as_string(hide_password=True)
        self.engine = create_engine_for(url, MYSQL_IO_TIMEOUT)
        self.dialect = self.engine.dialect.name
        # Raised by a driver cursor used directly (file_states), where SQLAlchemy does
        # not wrap errors in DBAPIError.
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        # What open(create=False) left undone, in words and in parts.
        self.schema_changes: list[str] = []
        self.missing_tables: set[str] = set()
        self.absent_columns: frozenset[str] = frozenset()
        if self.dialect not in {"sqlite", "mysql", "mariadb"}:
            raise ConfigError(f"unsupported database {self.dialect!r}: use SQLite or MySQL/MariaDB")

    def open(self, *, create: bool = True) -> None:
        """Connect, then create the tables or adopt an existing images table. Safe to
        repeat. With create=False nothing is changed: `schema_changes` then says what
        open() would have done (for check, status and dry runs)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(select(1))
                changes = schema.changes_needed(conn, self.display_url)
                if create:
                    for change in changes:
                        if not change.adopt:
                            change.table.create(conn)
                            log.info("created table %s in %s", change.table.name, self.display_url)
            if create:
                # After the inspection's transaction: its metadata locks would hold
                # the ALTER on another connection back.
                self._adopt([c for c in changes if c.adopt])
                changes = []
            self.schema_changes = [c.describe() for c in changes]
            self.missing_tables = {c.table.name for c in changes if not c.adopt}
            self.absent_columns = frozenset(
                col.name for c in changes if c.table is schema.images for col in c.columns
            )
        except DBAPIError as exc:
            self.engine.dispose()
            reason = describe_db_error(exc)
            if self.dialect == "sqlite" or _mysql_error_code(exc) in _MYSQL_CONFIG_ERRORS:
                raise ConfigError(f"cannot use database {self.display_url}: {reason}") from None
            raise DatabaseUnavailable(
                f"database {self.display_url} is unreachable: {reason}"
            ) from None

    def release_connections(self) -> None:
        """Close the idle pooled connections, before this process forks: a child must
        not inherit one (two processes on one connection garble it), and opens its
        own. This process opens new ones as it needs them."""
        self.engine.dispose()

    def _adopt(self, changes: list[schema.SchemaChange]) -> None:
        """Add what an existing images table lacks.

        On MySQL, over a connection without the read timeout: indexing a large
        table can take longer than any limit that is useful against a hung
        server, and an ALTER given up on is rolled back, to be tried (and given up
        on) again at every start.
        """
        if not changes:
            return
        engine = self.engine if self.dialect == "sqlite" else create_engine_for(self.url, None)
        try:
            for index in schema.adopt(engine, changes):
                self._add_compare_index(engine, index)
        finally:
            if engine is not self.engine:
                engine.dispose()

    def _add_compare_index(self, engine: Engine, index: Index) -> None:
        """Add the compare index (db/schema.py) to an existing table. A table from
        an old MySQL may be MyISAM, whose keys hold 1,000 bytes, too few for it:
        then reconciles read each row from the table, slower, and that is said
        here rather than not start."""
        log.info(
            "adding index %s to table images in %s: once, a minute or more on a "
            "table of millions of rows",
            index.name,
            self.display_url,
        )
        try:
            with engine.begin() as conn:
                index.create(conn)
        except DBAPIError as exc:
            if _mysql_error_code(exc) == _DUPLICATE_KEY_NAME:
                return  # another daemon on the same database added it meanwhile
            log.warning(
                "could not add index %s to table images, reconciles will be slower: %s",
                index.name,
                describe_db_error(exc),
            )

    @property
    def images_unadopted(self) -> bool:
        """The images table as the original service left it, not adopted yet (an older
        imgwatch's lacks only some columns; reads go around those)."""
        return "status" in self.absent_columns

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> str | None:
        """None if the database answers now, else why not (one line, no password)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except (DBAPIError, self._driver_error) as exc:
            return f"database {self.display_url} is unreachable: {describe_db_error(exc)}"
        return None

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        """Database errors after open() become one DatabaseUnavailable line."""
        try:
            yield
        except (DBAPIError, self._driver_error) as exc:
            raise self._unavailable(action, exc) from None

    def transaction(self, action: str, body: Callable[[Connection], T]) -> T:
        """body(conn) in one transaction, guarded as guard() does; what it returns.

        A write conflict (WRITE_CONFLICT) rolls the transaction back and it is run
        again at once, with a warning, up to CONFLICT_ATTEMPTS times in all; only a
        conflict that persists becomes the usual DatabaseUnavailable. So body may run
        more than once: it must do nothing outside its transaction.
        """
        attempt = 1
        while True:
            try:
                with self.engine.begin() as conn:
                    return body(conn)
            except (DBAPIError, self._driver_error) as exc:
                if _mysql_error_code(exc) != WRITE_CONFLICT or attempt >= CONFLICT_ATTEMPTS:
                    raise self._unavailable(action, exc) from None
            log.warning(
                "write conflict with another node while %s (certification failed or "
                "deadlock, error %d); retrying",
                action,
                WRITE_CONFLICT,
            )
            time.sleep(random.uniform(0.0, CONFLICT_JITTER * attempt))  # noqa: S311 - jitter
            attempt += 1

    def _unavailable(self, action: str, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"database {self.display_url}: {action} failed: {describe_db_error(exc)}"
        )


def describe_db_error(exc: BaseException) -> str:
    """The driver's own words, first line only (no SQL, no parameters, no URL)."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}".splitlines()[0]
    return (str(orig).splitlines() or [type(orig).__name__])[0]


def _mysql_error_code(exc: BaseException) -> int | None:
    """The MySQL error number of exc, wrapped by SQLAlchemy or straight from the
    driver (a cursor used directly), else None."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def bind_processor(column: Column[Any], dialect: Any) -> Any:
    """What SQLAlchemy does to a value for this column before the driver gets it."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def starts_with(column: Any, prefix: str) -> Any:
    """column starts with prefix, as a range on its index: `prefix <= column <
    prefix with its last character the next one`.

    Not LIKE: SQLite's LIKE ignores the case of ASCII letters (`D/x.jpg` would be
    taken for a row under `d/`), and a range needs no escaping of `%` and `_`.
    """
    if not prefix:
        return column.is_not(None)
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < end)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """items in slices of at most size (keeps IN (...) lists small)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def create_engine_for(url: URL, io_timeout: int | None) -> Engine:
    """An engine for url; on MySQL through pymysql with io_timeout (None: none at all,
    not even one the URL gives)."""
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        timeouts: dict[str, int] = {}
        if url.get_driver_name() == "pymysql":  # other drivers name their own options
            _check_io_timeouts(url)
            if io_timeout is None:
                url = url.difference_update_query(_IO_TIMEOUT_KEYS)
            else:
                timeouts = {k: io_timeout for k in _IO_TIMEOUT_KEYS if k not in url.query}
        # pre_ping: a connection the server dropped overnight is replaced, not reported.
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=timeouts)
        event.listen(engine, "connect", _mysql_session)
        return engine
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL: {describe_db_error(exc)}") from None


def _check_io_timeouts(url: URL) -> None:
    """pymysql takes whole seconds above 0; anything else would fail at every connect."""
    for key in _IO_TIMEOUT_KEYS:
        value = url.query.get(key)
        if value is not None and not (isinstance(value, str) and value.isdigit() and int(value)):
            raise ConfigError(
                f"database URL: {key} must be a whole number of seconds above 0, not {value!r}"
            )


def _mysql_session(dbapi_conn: Any, _record: Any) -> None:
    # Once per connection, not once per page of rows read.
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"SET SESSION group_concat_max_len = {PACKED_MAX}")
    finally:
        cursor.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL: readers never block the writer, and a crash cannot corrupt the file.
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()
    # What MySQL's SHA2() does in schema.FieldDigest, for SQLite. It takes any value (a
    # blob a person stored): an exception there would fail every statement on the row.
    dbapi_conn.create_function("imgwatch_field_digest", 1, field_digest, deterministic=True)
