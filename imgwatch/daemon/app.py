"""The long-running daemon: its parts, start and stop order, the main loop, signals.

Start: store -> WordPress preflight -> observer -> READY=1 -> startup reconcile.
The observer starts before the reconcile, so a file that arrives during the scan
is seen by one or both; either way it is recorded once (upserts are keyed on
file_name, an unchanged file is not read again, uploads are keyed on content).

The main loop owns the debouncer (routing.py): it turns watcher Changes into
per-path deadlines, hands settled paths to the file workers, and once per tick
does the housekeeping (watchdog ping, STATUS=, watch health, periodic reconcile).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from types import FrameType

from imgwatch.config import Settings
from imgwatch.daemon.health import Health
from imgwatch.daemon.http import DatabaseCheck, Listener
from imgwatch.daemon.metrics import Metrics
from imgwatch.daemon.notify import Notifier
from imgwatch.daemon.readers import FileWorkers
from imgwatch.daemon.reconciles import Reconciles
from imgwatch.daemon.routing import Router
from imgwatch.daemon.stages import LastError, Outage, Stats
from imgwatch.daemon.uploads import UploadDispatcher
from imgwatch.daemon.watch import Change, Watcher, wants_polling
from imgwatch.daemon.writer import Writer
from imgwatch.db.store import ImageStore
from imgwatch.errors import SiteCondition
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import check_image_dir
from imgwatch.model import ImageRecord, Status
from imgwatch.pipeline import deletions, media_client, preflight, reconciler, uploader
from imgwatch.reconcile.deletions import GoneRow, HoldState
from imgwatch.reconcile.readers import burst_readers
from imgwatch.wordpress.claims import take_over

log = logging.getLogger(__name__)

HEALTH_EVERY = 1.0
STATUS_EVERY = 2.0


class Daemon:
    """Built whole here, without I/O but a look at the image directory; run() starts it."""

    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier()
        # Checked before the database is touched: a typo should not create a database.
        self.root = check_image_dir(settings.image_dir)
        accept = ImageNameFilter(settings.extensions)
        self.metrics = Metrics() if settings.metrics_listen else None
        self.store = ImageStore(
            settings.database_url(),
            on_written=self.metrics.rows_written if self.metrics is not None else None,
        )
        self.client = media_client(settings)
        self.stats = Stats()
        self.outage = Outage()
        self.stopping = threading.Event()
        self.uploads: UploadDispatcher | None = None
        if self.client is not None:
            up = uploader(settings, self.client, self.store)
            self.uploads = UploadDispatcher(up, self.store, self.stats, self.outage)
            if self.metrics is not None:
                self.metrics.follow_uploads(up)
        # Deletions held by the mass-deletion guard, as this daemon knows them.
        self.hold = HoldState()
        purge = self._hand_to_purge if self.uploads is not None else None
        inbox: queue.Queue[Change] = queue.Queue(maxsize=settings.queue_size)
        polling = wants_polling(settings.watch_mode, self.root)
        self.watcher = Watcher(
            self.root, inbox, polling=polling, poll_interval=settings.poll_interval
        )
        # A poller reports a growing file once per interval: quiet must outlast that.
        quiet = max(settings.quiet_period, settings.poll_interval if polling else 0.0)
        self.writer = Writer(
            root=self.root,
            store=self.store,
            stats=self.stats,
            batch_size=settings.batch_size,
            deletions=deletions(settings, self.store, self.root, purge=purge, hold=self.hold),
            accept=accept,
            on_rows=self._rows_written,
            release=lambda names: self.files.release(names),
            outage=self.outage,
            # Longer than the debouncer's quiet period: the deletes a poller sees once
            # per interval are one run.
            run_quiet=max(2.0, 2 * quiet),
        )
        self.files = FileWorkers(
            root=self.root,
            store=self.store,
            processor=FileProcessor(settings.default_description, settings.max_file_bytes),
            uploads=self.client is not None,
            writer=self.writer,
            retouch=lambda key: self.router.recheck(key),
            threads=settings.workers,
            accept=accept,
            rewalk=lambda key: self.router.rewalk(key),
            outage=self.outage,
            readers=burst_readers(settings.workers, settings.log_level),
        )
        self.router = Router(
            root=self.root,
            accept=accept,
            inbox=inbox,
            watcher=self.watcher,
            files=self.files,
            writer=self.writer,
            quiet=quiet,
            max_wait=settings.max_wait,
            queue_size=settings.queue_size,
        )
        self.reconciles = Reconciles(
            reconciler=reconciler(
                settings,
                self.store,
                self.root,
                uploads=self.client is not None,
                claims=self.router,
                purge=purge,
                hold=self.hold,
            ),
            store=self.store,
            hold=self.hold,
            stats=self.stats,
            outage=self.outage,
            stopping=self.stopping,
            metrics=self.metrics,
            on_done=self._reconciled,
        )
        self.health = Health(
            root=self.root,
            watcher=self.watcher,
            files=self.files,
            writer=self.writer,
            uploads=self.uploads,
            hold=self.hold,
            stats=self.stats,
            depth=self.router.depth,
            database_check=DatabaseCheck(self.store.ping),
            pause_unhealthy=settings.wp_pause_unhealthy,
            on_watch_restarted=lambda: self.reconciles.request("watcher restart"),
        )
        self.listener: Listener | None = None
        self._signal: int | None = None
        self._hup = False
        self._last_error = LastError(self.stats)

    # --- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        logging.getLogger().addHandler(self._last_error)
        log.info("database: %s", self.store.display_url)
        self.store.open()
        started = False
        try:
            if self.client is not None and self.uploads is not None:
                take_over(self.store)
                preflight(self.client, self.uploads.uploader.pause)
            self.watcher.start()
            log.info("watching %s (%s)", self.root, self.watcher.mode)
            self._start_listener()
            self._start_threads()
            started = True
            self.notifier.ready(self.health.status_line())
            self.reconciles.request("startup")
            self._loop()
        finally:
            self._shutdown(started)
        return 0

    def _start_listener(self) -> None:
        address = self.settings.metrics_address
        if self.metrics is None or address is None:
            return
        pause = self.uploads.uploader.pause if self.uploads is not None else None
        hold = self.hold
        self.metrics.watch(
            queue_depth=self.router.depth,
            database_up=lambda: not self.outage.down,
            watching=self.health.watching,
            deletions_held=lambda: held.rows if (held := hold.current) else 0,
            wordpress_paused=(lambda: _kind(pause.condition)) if pause is not None else None,
            reconcile_interval=self.settings.reconcile_interval,
        )
        self.listener = Listener(*address, self.metrics.registry, self.health.trouble)
        self.listener.start()

    def _start_threads(self) -> None:
        self.writer.start()
        self.files.start()
        # The reading processes too, in the background: a first burst then finds
        # them ready (about 30 MB between them, the fork server included).
        self.files.prepare_readers()
        if self.uploads is not None:
            self.uploads.start()
        self.reconciles.start()

    def _shutdown(self, started: bool) -> None:
        self.stopping.set()
        self.notifier.stopping(f"stopping: {self.router.depth()} queued")
        deadline = time.monotonic() + self.settings.stop_timeout
        self.watcher.stop()
        if self.listener is not None:
            self.listener.stop()
        unfinished: list[str] = []
        if started:
            if not self.files.stop(deadline):
                unfinished.append("file workers")
            if not self.writer.stop(deadline):
                unfinished.append("database writes")
            if self.uploads is not None and not self.uploads.stop(deadline):
                unfinished.append(f"{self.uploads.in_flight()} upload(s)")
            if not self.reconciles.stop(deadline):
                unfinished.append("reconcile")
        if self.client is not None:
            self.client.close()
        self.store.close()
        logging.getLogger().removeHandler(self._last_error)
        if unfinished:
            # Their rows say what is left (`uploading`, `pending`, or no row yet); the
            # next start resolves them. Waiting longer would only earn a SIGKILL.
            log.warning("stop deadline passed with %s unfinished", ", ".join(unfinished))
            logging.shutdown()
            os._exit(0)
        log.info("stopped")

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only flags here: the main loop may hold a lock a handler would wait on.
        if self._signal is not None:
            os._exit(128 + signum)  # second signal: now, the rows say what is unfinished
        self._signal = signum

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self._hup = True

    # --- main loop --------------------------------------------------------------------

    def _loop(self) -> None:
        now = time.monotonic()
        next_health = now + HEALTH_EVERY
        next_status = now + STATUS_EVERY
        interval = self.settings.reconcile_interval
        next_reconcile = now + interval if interval > 0 else None
        next_ping = now
        while self._signal is None:
            self.router.take_changes()
            self.router.dispatch_due()
            now = time.monotonic()
            if self.watcher.take_lost():
                self._after_lost_events()
            if self._hup:
                self._hup = False
                self.reconciles.request("SIGHUP")
                if self.uploads is not None:
                    self.uploads.retry_now()
            if next_reconcile is not None and now >= next_reconcile:
                next_reconcile = now + interval
                self.reconciles.request("periodic")
            if now >= next_health:
                next_health = now + HEALTH_EVERY
                self.health.check_watcher()
            if now >= next_status:
                next_status = now + STATUS_EVERY
                self.notifier.status(self.health.status_line())
            ping = self.notifier.watchdog_interval
            if ping is not None and now >= next_ping and self.health.healthy():
                next_ping = now + ping
                self.notifier.watchdog()
        log.info("received %s, stopping", signal.Signals(self._signal).name)

    def _after_lost_events(self) -> None:
        self.router.events_lost()
        log.warning("file events were lost (queue overflow); reconciling")
        if self.metrics is not None:
            self.metrics.overflows.inc()
        self.reconciles.request("overflow")

    # --- told by the other threads ----------------------------------------------------

    def _hand_to_purge(self, rows: list[GoneRow]) -> None:
        """From the writer or a reconcile: media items to delete, then rows, on the
        upload side (the row writer never waits on WordPress)."""
        if self.uploads is not None:
            self.uploads.purge(rows)

    def _rows_written(self, records: list[ImageRecord]) -> None:
        """From the writer: rows to upload, and rows whose words may have changed."""
        if self.uploads is None:
            return
        if any(r.status == Status.PENDING for r in records):
            self.uploads.new_rows()
        changed = [r.file_name for r in records if r.status == Status.DONE]
        if changed:
            self.uploads.words_written(changed)

    def _reconciled(self) -> None:
        """From the reconcile thread: rows it recorded may be due, words may differ."""
        if self.uploads is not None:
            self.uploads.new_rows()
            self.uploads.sweep_text()


def _kind(condition: SiteCondition | None) -> str | None:
    return None if condition is None else condition.kind
