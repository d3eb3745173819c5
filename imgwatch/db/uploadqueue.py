"""The upload queue: rows due for WordPress, their claims, and what became of them.

Several daemons may share one database: a row is claimed by one conditional UPDATE
with a lease, so of two uploaders exactly one wins it, and a claim of a daemon that
died runs out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from imgwatch.db.engine import Database, starts_with
from imgwatch.db.schema import column, images
from imgwatch.model import Status, UploadJob, utcnow

# A row nobody is uploading: what every end of an upload, and every reset, leaves.
UNCLAIMED: dict[str, Any] = {"claimed_by": None, "claimed_until": None}


def _to_upload() -> Any:
    """Rows whose file is still to go to WordPress, whatever their schedule: pending,
    being uploaded, failed, or recorded `done` while WordPress was not configured."""
    c = images.c
    return c.status.in_([Status.PENDING, Status.UPLOADING, Status.FAILED]) | (
        (c.status == Status.DONE) & c.wp_url.is_(None)
    )


class UploadQueue(Database):
    """Rows due for upload, claimed, recorded as uploaded or failed."""

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
        failed_due = (c.status == Status.FAILED) & c.next_attempt_at.is_not(None)
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
                column("caption", self.absent_columns),
                column("alt_text", self.absent_columns),
            )
            .where(c.sha256.is_not(None))
            .where(
                c.status.in_([Status.PENDING, Status.UPLOADING])
                | ((c.status == Status.DONE) & c.wp_url.is_(None))
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
        due = _to_upload()
        stmt = (
            update(images)
            .where(c.id == job.id, c.sha256 == job.sha256)
            .where(free, due)
            .values(
                status=Status.UPLOADING,
                claimed_by=owner or None,
                claimed_until=now + dt.timedelta(seconds=lease),
                updated_at=now,
            )
        )
        return self.transaction(
            "claiming a row for upload", lambda conn: conn.execute(stmt).rowcount > 0
        )

    def retry_failed_now(self) -> int:
        """Uploads that failed for a passing reason are due now, not at their schedule."""
        c = images.c
        now = utcnow()
        stmt = (
            update(images)
            .where(
                c.status == Status.FAILED, c.next_attempt_at.is_not(None), c.next_attempt_at > now
            )
            .values(next_attempt_at=now)
        )
        return self.transaction(
            "rescheduling failed uploads", lambda conn: conn.execute(stmt).rowcount
        )

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
        return self.transaction("releasing stale claims", lambda conn: conn.execute(stmt).rowcount)

    def claim_owners(self, prefix: str) -> list[str]:
        """Distinct claimed_by values of claimed rows that start with prefix."""
        c = images.c
        query = (
            select(c.claimed_by)
            .where(
                c.claimed_until.is_not(None),
                starts_with(c.claimed_by, prefix),
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
            status=Status.DONE,
            wp_media_id=media_id,
            wp_url=url,
            wp_text_digest=text_digest,
            attempts=0,
            last_error=None,
            next_attempt_at=None,
            **UNCLAIMED,
        )

    def release_upload(self, job: UploadJob, owner: str) -> bool:
        """Give a claimed row back to wait: the site, not the file, stopped its upload.
        Nothing is counted against the file; the row stays due. Only while the claim
        is still owner's: another daemon may have taken it after the lease."""
        c = images.c
        stmt = (
            update(images)
            .where(c.id == job.id, c.sha256 == job.sha256, c.claimed_by == owner)
            .values(status=Status.PENDING, updated_at=utcnow(), **UNCLAIMED)
        )
        return self.transaction(
            "giving back an upload", lambda conn: conn.execute(stmt).rowcount > 0
        )

    def record_upload_failure(
        self, job: UploadJob, reason: str, next_attempt_at: dt.datetime | None
    ) -> bool:
        """Upload failed: `failed`, why, and when to try again (None: when the file changes)."""
        return self._update_job(
            job,
            status=Status.FAILED,
            attempts=images.c.attempts + 1,
            last_error=reason,
            next_attempt_at=next_attempt_at,
            **UNCLAIMED,
        )

    def _update_job(self, job: UploadJob, **values: Any) -> bool:
        c = images.c
        stmt = (
            update(images)
            .where(c.id == job.id, c.sha256 == job.sha256)
            .values(updated_at=utcnow(), **values)
        )
        return self.transaction(
            "updating upload state", lambda conn: conn.execute(stmt).rowcount > 0
        )

    def media_deleted(self, media_id: int, *, reupload: bool) -> list[str]:
        """A person deleted the media item in WordPress. Its rows are uploaded again
        (the folder is the source of truth), or, with reupload=False, failed with the
        reason until `imgwatch retry`. Returns their names."""
        c = images.c
        now = utcnow()
        which = (c.wp_media_id == media_id) & (c.status == Status.DONE)
        forgotten = {"wp_media_id": None, "wp_url": None, "wp_text_digest": None}
        values: dict[str, Any] = {
            "status": Status.PENDING,
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
            **UNCLAIMED,
        }
        if not reupload:
            values = {
                "status": Status.FAILED,
                "last_error": f"media {media_id} was deleted in WordPress; not uploaded "
                "again (IMGWATCH_WP_REUPLOAD_DELETED=false): imgwatch retry uploads it",
                "next_attempt_at": None,
            }

        def note(conn: Connection) -> list[str]:
            names = list(conn.execute(select(c.file_name).where(which)).scalars())
            conn.execute(update(images).where(which).values(updated_at=now, **forgotten, **values))
            return names

        return self.transaction("noting a deleted media item", note)

    def first_user(self, media_id: int) -> int | None:
        """The lowest id of the rows done with this media item, or None."""
        c = images.c
        query = select(func.min(c.id)).where(c.wp_media_id == media_id, c.status == Status.DONE)
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
            users = users | ((c.sha256 == sha256) & _to_upload())
        query = select(c.id).where(users, c.id != except_id).limit(1)
        with self.guard("checking media use"), self.engine.connect() as conn:
            return conn.execute(query).first() is not None
