"""Rows in trouble, and making them due again (`imgwatch retry`, `imgwatch status`).

Those commands run in their own process, beside a running daemon or none: what
they show or change goes through the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection

from imgwatch.db.engine import Database, chunks
from imgwatch.db.schema import images
from imgwatch.db.uploadqueue import UNCLAIMED
from imgwatch.model import Status, utcnow
from imgwatch.textdigest import UNKNOWN

# What a row asked to be read again says until it is: the reconcile (the daemon's,
# or the next --rescan) reads it, and its new row replaces this.
RETRY_REQUESTED = "retry requested"


@dataclass(slots=True)
class RetryResult:
    uploads: int = 0  # failed uploads due again
    rereads: int = 0  # files to be read again
    in_progress: list[str] = field(default_factory=list)  # named, but being uploaded
    unknown: list[str] = field(default_factory=list)  # named, but no row


class Retries(Database):
    """Failed and rejected rows: shown, and made due again."""

    def recent_problems(self, limit: int) -> list[dict[str, Any]]:
        """The most recently updated failed and rejected rows, newest first."""
        c = images.c
        query = (
            select(c.file_name, c.status, c.last_error, c.attempts, c.next_attempt_at, c.updated_at)
            .where(c.status.in_([Status.FAILED, Status.REJECTED]))
            .order_by(c.updated_at.desc(), c.id.desc())
            .limit(limit)
        )
        with self.guard("reading failed and rejected rows"), self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def retry(self, *, failed: bool, rejected: bool, names: Sequence[str] = ()) -> RetryResult:
        """Make rows due again, in one transaction.

        A failed upload (its file was read; WordPress did not take it) is due now, with
        its attempts reset. Anything else — a rejected file, a failed read, a named file
        whatever its status — is to be read again: its facts are cleared, so that the
        reconcile reads it and writes its row anew (an unchanged file already in
        WordPress stays linked to its media). A row being uploaded is left alone.
        """
        c = images.c
        chosen = []
        if failed:
            chosen.append(c.status == Status.FAILED)
        if rejected:
            chosen.append(c.status == Status.REJECTED)
        return self.transaction(
            "marking rows to retry", lambda conn: self._retry_rows(conn, chosen, names)
        )

    def _retry_rows(self, conn: Connection, chosen: list[Any], names: Sequence[str]) -> RetryResult:
        """retry()'s transaction; run again whole after a write conflict, so it keeps
        nothing from a run before."""
        c = images.c
        now = utcnow()
        result = RetryResult()
        chosen = list(chosen)
        absent = self.absent_columns  # an older imgwatch's table, not adopted yet
        upload_failed = (c.status == Status.FAILED) & c.sha256.is_not(None)
        if names:
            wanted = list(dict.fromkeys(names))
            found: dict[str, str] = {}
            for chunk in chunks(wanted, 500):
                query = select(c.file_name, c.status).where(c.file_name.in_(chunk))
                found.update({row[0]: row[1] for row in conn.execute(query)})
            result.unknown = [n for n in wanted if n not in found]
            result.in_progress = [n for n in wanted if found.get(n) == Status.UPLOADING]
            named = [n for n in wanted if found.get(n) not in (None, Status.UPLOADING)]
            if named:
                chosen.append(c.file_name.in_(named))
                # Their media items get every field again, whatever WordPress was
                # last given (and are uploaded again if a person deleted them).
                for chunk in chunks(named, 500) if "wp_text_digest" not in absent else ():
                    conn.execute(
                        update(images)
                        .where(c.file_name.in_(chunk), c.wp_media_id.is_not(None))
                        .values(wp_text_digest=UNKNOWN)
                    )
        if not chosen:
            return result
        selected = or_(*chosen) & (c.status != Status.UPLOADING)
        result.uploads = conn.execute(
            update(images)
            .where(and_(selected, upload_failed))
            .values(next_attempt_at=now, attempts=0, updated_at=now)
        ).rowcount
        result.rereads = conn.execute(
            update(images)
            .where(and_(selected, ~upload_failed))
            .values(
                status=Status.PENDING,
                # Its facts forgotten: the reconcile reads the file as new.
                **dict.fromkeys(("sha256", "size_bytes", "mtime_ns")),
                attempts=0,
                last_error=RETRY_REQUESTED,
                next_attempt_at=now,
                **UNCLAIMED,
                updated_at=now,
            )
        ).rowcount
        return result

    def rereads_due(self, since: dt.datetime | None = None) -> int:
        """How many rows `retry` asked to be read again (since a time, when given) that
        no reconcile has read yet."""
        c = images.c
        query = (
            select(func.count())
            .select_from(images)
            .where(c.status == Status.PENDING, c.sha256.is_(None), c.last_error == RETRY_REQUESTED)
        )
        if since is not None:
            query = query.where(c.updated_at >= since)
        with self.guard("counting rows to read again"), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
