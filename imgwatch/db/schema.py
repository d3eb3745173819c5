"""The tables, and the adoption of an existing `images` table.

The original service's five columns (id, file_name, title, description, wp_url) are
kept as they are; every column imgwatch adds is nullable or defaulted, so that it
can be added to a filled table.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from typing import Any

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
    func,
    inspect,
    literal,
    literal_column,
    null,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql.functions import FunctionElement

from imgwatch.errors import ConfigError
from imgwatch.model import FILE_NAME_MAX, KnownFile, Status
from imgwatch.textdigest import PART, TEXT_FIELDS

log = logging.getLogger(__name__)

# file_name is compared byte for byte on MySQL too: with the default
# case-insensitive collation `a.JPG` and `a.jpg` would collide, unlike on SQLite.
_FileName = String(FILE_NAME_MAX).with_variant(
    mysql.VARCHAR(FILE_NAME_MAX, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

metadata = MetaData()

COMPARE_INDEX = "ix_images_compare"
COMPARE_INDEX_DIALECTS = ("mysql", "mariadb")

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
    # From the image's own metadata or its sidecar file (files/metadata.py).
    Column("caption", Text),
    Column("alt_text", Text),
    Column("sidecar_mtime_ns", BigInteger),  # of `<file>.json` when last read
    Column("wp_media_id", BigInteger),
    # What the media item's text was last set to, and what the file itself said when
    # last read: imgwatch/textdigest.py. NULL: not known (rows from before they were).
    Column("wp_text_digest", String(64)),
    Column("file_text_digest", String(64)),
    Column("status", String(16), nullable=False, server_default=Status.PENDING.value),
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
    # What a reconcile reads of every row, in file_name order (db/images.py,
    # file_state_pages), all in one index: without it MySQL looks each row up in the
    # table by id as well: at a million rows, 1.9 s of server CPU instead of 1.0,
    # taken from the walk beside it when both share a host. SQLite reads its rows
    # in the reconcile's own processes, where the lookup costs little; it is spared
    # the index's upkeep on every write. The tuple of dialect names is documented
    # and honoured; the annotation says str only.
    Index(
        COMPARE_INDEX,
        "file_name",
        "size_bytes",
        "mtime_ns",
        "status",
        "sidecar_mtime_ns",
        "sha256",
    ).ddl_if(dialect=COMPARE_INDEX_DIALECTS),  # type: ignore[arg-type]
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

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

# What a daemon or a rescan is waiting for (model.ConditionKind), for `imgwatch
# status` in another process: uploads paused by a condition of WordPress (one row
# per process that pauses), deletions held by the mass-deletion guard (one row per
# database: the data's).
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


@dataclass(slots=True)
class SchemaChange:
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


def changes_needed(conn: Connection, display_url: str) -> list[SchemaChange]:
    """What the database lacks of TABLES. An images table without file_name is not
    one imgwatch may touch."""
    insp = inspect(conn)
    changes = [SchemaChange(t) for t in TABLES if not insp.has_table(t.name)]
    if any(c.table is images for c in changes):
        return changes
    present = {c["name"] for c in insp.get_columns(images.name)}
    if "file_name" not in present:
        raise ConfigError(
            f"table images in {display_url} has no file_name column: "
            "it is not an imgwatch table, refusing to change it"
        )
    indexes = {ix["name"] for ix in insp.get_indexes(images.name)}
    columns = [c for c in images.columns if c.name not in present]
    missing_indexes = [
        ix
        for ix in images.indexes
        if ix.name not in indexes
        and (ix.name != COMPARE_INDEX or conn.dialect.name in COMPARE_INDEX_DIALECTS)
    ]
    if columns or missing_indexes:
        changes.append(SchemaChange(images, columns, missing_indexes))
    return changes


def adopt(engine: Engine, changes: list[SchemaChange]) -> list[Index]:
    """Add the columns and indexes an existing images table lacks, in one
    transaction; all but the compare index, returned if it is lacking: it only
    makes reconciles faster, and is added on its own (db/engine.py)."""
    compare: list[Index] = []
    with engine.begin() as conn:
        for change in changes:
            for column in change.columns:
                ddl = CreateColumn(column).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {images.name} ADD COLUMN {ddl}"))
            for index in change.indexes:
                if index.name == COMPARE_INDEX:
                    compare.append(index)
                else:
                    index.create(conn)
            if change.columns:
                names = ", ".join(c.name for c in change.columns)
                log.info("adopted existing table images: added columns %s", names)
    return compare


def column(name: str, absent: Collection[str] = ()) -> Any:
    """A column; when the table (the original service's, or an older imgwatch's,
    looked at without being adopted) does not have it yet, what adopting it would
    put there: `pending` for status (its server default), NULL for the others."""
    if name not in absent:
        return images.c[name]
    return (literal(Status.PENDING.value) if name == "status" else null()).label(name)


@cache
def known_columns(absent: frozenset[str] = frozenset()) -> tuple[Any, ...]:
    """file_name, then KnownFile's fields in order."""
    return tuple(column(name, absent) for name in ("file_name", *KnownFile._fields))


class FieldDigest(FunctionElement[str]):
    """textdigest.field_digest() of a text column, computed by the database."""

    type = String()
    name = "imgwatch_field_digest"
    inherit_cache = True


@compiles(FieldDigest)
def _field_digest_sqlite(element: FieldDigest, compiler: Any, **kw: Any) -> str:
    # The function db/engine.py registers on every SQLite connection.
    return f"imgwatch_field_digest({compiler.process(element.clauses, **kw)})"


@compiles(FieldDigest, "mysql")
@compiles(FieldDigest, "mariadb")
def _field_digest_mysql(element: FieldDigest, compiler: Any, **kw: Any) -> str:
    # Written out, not bound: no parameters may stand in an upsert's ON DUPLICATE
    # KEY UPDATE part (see db/upsert.py). Converted: SHA2() hashes a column's own
    # bytes, and a column of the original service's may be latin1.
    value = compiler.process(element.clauses, **kw)
    return f"LEFT(SHA2(CONVERT(COALESCE({value}, '') USING utf8mb4), 256), {PART})"


def text_digest_sql(table: Any) -> Any:
    """textdigest.text_digest() of a row's four fields, computed by the database."""
    return text_digest_of(*(table.c[name] for name in TEXT_FIELDS))


def text_digest_of(*values: Any) -> Any:
    parts = [FieldDigest(value) for value in values]
    return parts[0] + parts[1] + parts[2] + parts[3]


def part_of(digest: Any, index: int) -> Any:
    """One field's part of a stored digest."""
    return func.substr(digest, literal_column(str(index * PART + 1)), literal_column(str(PART)))
