"""The `images` table: definition, adoption of the original service's table, writes.

Only this module speaks SQL. It works the same on SQLite and MySQL/MariaDB; the
few dialect differences (upsert syntax, collation, pragmas) are kept here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter
from typing import Any, Final, NamedTuple, TypeVar

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    inspect,
    literal,
    literal_column,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql.functions import FunctionElement

from imgwatch.db.rowsinsert import RowsInsert, literal_maker, no_backslash_escapes
from imgwatch.errors import ConfigError, DatabaseUnavailable
from imgwatch.textdigest import PART, TEXT_FIELDS, as_text, field_digest

log = logging.getLogger(__name__)

T = TypeVar("T")

# A row's place in its life: pending -> uploading -> done; or failed, rejected, missing.
PENDING = "pending"
UPLOADING = "uploading"
DONE = "done"
FAILED = "failed"
REJECTED = "rejected"
MISSING = "missing"
STATUSES = (PENDING, UPLOADING, DONE, FAILED, REJECTED, MISSING)

FILE_NAME_MAX = 255
# MySQL errors that mean the settings are wrong, not that the server is down:
# 1044/1045 access denied, 1049 unknown database.
_MYSQL_CONFIG_ERRORS = {1044, 1045, 1049}
# Rows per statement when touching many ids at once (keeps IN (...) lists small).
_ID_CHUNK = 1000

# file_name is compared byte for byte on MySQL too: with the default
# case-insensitive collation `a.JPG` and `a.jpg` would collide, unlike on SQLite.
_FileName = String(FILE_NAME_MAX).with_variant(
    mysql.VARCHAR(FILE_NAME_MAX, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

metadata = MetaData()

images = Table(
    "images",
    metadata,
    # The original service's five columns, unchanged.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file_name", _FileName, nullable=False, unique=True),
    Column("title", String(255)),
    Column("description", Text),
    Column("wp_url", String(255)),
    # What the daemon adds; all nullable or defaulted so they can be added to a filled table.
    Column("sha256", CHAR(64)),
    Column("size_bytes", BigInteger),
    Column("mtime_ns", BigInteger),
    Column("mime_type", String(64)),
    Column("width", Integer),
    Column("height", Integer),
    # From the image's own metadata or its sidecar file (see metadata.py).
    Column("caption", Text),
    Column("alt_text", Text),
    Column("sidecar_mtime_ns", BigInteger),  # of `<file>.json` when last read
    Column("wp_media_id", BigInteger),
    # What the media item's text was last set to, and what the file itself said when
    # last read: imgwatch/textdigest.py. NULL: not known (rows from before they were).
    Column("wp_text_digest", String(64)),
    Column("file_text_digest", String(64)),
    Column("status", String(16), nullable=False, server_default=PENDING),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
    # Who is uploading the row, and until when the claim holds: several daemons may
    # share one database, and a daemon killed mid-upload must not block the row.
    Column("claimed_by", String(128)),
    Column("claimed_until", DateTime),
    Index("ix_images_status", "status"),
    Index("ix_images_sha256", "sha256"),
    # Rows sharing a media item: whose text it shows, whether it may be deleted.
    Index("ix_images_wp_media_id", "wp_media_id"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

ORIGINAL_COLUMNS = ("id", "file_name", "title", "description", "wp_url")

# One row per reconcile, for `imgwatch status` (which runs in another process than
# the daemon that scanned). Only the most recent SCANS_KEPT are kept.
SCANS_KEPT = 1000
scans = Table(
    "imgwatch_scans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reason", String(32), nullable=False),  # startup, periodic, rescan, …
    Column("host", String(128)),
    Column("started_at", DateTime, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("new", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("missing", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("interrupted", Boolean, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)


# What a daemon or a rescan is waiting for, for `imgwatch status` in another process:
# uploads paused by a condition of WordPress (one row per process that pauses), and
# deletions held by the mass-deletion guard (one row per database: the data's).
UPLOADS_PAUSED = "uploads_paused"
DELETIONS_HELD = "deletions_held"
conditions = Table(
    "imgwatch_conditions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("owner", String(128), nullable=False),  # host:pid, or "" for the data's own
    Column("reason", String(32), nullable=False),  # a short fixed name, as in metrics
    Column("message", Text, nullable=False),
    Column("rows", Integer),  # deletions held: how many rows
    Column("since", DateTime, nullable=False),
    Column("checked_at", DateTime, nullable=False),  # last seen to hold
    Column("confirmed_at", DateTime),  # deletions held: an operator said to apply them
    UniqueConstraint("kind", "owner", name="uq_imgwatch_conditions"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
TABLES = (images, scans, conditions)


@dataclass(frozen=True, slots=True)
class Condition:
    """One row of imgwatch_conditions."""

    kind: str
    owner: str
    reason: str
    message: str
    since: dt.datetime
    checked_at: dt.datetime
    rows: int | None = None
    confirmed_at: dt.datetime | None = None


def _column(name: str, absent: Collection[str] = ()) -> Any:
    """A column; when the table (the original service's, or an older imgwatch's,
    looked at without being adopted) does not have it yet, what adopting it would
    put there: `pending` for status (its server default), NULL for the others."""
    if name not in absent:
        return images.c[name]
    return (literal(PENDING) if name == "status" else null()).label(name)


def _known_columns(absent: Collection[str] = ()) -> tuple[Any, ...]:
    """file_name, then KnownFile's fields in order."""
    return tuple(_column(name, absent) for name in ("file_name", *KnownFile._fields))


