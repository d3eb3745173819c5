"""Deleting media items: a purged file's (IMGWATCH_ON_DELETE=purge) and a replaced
one's (IMGWATCH_WP_DELETE_REPLACED). Both run on the upload side, never on the row
writer, and delete an item only when no other row uses it, nor will.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from imgwatch.errors import SiteCondition, TransientError, UploadError
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.wordpress.outcomes import Outcome

if TYPE_CHECKING:
    from imgwatch.wordpress.uploader import Uploader

log = logging.getLogger(__name__)


def purge(up: Uploader, gone: GoneRow) -> str:
    """A file deleted with IMGWATCH_ON_DELETE=purge: its media item goes (unless
    another row uses it, or will: the same content under a new name), then its
    row. Returns purged|kept (the file is back)|failed (the item could not be
    deleted: the row stays, `missing`, with the reason)|waiting (the site is in
    trouble: the row stays as it is, and the next reconcile finds it gone)."""
    if up.pause.condition is not None:
        return Outcome.WAITING
    row = up.store.lookup(gone.file_name)
    if row is None or row.id != gone.id:
        return Outcome.PURGED  # already
    if os.path.lexists(up.image_dir / gone.file_name):
        return Outcome.KEPT
    media = row.wp_media_id
    if media is not None:
        # Under the slug's lock: an upload of the same content in this process
        # must not link to an item being deleted.
        slug = f"img-{row.sha256}" if up.share_identical and row.sha256 else ""
        try:
            with up.slug_lock(slug):
                up.retrying(
                    lambda: delete_unless_shared(
                        up, media, gone.id, gone.file_name, "media", row.sha256
                    ),
                    gone.file_name,
                )
        except SiteCondition as cond:
            up.pause.report(cond)
            return Outcome.WAITING
        except UploadError as exc:
            if isinstance(exc, TransientError) and up.site_at_fault(lambda: None):
                return Outcome.WAITING
            reason = f"purge: could not delete media {media}: {exc}"
            log.warning("%r kept as missing: %s", gone.file_name, reason)
            up.store.mark_missing([gone.id], names=[gone.file_name], reason=reason)
            return Outcome.FAILED
        up.pause.worked()
    if os.path.lexists(up.image_dir / gone.file_name):
        return Outcome.KEPT  # back while the item was being deleted: its row stays
    up.store.forget([gone.id])
    log.info("forgot %r: deleted or moved away, row removed", gone.file_name)
    return Outcome.PURGED


def delete_unless_shared(
    up: Uploader, media_id: int, row_id: int, file_name: str, what: str, sha256: str | None = None
) -> None:
    """Delete a media item no other row uses (identical content under two names
    shares one), nor will: a row of the same content (sha256) waiting for its
    upload links to it by its slug."""
    waiting = sha256 if up.share_identical else None
    if up.store.media_in_use(media_id, except_id=row_id, sha256=waiting):
        log.info("kept %s %d of %r: another file shares it", what, media_id, file_name)
    elif up.client.delete(media_id):
        log.info("deleted %s %d of %r from WordPress", what, media_id, file_name)
