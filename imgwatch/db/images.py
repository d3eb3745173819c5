"""Rows by name: what the reconcile and the daemon's workers read and move."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import case, delete, func, literal_column, select, update
from sqlalchemy.engine import Connection

from imgwatch.db.engine import ID_CHUNK, Database, chunks, starts_with
from imgwatch.db.schema import column, images, known_columns
from imgwatch.model import (
    FACTS_READ,
    FILE_NAME_MAX,
    GONE,
    NOT_AN_IMAGE,
    TO_READ,
    FileState,
    KnownFile,
    NameRange,
    Status,
    utcnow,
)

# Rows per page of file_states: large enough that the query's cost is spread over
# many rows, small enough to be a few megabytes.
STATES_PAGE = 10_000


def _states_query(absent: frozenset[str]) -> Any:
    """file_states' query: the row state is files.decide.row_state(), computed by
    the database (a test holds the two to the same answers)."""
    status, sha256 = column("status", absent), column("sha256", absent)
    return select(
        images.c.file_name,
        column("size_bytes", absent),
        column("mtime_ns", absent),
        case(
            (status == Status.MISSING.value, GONE),
            (status == Status.REJECTED.value, NOT_AN_IMAGE),
            (sha256.is_not(None), FACTS_READ),
            else_=TO_READ,
        ).label("state"),
        images.c.id,
        column("sidecar_mtime_ns", absent),
    )


def _page(conn: Connection, paged: Any) -> tuple[list[FileState], str]:
    """A page of FileStates, and the name the next page starts after."""
    result = conn.execute(paged)
    try:
        # The driver's plain tuples: for 100,000 rows SQLAlchemy's per-row
        # processing, and named tuples, cost as much as walking the disk.
        rows: list[FileState] = list(result.cursor.fetchall())
    finally:
        result.close()
    return rows, rows[-1][0] if rows else ""


# The fields of a packed row, and the rows of a packed page, apart: no name holds
# a NUL, and the name, which may hold anything else, comes last.
_FIELD, _ROW = "\x01", "\x00"


def _packed_page(conn: Connection, paged: Any) -> tuple[list[FileState], str] | None:
    """_page from MySQL/MariaDB as one string, unpacked here; None when it does not
    unpack to the page's row count (then read row by row).

    pymysql, pure Python, decodes each column of each row in a few calls: a
    million rows of six columns took it 5 s, most of a rescan of an unchanged
    archive. The server joins the page into one value, and splitting it takes a
    fifth of that. It joins them in the order the page's query gives them, and
    says which is last in its own order (MAX), where the next page starts: a
    page that came out of order would only make the merge look rows up by name
    (reconcile/merge.py), never skip one. Every connection allows a value that
    long (db/engine.py: PACKED_MAX)."""
    page = paged.subquery("page")
    c = page.c
    packed = func.concat_ws(
        literal_column("CHAR(1 USING utf8mb4)"),
        func.ifnull(c.size_bytes, ""),
        func.ifnull(c.mtime_ns, ""),
        c.state,
        c.id,
        func.ifnull(c.sidecar_mtime_ns, ""),
        c.file_name,
    )
    text = packed.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    joined: Any = literal_column(f"GROUP_CONCAT({text} SEPARATOR X'00')")
    query = select(func.count(), func.max(c.file_name), joined).select_from(page)
    count, last, value = conn.execute(query).one()
    if not count:
        return [], ""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    packed_rows = value.split(_ROW)
    if len(packed_rows) != count:
        return None
    rows: list[FileState] = []
    append = rows.append
    for row in packed_rows:
        size, mtime, state, row_id, sidecar, name = row.split(_FIELD, 5)
        append(
            (
                name,
                int(size) if size else None,
                int(mtime) if mtime else None,
                int(state),
                int(row_id),
                int(sidecar) if sidecar else None,
            )
        )
    return rows, last


class ImageRows(Database):
    """Reads and moves of rows by name; counts."""

    def file_state_pages(
        self, page: int | None = None, names: NameRange = (None, None)
    ) -> Iterator[list[FileState]]:
        """Every row as a FileState, in file_name order, a page (a list) at a time:
        what a reconcile needs to tell unchanged, changed, new and gone files apart
        without reading them.

        Read a page at a time, each page one short query on the file_name index from
        where the last one ended: memory stays that of one page however many rows
        there are, and no read stays open while the caller walks the disk (a long
        read would hold SQLite's writers back, and MySQL ends a result that is not
        read on for net_write_timeout).

        With `names` (lo, hi), only the rows with lo <= file_name < hi, as the
        database compares them (reconcile/parts.py).
        """
        page = page or STATES_PAGE
        query = _states_query(self.absent_columns)
        lo, hi = names
        if lo is not None:
            query = query.where(images.c.file_name >= lo)
        if hi is not None:
            query = query.where(images.c.file_name < hi)
        after: str | None = None
        while True:
            paged = query.order_by(images.c.file_name).limit(page)
            if after is not None:
                paged = paged.where(images.c.file_name > after)
            with self.guard("reading known files"), self.engine.connect() as conn:
                packed = _packed_page(conn, paged) if self.dialect != "sqlite" else None
                rows, last = packed if packed is not None else _page(conn, paged)
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = last

    def names_in_code_point_order(self) -> bool:
        """Whether the database orders file_name as the walk does, code point by code
        point: SQLite's BINARY collation, MySQL's *_bin ones (imgwatch's own table is
        utf8mb4_bin). Not so for a table adopted with a case-insensitive collation,
        whose reconciles then look every file without a row up by name
        (reconcile/merge.py)."""
        with self.guard("reading the file_name collation"), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                for index in conn.exec_driver_sql("PRAGMA index_list(images)").all():
                    columns = conn.exec_driver_sql(f'PRAGMA index_xinfo("{index[1]}")').all()
                    keys = [c for c in columns if c[5]]  # key columns, not the rowid
                    if len(keys) == 1 and keys[0][2] == "file_name":
                        return str(keys[0][4]).upper() == "BINARY"
                return False  # no unique index on it: its collation cannot be told
            collation = conn.exec_driver_sql(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'images' AND COLUMN_NAME = 'file_name'"
            ).scalar()
        return collation is None or str(collation).endswith("_bin")

    def names_of(self, ids: Sequence[int]) -> dict[int, str]:
        """file_name by id, for these ids."""
        c = images.c
        names: dict[int, str] = {}
        with self.guard("reading rows"), self.engine.connect() as conn:
            for chunk in chunks(list(ids), ID_CHUNK):
                names.update(conn.execute(select(c.id, c.file_name).where(c.id.in_(chunk))).all())
        return names

    def lookup(self, file_name: str) -> KnownFile | None:
        """One row's comparison fields, or None."""
        return self.lookup_many([file_name]).get(file_name)

    def lookup_many(self, file_names: Sequence[str]) -> dict[str, KnownFile]:
        """Comparison fields of the rows with these names, in one query."""
        if not file_names:
            return {}
        query = select(*known_columns(self.absent_columns)).where(
            images.c.file_name.in_(list(file_names))
        )
        with self.guard("reading rows"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {row[0]: KnownFile._make(row[1:]) for row in rows}

    def rows_under(self, prefix: str) -> list[tuple[str, KnownFile]]:
        """(file_name, row) for every row whose file_name starts with prefix ("dir/")."""
        query = select(*known_columns(self.absent_columns)).where(
            starts_with(images.c.file_name, prefix)
        )
        with self.guard("reading rows of a directory"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(row[0], KnownFile._make(row[1:])) for row in rows]

    def has_rows_under(self, prefix: str) -> bool:
        """Whether any row's file_name starts with prefix ("dir/")."""
        query = select(images.c.id).where(starts_with(images.c.file_name, prefix)).limit(1)
        with self.guard("reading rows of a directory"), self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def rename(self, old: str, new: str) -> bool:
        """Give a moved file's row its new name; False if there is no such row or the
        new name already has one (then the caller treats old as gone and new as changed)."""
        c = images.c

        def body(conn: Connection) -> bool:
            if conn.execute(select(c.id).where(c.file_name == new)).first() is not None:
                return False
            result = conn.execute(
                update(images).where(c.file_name == old).values(file_name=new, updated_at=utcnow())
            )
            return result.rowcount > 0

        return self.transaction("renaming a row", body)

    def rename_prefix(self, old_prefix: str, new_prefix: str) -> tuple[int, list[str]]:
        """A moved directory: every row under old_prefix moves under new_prefix.

        Returns how many moved, and the old names that could not (the new name is
        taken or too long): the caller treats those as gone.
        """
        c = images.c
        now = utcnow()

        def body(conn: Connection) -> tuple[int, list[str]]:
            stuck: list[str] = []
            rows = conn.execute(
                select(c.id, c.file_name).where(starts_with(c.file_name, old_prefix))
            ).all()
            taken = set(
                conn.execute(
                    select(c.file_name).where(starts_with(c.file_name, new_prefix))
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

        return self.transaction("renaming rows of a moved directory", body)

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
        now = utcnow()
        c = images.c
        values: dict[str, Any] = {"status": Status.MISSING.value, "updated_at": now}
        if reason is not None:
            values["last_error"] = reason

        def body(conn: Connection) -> int:
            count = 0
            for start in range(0, len(ids), ID_CHUNK):
                stmt = update(images).where(c.id.in_(ids[start : start + ID_CHUNK]))
                if names is not None:
                    stmt = stmt.where(c.file_name.in_(names[start : start + ID_CHUNK]))
                count += conn.execute(stmt.values(**values)).rowcount
            return count

        return self.transaction("marking rows missing", body)

    def forget(self, ids: Iterable[int]) -> int:
        """Remove rows (the `forget`/`purge` delete policies)."""
        id_list = list(ids)

        def body(conn: Connection) -> int:
            return sum(
                conn.execute(delete(images).where(images.c.id.in_(chunk))).rowcount
                for chunk in chunks(id_list, ID_CHUNK)
            )

        return self.transaction("removing rows", body)

    def count_live(self) -> int:
        """Rows whose file was there when last seen (not missing)."""
        query = (
            select(func.count()).select_from(images).where(images.c.status != Status.MISSING.value)
        )
        with self.guard("counting rows"), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_rows(self) -> int:
        with self.guard("counting rows"), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(images)).scalar_one())

    def counts_by_status(self) -> dict[str, int]:
        query = select(images.c.status, func.count()).group_by(images.c.status)
        with self.guard("counting rows"), self.engine.connect() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}