# What a reconcile compares with the disk, one plain tuple per row (see file_states).
# name, size, mtime, state, id, sidecar mtime
FileState = tuple[str, int | None, int | None, int, int, int | None]
# Final, so that mypy knows each element's type when a tuple is indexed with them.
STATE_SIZE: Final = 1
STATE_MTIME: Final = 2
STATE: Final = 3
STATE_ID: Final = 4
STATE_SIDECAR: Final = 5
# STATE values: the file's facts were read (size and mtime say whether it changed),
# still to be read (pending without a hash, failed), or marked missing.
SETTLED, UNSETTLED, GONE = 1, 0, 2


def _states_query(absent: Collection[str] = ()) -> Any:
    status, sha256 = _column("status", absent), _column("sha256", absent)
    return select(
        images.c.file_name,
        _column("size_bytes", absent),
        _column("mtime_ns", absent),
        case(
            (status == MISSING, GONE),
            ((sha256.is_not(None)) | (status == REJECTED), SETTLED),
            else_=UNSETTLED,
        ),
        images.c.id,
        _column("sidecar_mtime_ns", absent),
    )


class _FieldDigest(FunctionElement[str]):
    """textdigest.field_digest() of a text column, computed by the database."""

    type = String()
    name = "imgwatch_field_digest"
    inherit_cache = True


@compiles(_FieldDigest)
def _field_digest_sqlite(element: _FieldDigest, compiler: Any, **kw: Any) -> str:
    return f"imgwatch_field_digest({compiler.process(element.clauses, **kw)})"


@compiles(_FieldDigest, "mysql")
@compiles(_FieldDigest, "mariadb")
def _field_digest_mysql(element: _FieldDigest, compiler: Any, **kw: Any) -> str:
    # Written out, not bound: no parameters may stand in an upsert's ON DUPLICATE
    # KEY UPDATE part (see _upsert_statement). Converted: SHA2() hashes a column's
    # own bytes, and a column of the original service's may be latin1.
    column = compiler.process(element.clauses, **kw)
    return f"LEFT(SHA2(CONVERT(COALESCE({column}, '') USING utf8mb4), 256), {PART})"


def _text_digest_sql(table: Any) -> Any:
    """textdigest.text_digest() of a row's four fields, computed by the database."""
    return _text_digest_of(*(table.c[name] for name in TEXT_FIELDS))


def _text_digest_of(*values: Any) -> Any:
    parts = [_FieldDigest(value) for value in values]
    return parts[0] + parts[1] + parts[2] + parts[3]


def _part_of(digest: Any, index: int) -> Any:
    """One field's part of a stored digest."""
    return func.substr(digest, literal_column(str(index * PART + 1)), literal_column(str(PART)))


def _text_or_none(value: object) -> str | None:
    return None if value is None else as_text(value)


def utcnow() -> dt.datetime:
    """Naive UTC, as stored in DATETIME columns on both backends."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class KnownFile(NamedTuple):
    """The part of a row the scanner compares with the disk."""

    id: int
    size_bytes: int | None
    mtime_ns: int | None
    status: str
    sha256: str | None
    wp_url: str | None
    wp_media_id: int | None = None
    sidecar_mtime_ns: int | None = None


class UploadJob(NamedTuple):
    """A row that needs its file in the media library."""

    id: int
    file_name: str
    sha256: str
    mime_type: str
    title: str | None
    description: str | None
    wp_media_id: int | None
    attempts: int
    caption: str | None = None
    alt_text: str | None = None


class TextUpdate(NamedTuple):
    """A row whose words differ from what its media item was last given."""

    id: int
    file_name: str
    wp_media_id: int
    title: str | None
    description: str | None
    caption: str | None
    alt_text: str | None
    wp_text_digest: str  # what was sent; textdigest.UNKNOWN: send everything

    @property
    def values(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.title, self.description, self.caption, self.alt_text)


@dataclass(slots=True)
class ImageRecord:
    """One file's row as the scanner wants it written."""

    file_name: str
    title: str | None
    description: str | None
    status: str
    sha256: str | None = None
    size_bytes: int | None = None
    mtime_ns: int | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    last_error: str | None = None
    next_attempt_at: dt.datetime | None = None
    caption: str | None = None
    alt_text: str | None = None
    sidecar_mtime_ns: int | None = None
    file_text_digest: str | None = None  # of the four fields as the file gave them
    # Not a column: the fields a sidecar file gave, which replace what the row has.
    sidecar_fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type[ImageRecord], tuple[Any, ...]]:
        # Pickled as its values: reading processes send thousands, and a slots
        # dataclass's own pickling looks its fields up again for every record.
        return (ImageRecord, _all_record_values(self))


