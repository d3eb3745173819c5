"""Writing found files' rows: one upsert keyed on file_name, many rows at a time.

The hot path of a bulk import, so the statement is compiled once and handed to the
driver directly; on MySQL as many-row INSERTs built by db/rowsinsert.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from sqlalchemy import case, func, literal_column, null, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL, Connection

from imgwatch.db.engine import Database, bind_processor
from imgwatch.db.rowsinsert import RowsInsert, literal_maker, no_backslash_escapes
from imgwatch.db.schema import FieldDigest, images, part_of, text_digest_of
from imgwatch.model import ImageRecord, Status, utcnow
from imgwatch.textdigest import TEXT_FIELDS

log = logging.getLogger(__name__)

# A record's values in one C call: dataclasses.asdict copies each value deeply, which
# cost a bulk import as much as the database driver did.
_RECORD_FIELDS = tuple(f.name for f in fields(ImageRecord) if f.name in images.c)
_record_values = attrgetter(*_RECORD_FIELDS)
# An upsert row: a record's values, then what the upsert adds to each row.
_UPSERT_KEYS = [*_RECORD_FIELDS, "created_at", "updated_at", "attempts"]


class _Quoting(NamedTuple):
    """How values are quoted on MySQL connections in one mode. The mode is all that
    differs between the pool's connections: they share the URL, so the charset."""

    no_backslash_escapes: bool
    literal: Callable[[object], str]


class PreparedRows(NamedTuple):
    """Rows ready to be written by RowUpserts.write_prepared."""

    records: Sequence[ImageRecord]
    values: list[tuple[Any, ...]]  # in _UPSERT_KEYS order, converted for the driver
    texts: list[str]  # MySQL: the statements, quoted as `quoting` says; else empty
    quoting: _Quoting | None


class _CompiledUpsert(NamedTuple):
    sql: str
    processors: list[tuple[int, Any]]  # (index in a row, SQLAlchemy's conversion)
    rows_insert: RowsInsert | None  # MySQL: the statement's many-rows form
    pick: Any  # MySQL: a row's values in the statement's column order


