"""`imgwatch --rescan`: reconcile once, upload what WordPress lacks, and exit."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from imgwatch.config import Settings
from imgwatch.db.store import ImageStore
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import check_image_dir
from imgwatch.model import ScanSummary
from imgwatch.pipeline import media_client, preflight, reconciler, uploader
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.reconcile.progress import rescan_progress
from imgwatch.reconcile.readers import ProcessReaders, reader_processes
from imgwatch.reconcile.reconciler import Progress
from imgwatch.wordpress.claims import take_over
from imgwatch.wordpress.outcomes import Outcome, UploadTally
from imgwatch.wordpress.uploader import Uploader

log = logging.getLogger(__name__)

EXIT_FILES_FAILED = 1  # something is left for the daemon, the next run or an operator


def run(settings: Settings, args: argparse.Namespace) -> int:
    image_dir = check_image_dir(settings.image_dir)
    with rescan_progress(image_dir, ImageNameFilter(settings.extensions)) as progress:
        result = rescan(settings, progress)
    print(result.line(), flush=True)
    return EXIT_FILES_FAILED if result.incomplete else 0


@dataclass(slots=True)
class RescanResult:
    scan: ScanSummary
    uploads: UploadTally | None
    stopped_by: str | None = None  # the site condition that stopped the uploads

    @property
    def failed(self) -> int:
        return self.scan.failed + (self.uploads[Outcome.FAILED] if self.uploads else 0)

    @property
    def incomplete(self) -> bool:
        """Something is left for the daemon or the next run, or an operator: exit 1."""
        return bool(self.failed or self.stopped_by or self.scan.held)

    def line(self) -> str:
        text = "rescan: " + self.scan.line()
        if self.uploads is not None:
            shown = (Outcome.DONE, Outcome.REUSED, Outcome.FAILED, Outcome.UPDATED, Outcome.GONE)
            done, reused, failed, updated, gone = (self.uploads[o] for o in shown)
            waiting = self.uploads[Outcome.WAITING]
            text += (
                f"; wordpress: {done} uploaded, {reused} linked to existing media, {failed} failed"
            )
            if updated or gone:
                text += f", {updated} updated in place"
            if gone:
                text += f" ({gone} deleted in WordPress)"
            if self.stopped_by is not None:
                text += f", {waiting} waiting (uploads stopped: {self.stopped_by})"
        return text


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
        if client is not None:
            take_over(store)
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
        store.record_scan("rescan", summary)
        if up is None:
            return RescanResult(summary, None)
        tally = to_wordpress(up, store, purges)
        stopped = up.pause.condition
        if stopped is not None:
            log.error(
                "uploads stopped: %s; %d file(s) wait for the daemon or the next run",
                stopped,
                tally[Outcome.WAITING],
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
        if words[Outcome.GONE]:  # media items deleted in WordPress: their files go up again
            tally.merge(up.upload_all(store.due_uploads()))
    # After the uploads: a file moved away and in again is linked to its media item
    # before its old row's purge would delete it.
    for done, row in enumerate(purges):
        outcome = up.purge(row)
        if outcome == Outcome.WAITING:  # the rest stay: the next run finds them gone again
            tally.add(Outcome.WAITING, len(purges) - done)
            break
        if outcome == Outcome.FAILED:  # kept as missing, with the reason
            tally.add(Outcome.FAILED)
    return tally
