"""Many rows in one INSERT statement's text, for MySQL and MariaDB through pymysql.

pymysql's executemany builds the same statements, but escapes each value through
three layers of calls (a dict comprehension, escape(), escape_item()): in a bulk
import that was a third of the rescan's own time. Here strings go straight to the
driver's own escape_string (or, when the session has NO_BACKSLASH_ESCAPES, to the
quote doubling the driver then uses); anything other than text, whole numbers and
NULL still goes through the driver's escape().
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pymysql import converters
from pymysql.constants import SERVER_STATUS
from pymysql.cursors import RE_INSERT_VALUES

# pymysql's own limit for one statement of an executemany, in bytes: well under the
# server's max_allowed_packet (16 MiB by default on MariaDB, 4 MiB on old MySQL).
# Counted here in characters, each of which is at most 4 bytes in utf8mb4.
MAX_STATEMENT_BYTES = 1_024_000
_MAX_CHARS = MAX_STATEMENT_BYTES // 4

_NAMED = re.compile(r"%\(([^)]+)\)s")


class RowsInsert:
    """An `INSERT … VALUES (%(a)s, …) [ON DUPLICATE KEY UPDATE …]`, as SQLAlchemy
    compiles it for pymysql, sent with many rows per statement."""

    def __init__(self, sql: str) -> None:
        match = RE_INSERT_VALUES.match(sql)
        names = _NAMED.findall(match.group(2)) if match is not None else []
        if match is None or not names:
            raise ValueError("not an INSERT … VALUES with one named placeholder per column")
        # The text around the values is sent as is, with no parameters: a `%`
        # SQLAlchemy doubled for the driver's formatting is undoubled here.
        self.prefix: str = match.group(1) % ()
        self.postfix: str = (match.group(3) or "") % ()
        self.columns: list[str] = names  # the order each row's values must come in

    def statements(
        self, literal: Callable[[object], str], rows: Iterable[Sequence[object]]
    ) -> Iterator[str]:
        """The statement texts that insert `rows` (values in `columns` order), each
        value quoted by `literal` (see literal_maker); more than one only when they
        would be too long."""
        budget = _MAX_CHARS - len(self.prefix) - len(self.postfix)
        parts: list[str] = []
        size = 0
        for row in rows:
            text = "(" + ",".join(map(literal, row)) + ")"
            if parts and size + len(text) > budget:
                yield self.prefix + ",".join(parts) + self.postfix
                parts, size = [], 0
            parts.append(text)
            size += len(text) + 1
        if parts:
            yield self.prefix + ",".join(parts) + self.postfix


def literal_maker(connection: Any) -> Callable[[object], str]:
    """A function giving a value's SQL literal exactly as the connection's own
    escape() would, for the session's current quoting rules."""
    fallback: Callable[[object], str] = connection.escape
    if no_backslash_escapes(connection):

        def literal(value: object) -> str:
            if isinstance(value, str):
                return "'" + value.replace("'", "''") + "'"
            if type(value) is int:  # not bool, which the driver writes as 1 or 0
                return str(value)
            if value is None:
                return "NULL"
            return fallback(value)

        return literal

    escape: Callable[[str], str] = converters.escape_string

    def literal_backslash(value: object) -> str:
        if isinstance(value, str):
            return "'" + escape(value) + "'"
        if type(value) is int:
            return str(value)
        if value is None:
            return "NULL"
        return fallback(value)

    return literal_backslash


def no_backslash_escapes(connection: Any) -> bool:
    """Whether the session quotes with NO_BACKSLASH_ESCAPES (the server says so in
    every reply, and the driver's escape() follows it)."""
    return bool(connection.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)