class RowUpserts(Database):
    """upsert(): insert or update many rows keyed on file_name."""

    def __init__(
        self, url: URL, *, on_written: Callable[[Sequence[ImageRecord]], None] | None = None
    ) -> None:
        super().__init__(url)
        self._compiled_upsert: _CompiledUpsert | None = None
        # MySQL: the quoting for each NO_BACKSLASH_ESCAPES mode seen, and the one the
        # last write used (see prepare_upsert).
        self._quotings: dict[bool, _Quoting] = {}
        self._quoting: _Quoting | None = None
        self._stamp_process = bind_processor(images.c.updated_at, self.engine.dialect)
        # Told of every batch of rows once committed (the daemon's metrics).
        self.on_written = on_written

    def close(self) -> None:
        super().close()
        self._quotings, self._quoting = {}, None

    def upsert(self, records: Sequence[ImageRecord]) -> None:
        """Insert or update many rows keyed on file_name, in one transaction.

        A title or description already in the row is kept: people edit them.
        """
        self.write_prepared(self.prepare_upsert(records))

    def prepare_upsert(self, records: Sequence[ImageRecord]) -> PreparedRows:
        """upsert() in two halves: this one does no I/O, so a rescan makes the next
        batch's statements while the batch before is being written; the statements'
        text was a quarter of a bulk import's time in its writing thread."""
        upsert = self._upsert_sql()
        # The same time for every row: converted once, here, not once per row (on
        # MySQL, as text, which the driver escapes in a fifth of a datetime's time).
        stamp = self._stamp_text(utcnow())
        tail = (stamp, stamp, 0)  # created_at, updated_at, attempts: _UPSERT_KEYS
        values = [_record_values(r) + tail for r in records]
        for index, process in upsert.processors:
            for i, row in enumerate(values):
                if row[index] is not None:
                    values[i] = (*row[:index], process(row[index]), *row[index + 1 :])
        texts: list[str] = []
        # Quoted as the last write was; write_prepared checks that its connection's
        # mode is the same.
        quoting = self._quoting
        if upsert.rows_insert is not None and quoting is not None and values:
            texts = list(upsert.rows_insert.statements(quoting.literal, map(upsert.pick, values)))
        return PreparedRows(records, values, texts, quoting)

    def write_prepared(self, prepared: PreparedRows) -> None:
        """Write what prepare_upsert() made, in one transaction."""
        records, values = prepared.records, prepared.values
        if not records:
            return
        upsert = self._upsert_sql()

        def write(conn: Connection) -> None:
            # Straight to the driver, the statement compiled once: per row,
            # SQLAlchemy's parameter handling cost a quarter of a bulk import.
            driver = conn.connection.driver_connection
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                if upsert.rows_insert is not None:
                    quoting = self._quoting_for(driver)
                    texts: Iterable[str] = prepared.texts
                    if quoting is not prepared.quoting or not texts:
                        texts = upsert.rows_insert.statements(
                            quoting.literal, map(upsert.pick, values)
                        )
                    for statement in texts:
                        cursor.execute(statement)
                else:
                    cursor.executemany(
                        upsert.sql, [dict(zip(_UPSERT_KEYS, v, strict=True)) for v in values]
                    )
            finally:
                cursor.close()
            self._apply_sidecars(conn, records)

        self.transaction("writing rows", write)
        if self.on_written is not None:
            self.on_written(records)

    def _quoting_for(self, driver: Any) -> _Quoting:
        """How values are quoted on this driver connection now: one object per mode,
        whichever pooled connection is used (a daemon's reconcile looks rows up while
        the batch before is written, so writes alternate between two)."""
        mode = no_backslash_escapes(driver)
        quoting = self._quotings.get(mode)
        if quoting is None:
            # A literal function's fallback is this connection's escape(), which for
            # the values rows hold (text, numbers, times) depends only on the mode
            # and the charset.
            quoting = self._quotings[mode] = _Quoting(mode, literal_maker(driver))
        self._quoting = quoting
        return quoting

    @staticmethod
    def _apply_sidecars(conn: Connection, records: Sequence[ImageRecord]) -> None:
        """What a sidecar file says replaces what the row has, a person's edit too:
        the file is the operator's own instruction. (The upsert only fills empty
        fields.) Rare, so one UPDATE per row is fine."""
        for record in records:
            if record.sidecar_fields:
                values = {name: getattr(record, name) for name in record.sidecar_fields}
                conn.execute(
                    update(images).where(images.c.file_name == record.file_name).values(**values)
                )

    def _upsert_sql(self) -> _CompiledUpsert:
        """The upsert as the driver's SQL text, and the conversions SQLAlchemy would
        apply to parameters (SQLite stores DATETIME as text in its own format)."""
        if self._compiled_upsert is None:
            dialect = self.engine.dialect
            if self.dialect == "sqlite":
                # Named placeholders, so that rows can be dicts (the default is `?`).
                dialect = sqlite.dialect(paramstyle="named")
            sql = str(self._upsert_statement().compile(dialect=dialect, column_keys=_UPSERT_KEYS))
            processors = []
            for index, key in enumerate(_RECORD_FIELDS):
                process = bind_processor(images.c[key], self.engine.dialect)
                if process is not None:
                    processors.append((index, process))
            rows_insert = pick = None
            if self.dialect != "sqlite":
                try:
                    rows_insert = RowsInsert(sql)
                except ValueError:
                    # A statement form the driver's pattern does not know (say,
                    # MySQL 8's `AS new` with an older pymysql): its executemany
                    # then sends it row by row, slower but right.
                    log.warning("upserts go one row at a time: %s", sql.split(" VALUES")[0])
                else:
                    pick = itemgetter(*[_UPSERT_KEYS.index(k) for k in rows_insert.columns])
            self._compiled_upsert = _CompiledUpsert(sql, processors, rows_insert, pick)
        return self._compiled_upsert

    def _stamp_text(self, now: dt.datetime) -> Any:
        process = self._stamp_process
        return process(now) if process is not None else now.isoformat(" ")

    def _upsert_statement(self) -> Any:
        c = images.c
        stmt: Any
        if self.dialect == "sqlite":
            stmt = sqlite.insert(images)
            new = stmt.excluded
        else:
            stmt = mysql.insert(images)
            new = stmt.inserted
        same_content = c.sha256 == new.sha256
        # Another daemon (or the reconcile) recording the same content again must not
        # undo progress: an upload under way stays `uploading` with its claim, an
        # uploaded file stays `done`. New content drops the old claim: that upload is
        # of content no longer there.
        # Constants inlined, not bound: pymysql's executemany for INSERT … VALUES
        # cannot take parameters in the ON DUPLICATE KEY UPDATE part.
        pending: Any = literal_column(f"'{Status.PENDING}'")
        uploading: Any = literal_column(f"'{Status.UPLOADING}'")
        done: Any = literal_column(f"'{Status.DONE}'")
        keep_status = (
            same_content
            & (new.status == pending)
            & ((c.status == uploading) | ((c.status == done) & c.wp_url.is_not(None)))
        )
        # Evaluated before sha256 is assigned: MySQL's ON DUPLICATE KEY UPDATE reads
        # a column assigned earlier in the list as its new value.
        changes = {
            "status": case((keep_status, c.status), else_=new.status),
            "claimed_by": case((same_content, c.claimed_by), else_=null()),
            "claimed_until": case((same_content, c.claimed_until), else_=null()),
            # Before file_text_digest is assigned, which they compare with.
            **{name: _follow_file(c, new, name, i) for i, name in enumerate(TEXT_FIELDS)},
            # What the file said; for a row from before it was kept, what the row
            # says now (its values are kept this once, then follow the file).
            "file_text_digest": case(
                (
                    c.file_text_digest.is_(None),
                    text_digest_of(*(func.coalesce(c[n], new[n]) for n in TEXT_FIELDS)),
                ),
                else_=new.file_text_digest,
            ),
            "sha256": new.sha256,
            "size_bytes": new.size_bytes,
            "mtime_ns": new.mtime_ns,
            "mime_type": new.mime_type,
            "width": new.width,
            "height": new.height,
            "sidecar_mtime_ns": new.sidecar_mtime_ns,
            "attempts": new.attempts,
            "last_error": new.last_error,
            "next_attempt_at": new.next_attempt_at,
            "updated_at": new.updated_at,
            "created_at": func.coalesce(c.created_at, new.created_at),
        }
        if self.dialect == "sqlite":
            return stmt.on_conflict_do_update(index_elements=[c.file_name], set_=changes)
        # A list keeps the order (a dict would follow the table's column order).
        return stmt.on_duplicate_key_update(list(changes.items()))


def _follow_file(c: Any, new: Any, name: str, index: int) -> Any:
    """A text field as the upsert leaves it: what the file says now, unless a
    person (or the original service) put something else there. Told by the
    field's part of file_text_digest, what the file said last time: a row that
    still says that follows the file; any other value is kept."""
    still_the_files = c.file_text_digest.is_not(None) & (
        FieldDigest(c[name]) == part_of(c.file_text_digest, index)
    )
    return case((c[name].is_(None), new[name]), (still_the_files, new[name]), else_=c[name])