# A record's values in one C call: dataclasses.asdict copies each value deeply, which
# cost a bulk import as much as the database driver did.
_RECORD_FIELDS = tuple(f.name for f in fields(ImageRecord) if f.name in images.c)
_record_values = attrgetter(*_RECORD_FIELDS)
_all_record_values = attrgetter(*(f.name for f in fields(ImageRecord)))
# An upsert row: a record's values, then what the upsert adds to each row.
_UPSERT_KEYS = [*_RECORD_FIELDS, "created_at", "updated_at", "attempts"]


class _Quoting(NamedTuple):
    """How values are quoted on MySQL connections in one mode. The mode is all that
    differs between the pool's connections: they share the URL, so the charset."""

    no_backslash_escapes: bool
    literal: Callable[[object], str]


class PreparedRows(NamedTuple):
    """Rows ready to be written by ImageStore.write_prepared."""

    records: Sequence[ImageRecord]
    values: list[tuple[Any, ...]]  # in _UPSERT_KEYS order, converted for the driver
    texts: list[str]  # MySQL: the statements, quoted as `quoting` says; else empty
    quoting: _Quoting | None


class _CompiledUpsert(NamedTuple):
    sql: str
    processors: list[tuple[int, Any]]  # (index in a row, SQLAlchemy's conversion)
    rows_insert: RowsInsert | None  # MySQL: the statement's many-rows form
    pick: Any  # MySQL: a row's values in the statement's column order


