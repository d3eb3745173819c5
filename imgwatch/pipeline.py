"""Wiring: builds the store, the WordPress client and the workers from Settings.

`rescan()` is the one-shot reconcile; the daemon reuses the same pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgwatch.config import Settings
from imgwatch.db.scans import record_scan
from imgwatch.db.store import ImageStore
from imgwatch.errors import SiteCondition
from imgwatch.files.decide import FileProcessor
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import check_image_dir
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, GoneRows, HoldState
from imgwatch.reconcile.readers import ProcessReaders, reader_processes
from imgwatch.reconcile.reconciler import Claims, Progress, Readers, Reconciler, Rows, ScanSummary
from imgwatch.wordpress.client import MediaClient
from imgwatch.wordpress.pause import UploadPause
from imgwatch.wordpress.uploader import RetryPolicy, Uploader, UploadTally, release_dead_claims

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RescanResult:
    scan: ScanSummary
    uploads: UploadTally | None
    stopped_by: str | None = None  # the site condition that stopped the uploads

    @property
    def failed(self) -> int:
        return self.scan.failed + (self.uploads.failed if self.uploads else 0)

    @property
    def incomplete(self) -> bool:
        """Something is left for the daemon or the next run, or an operator: exit 1."""
        return bool(self.failed or self.stopped_by or self.scan.held)

    def line(self) -> str:
        text = self.scan.line()
        if self.uploads is not None:
            u = self.uploads
            text += (
                f"; wordpress: {u.done} uploaded, {u.reused} linked to existing media, "
                f"{u.failed} failed"
            )
            if u.updated or u.gone:
                text += f", {u.updated} updated in place"
            if u.gone:
                text += f" ({u.gone} deleted in WordPress)"
            if self.stopped_by is not None:
                text += f", {u.waiting} waiting (uploads stopped: {self.stopped_by})"
        return text


def media_client(settings: Settings) -> MediaClient | None:
    """The WordPress client, or None when WordPress is not configured."""
    if not settings.wordpress_enabled:
        return None
    assert settings.wp_api_url and settings.wp_user and settings.wp_password
    return MediaClient(
        settings.wp_api_url,
        settings.wp_user,
        settings.wp_password.get_secret_value(),
        connect_timeout=settings.wp_connect_timeout,
        read_timeout=settings.wp_read_timeout,
        ca_bundle=str(settings.wp_ca_bundle) if settings.wp_ca_bundle else None,
        pool_size=settings.wp_workers,
    )


def uploader(settings: Settings, client: MediaClient, store: ImageStore) -> Uploader:
    release_dead_claims(store)
    baseline = store.baseline_text_digests()
    if baseline:
        log.info(
            "%d uploaded row(s) from before imgwatch kept what it sent to WordPress: their "
            "words as they are now count as what WordPress has",
            baseline,
        )
    # One upload() with every retry: connect + read timeout and the longest pause, each try.
    per_try = settings.wp_connect_timeout + settings.wp_read_timeout + settings.wp_backoff_max
    return Uploader(
        client,
        store,
        settings.image_dir.resolve(),
        workers=settings.wp_workers,
        policy=RetryPolicy(settings.wp_retries, settings.wp_backoff, settings.wp_backoff_max),
        share_identical=settings.wp_share_identical,
        delete_replaced=settings.wp_delete_replaced,
        reupload_deleted=settings.wp_reupload_deleted,
        pause=UploadPause(probe_max=settings.wp_probe_max),
        # And one more: the probe that follows used-up retries, and finishing a 500.
        lease=(settings.wp_retries + 1) * per_try + 60,
    )


def preflight(client: MediaClient, pause: UploadPause) -> None:
    """Wrong settings (password, address) stop the run (ConfigError); any other
    condition of the site only pauses the uploads."""
    try:
        client.preflight()
    except SiteCondition as condition:
        pause.report(condition)
    else:
        log.info("WordPress: %s, user %r may upload", client.api_url, client.user)


def reconciler(
    settings: Settings,
    store: Rows,
    image_dir: Path,
    *,
    uploads: bool,
    readers: Readers | None = None,
    progress: Progress | None = None,
    claims: Claims | None = None,
    purge: Callable[[list[GoneRow]], None] | None = None,
    hold: HoldState | None = None,
    dry_run: bool = False,
) -> Reconciler:
    """A reconcile of image_dir as the settings say: one-shot (--rescan, dry runs),
    or the daemon's, which claims each file from its workers. Rows whose file is
    gone go as IMGWATCH_ON_DELETE says (purged ones to `purge`), behind the guard."""
    return Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ImageNameFilter(settings.extensions),
        processor=FileProcessor(settings.default_description, settings.max_file_bytes),
        batch_size=settings.batch_size,
        uploads=uploads,
        claims=claims,
        readers=readers,
        progress=progress,
        deletions=deletions(settings, store, image_dir, purge=purge, hold=hold, quiet=dry_run),
    )


def deletions(
    settings: Settings,
    store: GoneRows,
    image_dir: Path,
    *,
    purge: Callable[[list[GoneRow]], None] | None = None,
    hold: HoldState | None = None,
    quiet: bool = False,
) -> Deletions:
    """What becomes of rows whose file is gone, as the settings say."""
    return Deletions(
        store,
        policy=settings.on_delete,
        guard=DeleteGuard(settings.delete_guard_share, settings.delete_guard_min),
        where=str(image_dir),
        hold=hold,
        purge=purge,
        quiet=quiet,
    )


def rescan(settings: Settings, progress: Progress | None = None) -> RescanResult:
    """Reconcile once: record what is on disk, then upload what WordPress lacks."""
    # Checked before the database is touched: a typo in the path should not create a database.
    image_dir = check_image_dir(settings.image_dir)
    store = ImageStore(settings.database_url())
    client = media_client(settings)
    log.info("database: %s", store.display_url)
    processes = reader_processes(settings.workers)
    readers = ProcessReaders(processes) if processes > 1 else None
    try:
        store.open()
        up = uploader(settings, client, store) if client else None
        if client and up:
            preflight(client, up.pause)
        purges: list[GoneRow] = []  # IMGWATCH_ON_DELETE=purge: after the uploads
        summary = reconciler(
            settings,
            store,
            image_dir,
            uploads=client is not None,
            readers=readers,
            progress=progress,
            purge=purges.extend if up is not None else None,
        ).run()
        record_scan(store, "rescan", summary)
        if up is None:
            return RescanResult(summary, None)
        tally = to_wordpress(up, store, purges)
        stopped = up.pause.condition
        if stopped is not None:
            log.error(
                "uploads stopped: %s; %d file(s) wait for the daemon or the next run",
                stopped,
                tally.waiting,
            )
        return RescanResult(summary, tally, str(stopped) if stopped else None)
    finally:
        if readers is not None:
            readers.close()
        if client is not None:
            client.close()
        store.close()


def to_wordpress(up: Uploader, store: ImageStore, purges: list[GoneRow]) -> UploadTally:
    """--rescan's WordPress part, after its reconcile: uploads, words, purges."""
    # An explicit rescan retries failed uploads now, whatever their schedule.
    tally = up.upload_all(store.due_uploads(include_scheduled=True))
    if up.pause.condition is None:
        words = up.update_all(store)
        tally.merge(words)
        if words.gone:  # media items deleted in WordPress: their files go up again
            tally.merge(up.upload_all(store.due_uploads()))
    # After the uploads: a file moved away and in again is linked to its media item
    # before its old row's purge would delete it.
    for done, row in enumerate(purges):
        outcome = up.purge(row)
        if outcome == "waiting":  # the rest stay: the next run finds them gone again
            tally.waiting += len(purges) - done
            break
        if outcome == "failed":  # kept as missing, with the reason
            tally.failed += 1
    return tally
