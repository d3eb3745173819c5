"""Getting a recorded file into the WordPress media library exactly once.

The idempotency key is a slug derived from the content (`img-<sha256>`): it is
looked up before every upload and after every error, so a crash, a timeout or a
re-run finds the earlier upload instead of making a second one. The row goes
`pending -> uploading -> done`; a file WordPress refuses ends `failed` with the
reason. A condition of the site (wordpress/answers.py) fails no row: the row goes
back to `pending` and every upload pauses (wordpress/pause.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from imgwatch.db.store import ImageStore
from imgwatch.errors import PermanentError, SiteCondition, TransientError, UploadError
from imgwatch.model import TextUpdate, UploadJob
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.textdigest import TEXT_FIELDS, UNKNOWN, changed_fields, text_digest
from imgwatch.wordpress.addresses import upload_file_name
from imgwatch.wordpress.claims import claim_owner
from imgwatch.wordpress.client import Media, MediaClient, MediaGone
from imgwatch.wordpress.outcomes import (
    ContentChanged,
    Landed,
    RetryPolicy,
    UploadTally,
    reschedule_at,
)
from imgwatch.wordpress.pause import UploadPause
from imgwatch.wordpress.purge import delete_unless_shared, purge

log = logging.getLogger(__name__)

T = TypeVar("T")

_HASH_CHUNK = 1 << 20
# Times a row may meet a condition of the site, each time right after the site
# answered its probe, before the condition is taken as the file's.
SUSPECT_AFTER = 3


def _words(job: UploadJob) -> tuple[str | None, str | None, str | None, str | None]:
    return (job.title, job.description, job.caption, job.alt_text)


class Uploader:
    """Uploads due rows on a bounded pool of workers; each worker writes its own row."""

    def __init__(
        self,
        client: MediaClient,
        store: ImageStore,
        image_dir: Path,
        *,
        workers: int = 4,
        policy: RetryPolicy | None = None,
        share_identical: bool = True,
        delete_replaced: bool = False,
        pause: UploadPause | None = None,
        reupload_deleted: bool = True,
        owner: str = "",
        lease: float = 900.0,
    ) -> None:
        self.client = client
        # Who claims rows (host:pid) and for how long: longer than one upload with all
        # its retries may take, so a live uploader never loses its claim.
        self.owner = owner or claim_owner()
        self.lease = lease
        self.store = store
        self.image_dir = image_dir
        self.workers = workers
        self.policy = policy or RetryPolicy()
        self.share_identical = share_identical
        self.delete_replaced = delete_replaced
        self.pause = pause or UploadPause()
        # Rows that met a condition of the site right after a probe passed: how often.
        self._suspects: dict[int, int] = {}
        self.reupload_deleted = reupload_deleted
        # Two rows with the same content must not both miss the lookup and both upload.
        self._slug_locks = [threading.Lock() for _ in range(64)]
        self._tally_lock = threading.Lock()
        # Told of each upload's outcome and duration, and of each retry (metrics).
        self.on_upload: Callable[[str, float], None] | None = None
        self.on_retry: Callable[[], None] | None = None
        self.on_text_update: Callable[[str], None] | None = None

    def slug_for(self, job: UploadJob) -> str:
        if self.share_identical:
            return f"img-{job.sha256}"
        # One media item per (content, name): still stable across re-runs.
        name_key = hashlib.sha256(job.file_name.encode()).hexdigest()[:16]
        return f"img-{job.sha256[:48]}-{name_key}"

    def slug_lock(self, slug: str) -> threading.Lock:
        """The lock of a slug: two rows with the same content must not both miss the
        lookup and both upload, nor an upload link to an item being purged."""
        return self._slug_locks[hash(slug) % len(self._slug_locks)]

    def purge(self, gone: GoneRow) -> str:
        """See wordpress/purge.py."""
        return purge(self, gone)

    def upload_all(self, jobs: Iterable[UploadJob]) -> UploadTally:
        """Every job once (--rescan); once uploads pause, the rest wait, not tried."""
        tally = UploadTally()

        def run(job: UploadJob) -> None:
            outcome = self.upload(job)
            with self._tally_lock:
                tally.add(outcome)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="upload") as pool:
            for future in [pool.submit(run, job) for job in jobs]:
                future.result()
        return tally

    def update_all(self, store: ImageStore) -> UploadTally:
        """Every media item whose words changed (--rescan), page by page."""
        tally = UploadTally()

        def run(update: TextUpdate) -> None:
            outcome = self.update_text(update)
            with self._tally_lock:
                tally.add(outcome)

        after = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="upload") as pool:
            while self.pause.condition is None:
                page = store.text_updates_due(after_id=after, limit=100)
                if not page:
                    break
                after = page[-1].id
                for future in [pool.submit(run, update) for update in page]:
                    future.result()
        return tally

    def upload(self, job: UploadJob) -> str:
        """Bring one row to `done` or `failed`, or give it back to wait for the site;
        returns done|reused|failed|skipped|waiting."""
        if self.pause.condition is not None:
            return "waiting"
        started = time.monotonic()
        outcome = self._upload(job)
        if self.on_upload is not None:
            self.on_upload(outcome, time.monotonic() - started)
        return outcome

    def _upload(self, job: UploadJob) -> str:
        if not self.store.mark_uploading(job, self.owner, self.lease):
            # New content (that version will be uploaded), or another daemon on this
            # database is uploading it right now.
            return "skipped"
        slug = self.slug_for(job)
        lock = self.slug_lock(slug)
        try:
            with lock:
                landed = self._upload_with_retries(job, slug)
        except ContentChanged as exc:
            # The file's new content gets a row of its own (and so an upload) when
            # it is read; until then this one waits a minute rather than loop.
            log.info("not uploaded %r: %s", job.file_name, exc)
            self.store.record_upload_failure(job, str(exc), reschedule_at(0))
            return "skipped"
        except PermanentError as exc:
            log.warning("upload failed %r: %s", job.file_name, exc)
            self.store.record_upload_failure(job, str(exc), None)
            return "failed"
        except SiteCondition as cond:
            if self._only_this_file(job, cond):
                return "failed"
            self.pause.report(cond)
            self.store.release_upload(job, self.owner)
            return "waiting"
        except TransientError as exc:
            # Retries used up. Whose fault: the probe tells the site's from this file's.
            if self.site_at_fault(lambda: self.store.release_upload(job, self.owner)):
                return "waiting"
            when = reschedule_at(job.attempts, exc.retry_after)
            log.warning("upload failed %r, next try %s UTC: %s", job.file_name, when, exc)
            self.store.record_upload_failure(job, str(exc), when)
            return "failed"
        self.pause.worked()
        self._suspects.pop(job.id, None)
        media = landed.media
        sent = landed.text_digest
        if landed.reused and self._speaks_for(job, media.id):
            sent = UNKNOWN  # linked to an item a later name uploaded: give it our words
        if not self.store.record_upload(job, media.id, media.source_url, sent):
            log.info("uploaded %r but its content changed meanwhile", job.file_name)
            return "skipped"
        log.info(
            "%s %r -> %s (media %d)",
            "linked" if landed.reused else "uploaded",
            job.file_name,
            media.source_url,
            media.id,
        )
        self._drop_replaced(job, media)
        return "reused" if landed.reused else "done"

    def _upload_with_retries(self, job: UploadJob, slug: str) -> Landed:
        def attempt() -> Landed:
            # Looked up every time: an upload that timed out may have landed.
            found = self.client.find_by_slug(slug)
            if found is not None:
                # Linked, its words taken as in step: the item has what its upload
                # gave it (this row's, when an upload landed unrecorded), or what a
                # person made of it since, which is kept until this row's change.
                return Landed(found, True, text_digest(*_words(job)))
            return self._send(job, slug)

        return self.retrying(attempt, job.file_name)

    def _speaks_for(self, job: UploadJob, media_id: int) -> bool:
        """Is this row the first name (the lowest id) of a media item other rows
        already use? Identical content under two names shows the first one's words,
        whichever was uploaded first."""
        first = self.store.first_user(media_id)
        return first is not None and first > job.id

    def retrying(self, attempt: Callable[[], T], file_name: str) -> T:
        """attempt() until it works, the policy's attempts are used up (its last
        TransientError is raised), or uploads pause (the condition is raised)."""
        tries = 0
        while True:
            tries += 1
            paused = self.pause.condition
            if paused is not None:  # another upload found the site in trouble meanwhile
                raise SiteCondition(paused.kind, str(paused), paused.retry_after)
            try:
                return attempt()
            except TransientError as exc:
                if tries >= self.policy.attempts:
                    raise
                delay = self.policy.delay(tries, exc.retry_after)
                log.info("retrying %r in %.1fs: %s", file_name, delay, exc)
                if self.on_retry is not None:
                    self.on_retry()
                time.sleep(delay)

    def site_at_fault(self, release: Callable[[], object]) -> bool:
        """After the retries of one row: does the site answer its probe? If not, it is
        the site's fault: uploads pause and the row is given back (release)."""
        condition = self.client.probe()
        if condition is None:
            return False
        self.pause.report(condition)
        release()
        return True

    def _only_this_file(self, job: UploadJob, condition: SiteCondition) -> bool:
        """A condition met again and again by this row right after the site answered
        its probe (a firewall rule that blocks this one file, say) is this file's, not
        the site's: after SUSPECT_AFTER times the row fails on its own schedule and
        the others go on. True if so."""
        if not self.pause.unproven:
            return False
        seen = self._suspects.get(job.id, 0) + 1
        if seen < SUSPECT_AFTER:
            self._suspects[job.id] = seen
            return False
        self._suspects.pop(job.id, None)
        when = reschedule_at(job.attempts)
        reason = f"{condition} (to this file only: WordPress answered its probe each time)"
        log.warning("upload failed %r, next try %s UTC: %s", job.file_name, when, reason)
        self.store.record_upload_failure(job, reason, when)
        return True

    # --- the media item's words ---------------------------------------------------

    def update_text(self, update: TextUpdate) -> str:
        """Give the media item the row's words, the fields that changed only (an edit
        made in WordPress to another field stays). Returns updated|gone (deleted in
        WordPress: its rows go up again)|failed|waiting."""
        if self.pause.condition is not None:
            return "waiting"
        outcome = self._update_text(update)
        if self.on_text_update is not None:
            self.on_text_update(outcome)
        return outcome

    def _update_text(self, update: TextUpdate) -> str:
        fields = changed_fields(update.wp_text_digest, update.values)
        sent = text_digest(*update.values)
        if not fields:  # the digests differ only in how they were written down
            self.store.record_text_sent(update.id, update.wp_media_id, sent)
            return "updated"
        values = dict(zip(TEXT_FIELDS, update.values, strict=True))
        given = {name: values[name] or "" for name in fields}
        try:
            self.retrying(
                lambda: self.client.update_fields(update.wp_media_id, given), update.file_name
            )
        except MediaGone:
            return self._media_gone(update)
        except SiteCondition as cond:
            self.pause.report(cond)
            return "waiting"
        except PermanentError as exc:
            # Not sent again until the words change: WordPress will say the same.
            log.warning("WordPress refused the text of %r: %s", update.file_name, exc)
            self.store.record_text_sent(update.id, update.wp_media_id, sent)
            return "failed"
        except TransientError as exc:
            if self.site_at_fault(lambda: None):
                return "waiting"
            log.warning(
                "could not update the text of %r, tried again later: %s", update.file_name, exc
            )
            return "failed"
        self.pause.worked()
        self.store.record_text_sent(update.id, update.wp_media_id, sent)
        log.info(
            "updated %s of %r in WordPress (media %d)",
            ", ".join(fields),
            update.file_name,
            update.wp_media_id,
        )
        return "updated"

    def _media_gone(self, update: TextUpdate) -> str:
        names = self.store.media_deleted(update.wp_media_id, reupload=self.reupload_deleted)
        shown = ", ".join(repr(n) for n in names) or repr(update.file_name)
        if self.reupload_deleted:
            log.warning(
                "media %d of %s was deleted in WordPress; uploading it again",
                update.wp_media_id,
                shown,
            )
        else:
            log.warning(
                "media %d of %s was deleted in WordPress; not uploaded again "
                "(IMGWATCH_WP_REUPLOAD_DELETED=false), the row is failed",
                update.wp_media_id,
                shown,
            )
            return "failed"
        return "gone"

    def _send(self, job: UploadJob, slug: str) -> Landed:
        path = self.image_dir / job.file_name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ContentChanged("file is gone") from None
        except OSError as exc:
            # Followed links were recorded too; open those normally.
            if exc.errno != 40:  # ELOOP from O_NOFOLLOW on a symlink
                raise TransientError(f"cannot open file: {exc.strerror}") from None
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        words = _words(job)
        with os.fdopen(fd, "rb") as body:
            sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
            try:
                while chunk := body.read(_HASH_CHUNK):
                    sha.update(chunk)
                    md5.update(chunk)
            except OSError as exc:  # EIO, a directory under the name …
                raise TransientError(f"cannot read file: {exc.strerror or exc}") from None
            if sha.hexdigest() != job.sha256:
                raise ContentChanged("file changed since it was recorded")
            body.seek(0)
            media, later = self.client.upload(
                body,
                size=os.fstat(body.fileno()).st_size,
                file_name=upload_file_name(job.file_name, job.mime_type),
                mime_type=job.mime_type,
                md5_hex=md5.hexdigest(),
                slug=slug,
                fields=dict(zip(TEXT_FIELDS, (v or "" for v in words), strict=True)),
            )
        sent = text_digest(*words)
        if later and not self._set_later_fields(job, media, later):
            sent = UNKNOWN  # the text updates send it again
        return Landed(media, False, sent)

    def _set_later_fields(self, job: UploadJob, media: Media, fields: dict[str, str]) -> bool:
        """Text too long for the upload's query string, set right after it. The file
        is in already: a failure here is a warning, not a failed upload (which would
        only find the media by its slug next time and leave it as it is); the words
        are sent again as an update. False if they were not set."""
        try:
            self.client.update_fields(media.id, fields)
        except (UploadError, MediaGone) as exc:
            log.warning(
                "uploaded %r as media %d, but could not set its text yet: %s",
                job.file_name,
                media.id,
                exc,
            )
            return False
        return True

    def _drop_replaced(self, job: UploadJob, media: Media) -> None:
        old = job.wp_media_id
        if not self.delete_replaced or old is None or old == media.id:
            return
        try:
            delete_unless_shared(self, old, job.id, job.file_name, "replaced media")
        except UploadError as exc:
            log.warning("could not delete replaced media %d of %r: %s", old, job.file_name, exc)