def describe_db_error(exc: BaseException) -> str:
    """The driver's own words, first line only (no SQL, no parameters, no URL)."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}".splitlines()[0]
    return (str(orig).splitlines() or [type(orig).__name__])[0]


def _mysql_error_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


@dataclass(slots=True)
class _SchemaChange:
    """A table to create, or (adopt) columns and indexes to add to an existing one."""

    table: Table
    columns: list[Column[Any]] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)

    @property
    def adopt(self) -> bool:
        return bool(self.columns or self.indexes)

    def describe(self) -> str:
        if not self.adopt:
            return f"create table {self.table.name}"
        parts = []
        if self.columns:
            parts.append("columns " + ", ".join(c.name for c in self.columns))
        if self.indexes:
            parts.append("indexes " + ", ".join(str(i.name) for i in self.indexes))
        return "add " + " and ".join(parts) + f" to table {self.table.name}"


class ImageStore:
    """The images table on one database."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.display_url = url.render_as_string(hide_password=True)
        self.engine = _create_engine(url, MYSQL_IO_TIMEOUT)
        self.dialect = self.engine.dialect.name
        # Raised by a driver cursor used directly (file_states), where SQLAlchemy does
        # not wrap errors in DBAPIError.
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self._compiled_upsert: _CompiledUpsert | None = None
        # MySQL: the quoting for each NO_BACKSLASH_ESCAPES mode seen, and the one the
        # last write used (see prepare_upsert).
        self._quotings: dict[bool, _Quoting] = {}
        self._quoting: _Quoting | None = None
        self._stamp_process = _bind_processor(images.c.updated_at, self.engine.dialect)
        # What open(create=False) left undone, in words and in parts.
        self.schema_changes: list[str] = []
        self.missing_tables: set[str] = set()
        self.absent_columns: set[str] = set()
        self._states_q = _states_query()
        self._known_cols = _known_columns()
        # Told of every batch of rows once committed (the daemon's metrics).
        self.on_written: Callable[[Sequence[ImageRecord]], None] | None = None
        if self.dialect not in {"sqlite", "mysql", "mariadb"}:
            raise ConfigError(f"unsupported database {self.dialect!r}: use SQLite or MySQL/MariaDB")

    def open(self, *, create: bool = True) -> None:
        """Connect, then create the tables or adopt an existing images table. Safe to
        repeat. With create=False nothing is changed: `schema_changes` then says what
        open() would have done (for check, status and dry runs)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(select(1))
                changes = self._schema_changes(conn)
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
            self.absent_columns = {
                col.name for c in changes if c.table is images for col in c.columns
            }
            self._states_q = _states_query(self.absent_columns)
            self._known_cols = _known_columns(self.absent_columns)
        except DBAPIError as exc:
            self.engine.dispose()
            reason = describe_db_error(exc)
            if self.dialect == "sqlite" or _mysql_error_code(exc) in _MYSQL_CONFIG_ERRORS:
                raise ConfigError(f"cannot use database {self.display_url}: {reason}") from None
            raise DatabaseUnavailable(
                f"database {self.display_url} is unreachable: {reason}"
            ) from None

    @property
    def images_unadopted(self) -> bool:
        """The images table as the original service left it, not adopted yet (an older
        imgwatch's lacks only some columns; reads go around those)."""
        return "status" in self.absent_columns

    def close(self) -> None:
        self.engine.dispose()
        self._quotings, self._quoting = {}, None

    def ping(self) -> str | None:
        """None if the database answers now, else why not (one line, no password)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except (DBAPIError, self._driver_error) as exc:
            return f"database {self.display_url} is unreachable: {describe_db_error(exc)}"
        return None

    def _schema_changes(self, conn: Connection) -> list[_SchemaChange]:
        insp = inspect(conn)
        changes = [_SchemaChange(t) for t in TABLES if not insp.has_table(t.name)]
        if any(c.table is images for c in changes):
            return changes
        present = {c["name"] for c in insp.get_columns(images.name)}
        if "file_name" not in present:
            raise ConfigError(
                f"table images in {self.display_url} has no file_name column: "
                "it is not an imgwatch table, refusing to change it"
            )
        indexes = {ix["name"] for ix in insp.get_indexes(images.name)}
        columns = [c for c in images.columns if c.name not in present]
        missing_indexes = [ix for ix in images.indexes if ix.name not in indexes]
        if columns or missing_indexes:
            changes.append(_SchemaChange(images, columns, missing_indexes))
        return changes

    def _adopt(self, changes: list[_SchemaChange]) -> None:
        """Add the columns and indexes an existing images table lacks.

        On MySQL, over a connection without the read timeout: indexing a large
        table can take longer than any limit that is useful against a hung
        server, and an ALTER given up on is rolled back, to be tried (and given up
        on) again at every start.
        """
        if not changes:
            return
        engine = (
            self.engine if self.dialect == "sqlite" else _create_engine(self.url, io_timeout=None)
        )
        try:
            with engine.begin() as conn:
                for change in changes:
                    for column in change.columns:
                        ddl = CreateColumn(column).compile(dialect=conn.dialect)
                        conn.execute(text(f"ALTER TABLE {images.name} ADD COLUMN {ddl}"))
                    for index in change.indexes:
                        index.create(conn)
                    if change.columns:
                        names = ", ".join(c.name for c in change.columns)
                        log.info("adopted existing table images: added columns %s", names)
        finally:
            if engine is not self.engine:
                engine.dispose()

    # --- reads -----------------------------------------------------------------

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        """Database errors after open() become one DatabaseUnavailable line."""
        try:
            yield
        except (DBAPIError, self._driver_error) as exc:
            raise DatabaseUnavailable(
                f"database {self.display_url}: {action} failed: {describe_db_error(exc)}"
            ) from None

    def file_states(self) -> dict[str, FileState]:
        """Every row as a FileState, by name, in one query: what a reconcile needs to
        tell unchanged, changed, new and gone files apart without reading them."""
        with self.guard("reading known files"), self.engine.connect() as conn:
            result = conn.execute(self._states_q)
            try:
                # The driver's plain tuples: for 100,000 rows SQLAlchemy's per-row
                # processing, and named tuples, cost as much as walking the disk.
                rows: list[FileState] = list(result.cursor.fetchall())
            finally:
                result.close()
        return {row[0]: row for row in rows}

    def due_uploads(self, *, include_scheduled: bool = False, owner: str = "") -> list[UploadJob]:
        """Rows whose file should be in WordPress and is not (yet).

        pending/uploading rows, `done` rows without a URL (recorded while WordPress
        was not configured), and transiently failed rows whose time has come (all of
        them with include_scheduled). Permanently failed rows (no next_attempt_at)
        wait for their file to change. With owner, rows another uploader holds a
        live claim on are left out: they are being uploaded, not due.
        """
        c = images.c
        now = utcnow()
        failed_due = (c.status == FAILED) & c.next_attempt_at.is_not(None)
        if not include_scheduled:
            failed_due = failed_due & (c.next_attempt_at <= now)
        query = (
            select(
                c.id,
                c.file_name,
                c.sha256,
                c.mime_type,
                c.title,
                c.description,
                c.wp_media_id,
                c.attempts,
                _column("caption", self.absent_columns),
                _column("alt_text", self.absent_columns),
            )
            .where(c.sha256.is_not(None))
            .where(
                c.status.in_([PENDING, UPLOADING])
                | ((c.status == DONE) & c.wp_url.is_(None))
                | failed_due
            )
            .order_by(c.id)
        )
        if owner:
            query = query.where(
                c.claimed_until.is_(None) | (c.claimed_until < now) | (c.claimed_by == owner)
            )
        with self.guard("reading uploads due"), self.engine.connect() as conn:
            return [UploadJob._make(row) for row in conn.execute(query)]

    def mark_uploading(self, job: UploadJob, owner: str = "", lease: float = 900.0) -> bool:
        """Claim the row for upload until now + lease seconds.

        False if its content changed meanwhile, or another uploader holds an
        unexpired claim on it (another daemon on the same database). The claim is
        one conditional UPDATE, so of two daemons racing for a row exactly one wins.
        """
        c = images.c
        now = utcnow()
        # The claim columns alone decide: a finished upload clears them, and status
        # may be rewritten by another daemon recording the same file meanwhile.
        free = c.claimed_until.is_(None) | (c.claimed_until < now) | (c.claimed_by == owner)
        # Still to do: a job read a while ago may have been finished since.
        due = c.status.in_([PENDING, UPLOADING, FAILED]) | ((c.status == DONE) & c.wp_url.is_(None))
        stmt = (
            update(images)
            .where(c.id == job.id, c.sha256 == job.sha256)
            .where(free, due)
            .values(
                status=UPLOADING,
                claimed_by=owner or None,
                claimed_until=now + dt.timedelta(seconds=lease),
                updated_at=now,
            )
        )
        with self.guard("claiming a row for upload"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def retry_failed_now(self) -> int:
        """Uploads that failed for a passing reason are due now, not at their schedule."""
        c = images.c
        now = utcnow()
        stmt = (
            update(images)
            .where(c.status == FAILED, c.next_attempt_at.is_not(None), c.next_attempt_at > now)
            .values(next_attempt_at=now)
        )
        with self.guard("rescheduling failed uploads"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def release_claims_of(self, owners: Sequence[str]) -> int:
        """Let go of claims held by uploaders known to be dead (this host's old pids)."""
        if not owners:
            return 0
        c = images.c
        stmt = (
            update(images)
            .where(c.claimed_until.is_not(None), c.claimed_by.in_(list(owners)))
            .values(claimed_until=None)
        )
        with self.guard("releasing stale claims"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def claim_owners(self, prefix: str) -> list[str]:
        """Distinct claimed_by values of claimed rows that start with prefix."""
        c = images.c
        query = (
            select(c.claimed_by)
            .where(
                c.claimed_until.is_not(None),
                c.claimed_by.like(_like_escape(prefix) + "%", escape="!"),
            )
            .distinct()
        )
        with self.guard("reading claims"), self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def record_upload(self, job: UploadJob, media_id: int, url: str, text_digest: str) -> bool:
        """The file is in WordPress, its words as text_digest says; False if the row's
        content changed meanwhile."""
        return self._update_job(
            job,
            status=DONE,
            wp_media_id=media_id,
            wp_url=url,
            wp_text_digest=text_digest,
            attempts=0,
            last_error=None,
            next_attempt_at=None,
            claimed_by=None,
            claimed_until=None,
        )

    def release_upload(self, job: UploadJob, owner: str) -> bool:
        """Give a claimed row back to wait: the site, not the file, stopped its upload.
        Nothing is counted against the file; the row stays due. Only while the claim
        is still owner's: another daemon may have taken it after the lease."""
        c = images.c
        stmt = (
            update(images)
            .where(c.id == job.id, c.sha256 == job.sha256, c.claimed_by == owner)
            .values(status=PENDING, claimed_by=None, claimed_until=None, updated_at=utcnow())
        )
        with self.guard("giving back an upload"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def record_upload_failure(
        self, job: UploadJob, reason: str, next_attempt_at: dt.datetime | None
    ) -> bool:
        """Upload failed: `failed`, why, and when to try again (None: when the file changes)."""
        return self._update_job(
            job,
            status=FAILED,
            attempts=images.c.attempts + 1,
            last_error=reason,
            next_attempt_at=next_attempt_at,
            claimed_by=None,
            claimed_until=None,
        )

    def _update_job(self, job: UploadJob, **values: Any) -> bool:
        c = images.c
        stmt = (
            update(images)
            .where(c.id == job.id, c.sha256 == job.sha256)
            .values(updated_at=utcnow(), **values)
        )
        with self.guard("updating upload state"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    # --- the media items' words ---------------------------------------------------

    def text_updates_due(
        self, *, names: Sequence[str] | None = None, after_id: int = 0, limit: int = 500
    ) -> list[TextUpdate]:
        """Rows whose words differ from what their media item was last given, in id
        order from after_id. Of rows sharing one media item (identical content under
        two names) only the first one still there speaks for it: the others' words
        stay in their rows, and one of them takes over when the first is gone."""
        if "wp_text_digest" in self.absent_columns:
            return []
        c = images.c
        earlier = images.alias("earlier")
        first = ~exists().where(
            earlier.c.wp_media_id == c.wp_media_id,
            earlier.c.id < c.id,
            earlier.c.status == DONE,
        )
        query = (
            select(
                c.id,
                c.file_name,
                c.wp_media_id,
                c.title,
                c.description,
                c.caption,
                c.alt_text,
                c.wp_text_digest,
            )
            .where(
                c.status == DONE,
                c.id > after_id,
                c.wp_media_id.is_not(None),
                c.wp_url.is_not(None),
                c.wp_text_digest.is_not(None),
                c.wp_text_digest != _text_digest_sql(images),
                first,
            )
            .order_by(c.id)
            .limit(limit)
        )
        if names is not None:
            query = query.where(c.file_name.in_(list(names)))
        with self.guard("reading text updates due"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        # Words as text, whatever a person stored in the columns (SQLite keeps blobs).
        return [
            TextUpdate(
                row[0],
                row[1],
                row[2],
                _text_or_none(row[3]),
                _text_or_none(row[4]),
                _text_or_none(row[5]),
                _text_or_none(row[6]),
                row[7],
            )
            for row in rows
        ]

    def record_text_sent(self, row_id: int, media_id: int, digest: str) -> bool:
        """The media item was given the words this digest stands for."""
        c = images.c
        stmt = (
            update(images)
            .where(c.id == row_id, c.wp_media_id == media_id)
            .values(wp_text_digest=digest)
        )
        with self.guard("recording text sent"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def baseline_text_digests(self) -> int:
        """Rows uploaded before imgwatch kept what it sent: their words as they are now
        count as what WordPress has (nothing is sent for them until they change)."""
        if "wp_text_digest" in self.absent_columns:
            return 0
        c = images.c
        stmt = (
            update(images)
            .where(c.wp_text_digest.is_(None), c.wp_media_id.is_not(None), c.status == DONE)
            .values(wp_text_digest=_text_digest_sql(images))
        )
        with self.guard("recording what WordPress has"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def media_deleted(self, media_id: int, *, reupload: bool) -> list[str]:
        """A person deleted the media item in WordPress. Its rows are uploaded again
        (the folder is the source of truth), or, with reupload=False, failed with the
        reason until `imgwatch retry`. Returns their names."""
        c = images.c
        now = utcnow()
        which = (c.wp_media_id == media_id) & (c.status == DONE)
        forgotten = {"wp_media_id": None, "wp_url": None, "wp_text_digest": None}
        values: dict[str, Any] = {
            "status": PENDING,
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
            "claimed_by": None,
            "claimed_until": None,
        }
        if not reupload:
            values = {
                "status": FAILED,
                "last_error": f"media {media_id} was deleted in WordPress; not uploaded "
                "again (IMGWATCH_WP_REUPLOAD_DELETED=false): imgwatch retry uploads it",
                "next_attempt_at": None,
            }
        with self.guard("noting a deleted media item"), self.engine.begin() as conn:
            names = list(conn.execute(select(c.file_name).where(which)).scalars())
            conn.execute(update(images).where(which).values(updated_at=now, **forgotten, **values))
        return names

    def first_user(self, media_id: int) -> int | None:
        """The lowest id of the rows done with this media item, or None."""
        c = images.c
        query = select(func.min(c.id)).where(c.wp_media_id == media_id, c.status == DONE)
        with self.guard("reading who shares a media item"), self.engine.connect() as conn:
            first: int | None = conn.execute(query).scalar()
        return first

    def media_in_use(self, media_id: int, except_id: int, sha256: str | None = None) -> bool:
        """Does any other row point at this attachment (shared identical content)?
        With sha256: or will, being a row of that content waiting for its upload
        (which finds the item by its slug and links to it)."""
        c = images.c
        users = c.wp_media_id == media_id
        if sha256 is not None:
            waiting = c.status.in_([PENDING, UPLOADING, FAILED]) | (
                (c.status == DONE) & c.wp_url.is_(None)
            )
            users = users | ((c.sha256 == sha256) & waiting)
        query = select(c.id).where(users, c.id != except_id).limit(1)
        with self.guard("checking media use"), self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def count_live(self) -> int:
        """Rows whose file was there when last seen (not missing)."""
        query = select(func.count()).select_from(images).where(images.c.status != MISSING)
        with self.guard("counting rows"), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_rows(self) -> int:
        with self.guard("counting rows"), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(images)).scalar_one())

    def counts_by_status(self) -> dict[str, int]:
        query = select(images.c.status, func.count()).group_by(images.c.status)
        with self.guard("counting rows"), self.engine.connect() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    def get(self, file_name: str) -> dict[str, Any] | None:
        """One row as a dict, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(images).where(images.c.file_name == file_name)).first()
        return dict(row._mapping) if row is not None else None

    def all_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(images).order_by(images.c.id))]

    # --- conditions: what a process is waiting for -------------------------------

    def conditions(self) -> list[Condition]:
        """Every condition recorded, oldest first."""
        c = conditions.c
        query = select(
            c.kind, c.owner, c.reason, c.message, c.since, c.checked_at, c.rows, c.confirmed_at
        ).order_by(c.id)
        with self.guard("reading conditions"), self.engine.connect() as conn:
            return [Condition(*row) for row in conn.execute(query)]

    def set_condition(self, condition: Condition, *, keep_confirmation: bool = True) -> None:
        """Record (or refresh) a condition; its kind and owner say which one. An
        operator's confirmation already given is kept, unless told otherwise."""
        c = conditions.c
        values: dict[str, Any] = {
            "reason": condition.reason[:32],
            "message": condition.message,
            "rows": condition.rows,
            "since": condition.since,
            "checked_at": condition.checked_at,
        }
        if not keep_confirmation:
            values["confirmed_at"] = None
        which = (c.kind == condition.kind) & (c.owner == condition.owner[:128])
        refresh = update(conditions).where(which).values(**values)
        insert = conditions.insert().values(
            kind=condition.kind, owner=condition.owner[:128], **values
        )
        with self.guard("recording a condition"):
            with self.engine.begin() as conn:
                if conn.execute(refresh).rowcount:
                    return
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert)
            except IntegrityError:  # another process recorded it first: refresh theirs
                with self.engine.begin() as conn:
                    conn.execute(refresh)

    def clear_condition(self, kind: str, owners: Sequence[str]) -> int:
        """The condition is over (or its process is dead)."""
        if not owners:
            return 0
        c = conditions.c
        stmt = delete(conditions).where(c.kind == kind, c.owner.in_([o[:128] for o in owners]))
        with self.guard("clearing a condition"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def confirm_held_deletions(self) -> int:
        """An operator says the held deletions are meant: the next reconcile applies them."""
        c = conditions.c
        stmt = (
            update(conditions)
            .where(c.kind == DELETIONS_HELD, c.confirmed_at.is_(None))
            .values(confirmed_at=utcnow())
        )
        with self.guard("confirming held deletions"), self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    # --- writes ----------------------------------------------------------------

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
        with self.guard("writing rows"), self.engine.begin() as conn:
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
                process = _bind_processor(images.c[key], self.engine.dialect)
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
        pending: Any = literal_column(f"'{PENDING}'")
        uploading: Any = literal_column(f"'{UPLOADING}'")
        done: Any = literal_column(f"'{DONE}'")
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
            **{name: self._follow_file(c, new, name, i) for i, name in enumerate(TEXT_FIELDS)},
            # What the file said; for a row from before it was kept, what the row
            # says now (its values are kept this once, then follow the file).
            "file_text_digest": case(
                (
                    c.file_text_digest.is_(None),
                    _text_digest_of(*(func.coalesce(c[n], new[n]) for n in TEXT_FIELDS)),
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

    @staticmethod
    def _follow_file(c: Any, new: Any, name: str, index: int) -> Any:
        """A text field as the upsert leaves it: what the file says now, unless a
        person (or the original service) put something else there. Told by the
        field's part of file_text_digest, what the file said last time: a row that
        still says that follows the file; any other value is kept."""
        still_the_files = c.file_text_digest.is_not(None) & (
            _FieldDigest(c[name]) == _part_of(c.file_text_digest, index)
        )
        return case((c[name].is_(None), new[name]), (still_the_files, new[name]), else_=c[name])

    def mark_missing(
        self,
        ids: Sequence[int],
        *,
        names: Sequence[str] | None = None,
        reason: str | None = None,
    ) -> int:
        """Rows whose file is gone: status `missing`, everything else kept (and the
        reason, when something is left to say, such as a purge that failed).

        With `names` (parallel to ids), a row is only marked while it still has that
        name: a row renamed since the caller looked (a file moved while a scan ran) is
        left alone.
        """
        count = 0
        now = utcnow()
        c = images.c
        with self.guard("marking rows missing"), self.engine.begin() as conn:
            for start in range(0, len(ids), _ID_CHUNK):
                stmt = update(images).where(c.id.in_(ids[start : start + _ID_CHUNK]))
                if names is not None:
                    stmt = stmt.where(c.file_name.in_(names[start : start + _ID_CHUNK]))
                values: dict[str, Any] = {"status": MISSING, "updated_at": now}
                if reason is not None:
                    values["last_error"] = reason
                count += conn.execute(stmt.values(**values)).rowcount
        return count

    def forget(self, ids: Iterable[int]) -> int:
        """Remove rows (the `forget`/`purge` delete policies)."""
        count = 0
        with self.guard("removing rows"), self.engine.begin() as conn:
            for chunk in chunks(list(ids), _ID_CHUNK):
                count += conn.execute(delete(images).where(images.c.id.in_(chunk))).rowcount
        return count

    def lookup(self, file_name: str) -> KnownFile | None:
        """One row's comparison fields, or None."""
        return self.lookup_many([file_name]).get(file_name)

    def lookup_many(self, file_names: Sequence[str]) -> dict[str, KnownFile]:
        """Comparison fields of the rows with these names, in one query."""
        if not file_names:
            return {}
        query = select(*self._known_cols).where(images.c.file_name.in_(list(file_names)))
        with self.guard("reading rows"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {row[0]: KnownFile._make(row[1:]) for row in rows}

    def rows_under(self, prefix: str) -> list[tuple[str, KnownFile]]:
        """(file_name, row) for every row whose file_name starts with prefix ("dir/")."""
        c = images.c
        pattern = _like_escape(prefix) + "%"
        query = select(*self._known_cols).where(c.file_name.like(pattern, escape="!"))
        with self.guard("reading rows of a directory"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(row[0], KnownFile._make(row[1:])) for row in rows]

    def rename(self, old: str, new: str) -> bool:
        """Give a moved file's row its new name; False if there is no such row or the
        new name already has one (then the caller treats old as gone and new as changed)."""
        c = images.c
        with self.guard("renaming a row"), self.engine.begin() as conn:
            if conn.execute(select(c.id).where(c.file_name == new)).first() is not None:
                return False
            result = conn.execute(
                update(images).where(c.file_name == old).values(file_name=new, updated_at=utcnow())
            )
            return result.rowcount > 0

    def rename_prefix(self, old_prefix: str, new_prefix: str) -> tuple[int, list[str]]:
        """A moved directory: every row under old_prefix moves under new_prefix.

        Returns how many moved, and the old names that could not (the new name is
        taken or too long): the caller treats those as gone.
        """
        c = images.c
        stuck: list[str] = []
        now = utcnow()
        pattern = _like_escape(old_prefix) + "%"
        with self.guard("renaming rows of a moved directory"), self.engine.begin() as conn:
            rows = conn.execute(
                select(c.id, c.file_name).where(c.file_name.like(pattern, escape="!"))
            ).all()
            taken = set(
                conn.execute(
                    select(c.file_name).where(
                        c.file_name.like(_like_escape(new_prefix) + "%", escape="!")
                    )
                ).scalars()
            )
            for row_id, name in rows:
                target = new_prefix + name[len(old_prefix) :]
                if target in taken or len(target) > FILE_NAME_MAX:
                    stuck.append(name)
                    continue
                conn.execute(
                    update(images).where(c.id == row_id).values(file_name=target, updated_at=now)
                )
        return len(rows) - len(stuck), stuck


def _bind_processor(column: Column[Any], dialect: Any) -> Any:
    """What SQLAlchemy does to a value for this column before the driver gets it."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _like_escape(value: str) -> str:
    # '!' rather than a backslash: MySQL reads a backslash in ESCAPE '\\' as a string escape.
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """items in slices of at most size (keeps IN (...) lists small)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# MySQL: seconds a query may go without a byte from the server before its connection
# is given up, and the outage handling (retries, one log line) takes over. Without
# it a server that hangs rather than refuses (a frozen VM, a partition that drops
# packets) blocks a worker for good. Longer than InnoDB's lock wait (50 s by
# default), which the server ends with an error of its own. A read_timeout or
# write_timeout in the database URL wins.
MYSQL_IO_TIMEOUT = 120


_IO_TIMEOUT_KEYS = ("read_timeout", "write_timeout")


def _create_engine(url: URL, io_timeout: int | None) -> Engine:
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
        return create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=timeouts)
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL: readers never block the writer, and a crash cannot corrupt the file.
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()
    # What MySQL's SHA2() does in _FieldDigest, for SQLite. It takes any value (a
    # blob a person stored): an exception there would fail every statement on the row.
    dbapi_conn.create_function("imgwatch_field_digest", 1, field_digest, deterministic=True)
