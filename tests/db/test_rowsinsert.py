"""Many-row INSERT text for pymysql: the same literals as the driver's own escape()."""

from __future__ import annotations

import datetime as dt

import pymysql
import pytest
from pymysql.constants import SERVER_STATUS

from imgwatch.db.rowsinsert import MAX_STATEMENT_BYTES, RowsInsert, literal_maker

SQL = (
    "INSERT INTO images (file_name, title, size_bytes) "
    "VALUES (%(file_name)s, %(title)s, %(size_bytes)s) "
    "ON DUPLICATE KEY UPDATE title = coalesce(images.title, VALUES(title))"
)
AWKWARD = [
    "plain.jpg",
    "it's.jpg",
    'say "cheese".png',
    "back\\slash.gif",
    "new\nline.jpg",
    "tab\tand\rreturn.jpg",
    "nul\x00byte",
    "ctrl-z\x1a.jpg",
    "100%.jpg",
    "%(title)s.jpg",
    "%s.jpg",
    "caf\u00e9 \U0001f600.jpg",
    "",
]
OTHER: list[object] = [
    None,
    0,
    -5,
    2**62,
    True,
    False,
    1.5,
    dt.datetime(2026, 11, 25, 21, 0, 0, 123456),
    dt.datetime(2026, 11, 25, 21, 0, 0),
    b"bytes'\\",
]


def unconnected(no_backslash_escapes: bool) -> pymysql.connections.Connection:
    conn = pymysql.connect(host="127.0.0.1", defer_connect=True)
    # What the server's OK packets would have set.
    conn.server_status = (
        SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES if no_backslash_escapes else 0
    )
    return conn


@pytest.mark.parametrize("no_backslash_escapes", [False, True])
def test_literals_are_the_drivers_own(no_backslash_escapes: bool) -> None:
    conn = unconnected(no_backslash_escapes)
    literal = literal_maker(conn)
    for value in [*AWKWARD, *OTHER]:
        assert literal(value) == conn.escape(value), repr(value)


def test_reads_the_columns_and_keeps_the_update_clause() -> None:
    insert = RowsInsert(SQL)
    assert insert.columns == ["file_name", "title", "size_bytes"]
    assert insert.prefix.startswith("INSERT INTO images (file_name, title, size_bytes) VALUES")
    assert insert.postfix.strip().startswith("ON DUPLICATE KEY UPDATE title")
    conn = unconnected(False)
    (statement,) = insert.statements(
        literal_maker(conn), [("a.jpg", "it's", 1), ("b.jpg", None, 2)]
    )
    assert statement == (insert.prefix + "('a.jpg','it\\'s',1),('b.jpg',NULL,2)" + insert.postfix)


def test_undoubles_a_percent_sqlalchemy_doubled() -> None:
    insert = RowsInsert("INSERT INTO t (a) VALUES (%(a)s) ON DUPLICATE KEY UPDATE b = '100%%'")
    assert insert.postfix.endswith("b = '100%'")


def test_long_batches_are_split_below_the_drivers_statement_limit() -> None:
    insert = RowsInsert(SQL)
    rows = [(f"dir/{i:06d}-" + "x" * 240, "\U0001f600" * 250, i) for i in range(2000)]
    statements = list(insert.statements(literal_maker(unconnected(False)), rows))
    assert len(statements) > 1
    assert all(len(s.encode()) <= MAX_STATEMENT_BYTES for s in statements)
    # Every row once, in order.
    values = "".join(s[len(insert.prefix) : len(s) - len(insert.postfix)] + "," for s in statements)
    assert values.count("'dir/") == len(rows)
    assert values.index("dir/000000-") < values.index("dir/001999-")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE images SET title = %(title)s",
        "INSERT INTO images (a, b) VALUES (%(a)s, 'literal')",
        "INSERT INTO images (a) VALUES (%s)",
    ],
)
def test_refuses_what_it_cannot_split(sql: str) -> None:
    with pytest.raises(ValueError, match="one named placeholder per column"):
        RowsInsert(sql)
