"""The long-running daemon: start and stop order, the main loop, signals, health.

Start: store -> WordPress preflight -> observer -> READY=1 -> startup reconcile.
The observer starts before the reconcile, so a file that arrives during the scan
is seen by one or both; either way it is recorded once (upserts are keyed on
file_name, an unchanged file is not read again, uploads are keyed on content).

The main loop owns the debouncer: it turns watcher Changes into per-path
deadlines, hands settled paths to the file workers, and once per tick does the
housekeeping (watchdog ping, STATUS=, observer health, periodic reconcile).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import queue
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType

from imgwatch.config import Settings
from imgwatch.daemon.debounce import Debouncer, Signature
from imgwatch.daemon.http import DatabaseCheck, Listener
from imgwatch.daemon.metrics import Metrics
from imgwatch.daemon.notify import Notifier
from imgwatch.daemon.stages import (
    FileWorkers,
    Gone,
    GoneDir,
    LastError,
    Outage,
    Rename,
    RenameDir,
    Stats,
    Writer,
)
from imgwatch.daemon.uploads import UploadDispatcher
from imgwatch.daemon.watch import Change, Watcher, inotify_room_left, wants_polling
from imgwatch.db.scans import record_scan, rereads_due
from imgwatch.db.store import DELETIONS_HELD, DONE, PENDING, ImageRecord, ImageStore, utcnow
from imgwatch.errors import ConfigError, DatabaseUnavailable, SiteCondition
from imgwatch.files.decide import FileProcessor
from imgwatch.files.metadata import SIDECAR_SUFFIX
from imgwatch.files.names import ImageNameFilter, is_hidden_or_temp
from imgwatch.files.walk import check_image_dir, walk
from imgwatch.pipeline import deletions, media_client, preflight, uploader
from imgwatch.pipeline import reconciler as service_reconciler
from imgwatch.reconcile.deletions import GoneRow, HoldState
from imgwatch.reconcile.reconciler import Reconciler, ScanSummary
from imgwatch.wordpress.pause import PauseState, duration

log = logging.getLogger(__name__)

TICK = 0.25  # longest the main loop sleeps: bounds signal and health-check latency
BUSY_WAIT = 0.02  # how often to look for free workers while paths are due
HEALTH_EVERY = 1.0
STATUS_EVERY = 2.0
RESTART_WATCHER_EVERY = 5.0
# A single file read this long means a hung mount or disk, not a big file.
STUCK_AFTER = 600
RETRY_POLL = 10.0  # how often the reconcile thread looks for rows `imgwatch retry` marked
HOLD_RECHECK = 60.0  # while deletions are held, how often to look whether the files are back


class Daemon:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier()
        # Checked before the database is touched: a typo should not create a database.
        self.root = check_image_dir(settings.image_dir)
        self._prefix = str(self.root).rstrip("/") + "/"
        self.accept = ImageNameFilter(settings.extensions)
        self.processor = FileProcessor(settings.default_description, settings.max_file_bytes)
        self.store = ImageStore(settings.database_url())
        self.client = media_client(settings)
        self.stats = Stats()
        self.outage = Outage()
        self.stopping = threading.Event()
        self.inbox: queue.Queue[Change] = queue.Queue(maxsize=settings.queue_size)
        polling = wants_polling(settings.watch_mode, self.root)
        self.watcher = Watcher(
            self.root,
            self.inbox,
            polling=polling,
            poll_interval=settings.poll_interval,
        )
        # A poller reports a growing file once per interval: quiet must outlast that.
        quiet = settings.quiet_period
        if polling:
            quiet = max(quiet, settings.poll_interval)
        self.debouncer = Debouncer(self._signature, quiet=quiet, max_wait=settings.max_wait)
        # Deletions held by the mass-deletion guard, as this daemon knows them.
        self.hold = HoldState()
        self._purge = self._hand_to_purge if self.client is not None else None
        self.writer = Writer(
            root=self.root,
            store=self.store,
            stats=self.stats,
            batch_size=settings.batch_size,
            deletions=deletions(settings, self.store, self.root, purge=self._purge, hold=self.hold),
            accept=self.accept,
            on_rows=self._rows_written,
            release=self.release,
            outage=self.outage,
            # Longer than the debouncer's quiet period: the deletes a poller sees once
            # per interval are one run.
            run_quiet=max(2.0, 2 * quiet),
        )
        self.files = FileWorkers(
            root=self.root,
            store=self.store,
            processor=self.processor,
            uploads=self.client is not None,
            writer=self.writer,
            retouch=self._retouch,
            threads=settings.workers,
            outage=self.outage,
        )
        self.uploads: UploadDispatcher | None = None
        self._reconcile_wanted = threading.Event()
        self._hold_recheck_at = 0.0
        self._confirmation_seen: dt.datetime | None = None
        self._reconcile_reason = ""
        self._reconcile_thread = threading.Thread(
            target=self._reconcile_loop, name="reconcile", daemon=True
        )
        self._signal: int | None = None
        self._hup = False
        self._reported_stuck = False
        # Files created and not closed yet (a writer holds them), as far as events tell.
        self._open: set[str] = set()
        self._watch_problem: str | None = None
        self._next_watch_attempt = 0.0
        self._watch_limit_reported = False
        self._last_error = LastError(self.stats)
        self.metrics = Metrics() if settings.metrics_listen else None
        self.listener: Listener | None = None
        self._database_check = DatabaseCheck(self.store.ping)

    # --- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        logging.getLogger().addHandler(self._last_error)
        log.info("database: %s", self.store.display_url)
        self.store.open()
        started = False
        try:
            if self.client is not None:
                up = uploader(self.settings, self.client, self.store)
                preflight(self.client, up.pause)
                self.uploads = UploadDispatcher(up, self.store, self.stats, self.outage)
            self.watcher.start()
            log.info("watching %s (%s)", self.root, self.watcher.mode)
            self._start_listener()
            self._start_threads()
            started = True
            self.notifier.ready(self.status_line())
            self.request_reconcile("startup")
            self._loop()
        finally:
            self._shutdown(started)
        return 0

    def _start_listener(self) -> None:
        address = self.settings.metrics_address
        if self.metrics is None or address is None:
            return
        metrics = self.metrics
        self.store.on_written = metrics.rows_written
        pause = None
        if self.uploads is not None:
            self.uploads.uploader.on_upload = metrics.upload_done
            self.uploads.uploader.on_retry = metrics.upload_retries.inc
            self.uploads.uploader.on_text_update = lambda o: metrics.text_updates.labels(o).inc()
            pause = self.uploads.uploader.pause
        metrics.watch(
            queue_depth=self.queue_depth,
            database_up=lambda: not self.outage.down,
            watching=lambda: self._watch_problem is None and self.watcher.alive(),
            deletions_held=lambda: held.rows if (held := self.hold.current) else 0,
            wordpress_paused=(lambda: _kind(pause.condition)) if pause is not None else None,
        )
        self.listener = Listener(*address, metrics.registry, self.trouble)
        self.listener.start()

    def trouble(self) -> str | None:
        """What the health check answers 503 for, or None: not watching the image
        directory, the database not answering, uploads paused for long."""
        if self._watch_problem is not None:
            return self._watch_problem
        if not self.watcher.alive():
            return f"not watching {self.root}: the file watcher has stopped"
        paused = self._pause_state()
        if paused is not None and paused.seconds >= self.settings.wp_pause_unhealthy:
            return f"uploads paused for {duration(paused.seconds)}: {paused.message}"
        held = self.hold.current
        if held is not None:
            return f"deletions held: {held.message}"
        return self._database_check()

    def _pause_state(self) -> PauseState | None:
        return None if self.uploads is None else self.uploads.uploader.pause.state()

    def _start_threads(self) -> None:
        self.writer.start()
        self.files.start()
        if self.uploads is not None:
            self.uploads.start()
        self._reconcile_thread.start()

    def _shutdown(self, started: bool) -> None:
        self.stopping.set()
        self.notifier.stopping(f"stopping: {self.queue_depth()} queued")
        deadline = time.monotonic() + self.settings.stop_timeout
        self.watcher.stop()
        if self.listener is not None:
            self.listener.stop()
        unfinished: list[str] = []
        if started:
            self._reconcile_wanted.set()
            if not self.files.stop(deadline):
                unfinished.append("file workers")
            if not self.writer.stop(deadline):
                unfinished.append("database writes")
            if self.uploads is not None and not self.uploads.stop(deadline):
                unfinished.append(f"{self.uploads.in_flight()} upload(s)")
            self._reconcile_thread.join(max(0.0, deadline - time.monotonic()))
            if self._reconcile_thread.is_alive():
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
            self._take_changes()
            self._dispatch_due()
            now = time.monotonic()
            if self.watcher.handler.lost.is_set():
                self._after_lost_events()
            if self._hup:
                self._hup = False
                self.request_reconcile("SIGHUP")
                if self.uploads is not None:
                    self.uploads.retry_now()
            if next_reconcile is not None and now >= next_reconcile:
                next_reconcile = now + interval
                self.request_reconcile("periodic")
            if now >= next_health:
                next_health = now + HEALTH_EVERY
                self._check_watcher()
            if now >= next_status:
                next_status = now + STATUS_EVERY
                self.notifier.status(self.status_line())
            ping = self.notifier.watchdog_interval
            if ping is not None and now >= next_ping and self.healthy():
                next_ping = now + ping
                self.notifier.watchdog()
        log.info("received %s, stopping", signal.Signals(self._signal).name)

    def _after_lost_events(self) -> None:
        """Changes were dropped: no file is known to be open any more, and a
        reconcile finds what the dropped changes would have said."""
        self.watcher.handler.lost.clear()
        # What was queued before the drop goes first, whatever the back-pressure: a
        # write routed after the reset below would wait for a close that was dropped.
        for _ in range(self.inbox.qsize()):
            try:
                self._route(self.inbox.get_nowait())
            except queue.Empty:
                break
        self.debouncer.events_lost()
        self._open.clear()
        log.warning("file events were lost (queue overflow); reconciling")
        if self.metrics is not None:
            self.metrics.overflows.inc()
        self.request_reconcile("overflow")

    def _take_changes(self) -> None:
        timeout = TICK
        deadline = self.debouncer.next_deadline()
        if deadline is not None:
            timeout = min(TICK, max(0.0, deadline - time.monotonic()))
            if self.files.room() == 0:
                # Paths are due but the workers are full: waking at once would only
                # spin this thread and starve the workers of the GIL.
                timeout = max(timeout, BUSY_WAIT)
        if len(self.debouncer) >= self.settings.queue_size:
            # Back-pressure: leave changes in the inbox (the watcher then waits).
            time.sleep(min(timeout, 0.05))
            return
        try:
            change = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._route(change)
        for _ in range(1000):
            try:
                change = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._route(change)

    def _dispatch_due(self) -> None:
        room = self.files.room()
        if room <= 0:
            return
        for key in self.debouncer.due(room, busy=self.files.is_busy):
            # Read now: the writer closed it, or waited too long. (A file moved in from
            # outside the tree also came as a create, and no close will follow it.)
            self._open.discard(key)
            if not self.files.submit(key):
                self.debouncer.touch(key, closed=True)

    def _route(self, change: Change) -> None:
        """One watcher Change -> debouncer deadlines or writer ops. No I/O but a directory walk."""
        kind = change.kind
        if self._route_sidecar(change):
            return
        if kind in {"created", "written", "closed", "deleted", "recheck"}:
            key = self._file_key(change.path)
            if key is not None:
                if kind == "created":
                    self._track_open(key, True)
                elif kind in {"closed", "deleted"}:
                    self._track_open(key, False)
                # A write waits for its close only when the file was created by an open
                # still held (a copy under way); truncate(2) writes without one, an
                # in-place rewrite is not told apart from it, and a poller sees neither.
                writing = kind == "written" and key in self._open
                self.debouncer.touch(key, closed=kind == "closed", writing=writing)
        elif kind == "moved":
            self._route_move(self._file_key(change.path), self._file_key(change.dest))
        else:
            self._route_dir(kind, self._dir_key(change.path), self._dir_key(change.dest))

    def _route_sidecar(self, change: Change) -> bool:
        """A sidecar (`photo.jpg.json`) written, moved or deleted: its image is looked
        at again, once the sidecar is quiet. True if the change was about one."""
        images = [
            key
            for path in (change.path, change.dest)
            if path.endswith(SIDECAR_SUFFIX)
            and (key := self._file_key(path[: -len(SIDECAR_SUFFIX)])) is not None
        ]
        for key in images:
            self.debouncer.touch(key, closed=change.kind in {"closed", "deleted", "moved"})
        return bool(images)

    def _track_open(self, key: str, is_open: bool) -> None:
        if is_open:
            if len(self._open) < self.settings.queue_size:  # bounded, like everything
                self._open.add(key)
        else:
            self._open.discard(key)

    def _route_dir(self, kind: str, old: str | None, new: str | None) -> None:
        if kind == "dir_created":
            self._check_watch_room()
            self._scan_dir(old)
        elif kind == "dir_deleted" and old is not None:
            self.writer.put(GoneDir(old + "/"))
        elif kind == "dir_moved":
            if old is not None and new is not None:
                self.writer.put(RenameDir(old + "/", new + "/"))
            elif old is not None:
                self.writer.put(GoneDir(old + "/"))
            self._scan_dir(new)

    def _route_move(self, old: str | None, new: str | None) -> None:
        if old is not None and new is not None:
            # The row follows the file (no new upload); the look at `new` then finds
            # it unchanged, or records what changed.
            self.debouncer.forget(old)
            self.writer.put(Rename(old, new))
        elif old is not None:
            self.debouncer.forget(old)
            self.writer.put(Gone(old))  # renamed to a name we ignore, or moved out
        if new is not None:
            self.debouncer.touch(new, closed=True)

    def _check_watch_room(self) -> None:
        """A new directory needs a watch; past the limit watchdog skips it silently."""
        if self.watcher.polling or inotify_room_left(self.root):
            self._watch_limit_reported = False
            return
        if not self._watch_limit_reported:
            self._watch_limit_reported = True
            log.error(
                "out of inotify watches: new directories are not watched, their files are "
                "found by the periodic reconcile only; raise fs.inotify.max_user_watches "
                "(packaging/systemd/60-imgwatch.conf) and restart"
            )

    def _scan_dir(self, key: str | None) -> None:
        """A new or moved-in directory: files may have landed before its watch existed."""
        if key is None:
            return
        for found in walk(self.root, self.accept, subdir=key):
            self.debouncer.touch(found.file_name, closed=True)

    def _file_key(self, path: str) -> str | None:
        """The file_name for a path under the image directory that names a candidate."""
        key = self._dir_key(path)
        if key is None or not self.accept(posixpath.basename(key)):
            return None
        return key

    def _dir_key(self, path: str) -> str | None:
        if not path.startswith(self._prefix):
            return None
        key = path[len(self._prefix) :]
        if not key or any(is_hidden_or_temp(part) for part in key.split("/")):
            return None
        return key

    def _signature(self, key: str) -> Signature:
        try:
            st = os.stat(os.path.join(self.root, key))
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def _retouch(self, key: str) -> None:
        """From a worker thread: look at key again later, via the main loop."""
        self.watcher.handler.put(Change("recheck", os.path.join(self.root, key)))

    def _hand_to_purge(self, rows: list[GoneRow]) -> None:
        """From the writer or a reconcile: media items to delete, then rows, on the
        upload side (the row writer never waits on WordPress)."""
        if self.uploads is not None:
            self.uploads.purge(rows)

    def _rows_written(self, records: list[ImageRecord]) -> None:
        """From the writer: rows to upload, and rows whose words may have changed."""
        if self.uploads is None:
            return
        if any(r.status == PENDING for r in records):
            self.uploads.new_rows()
        changed = [r.file_name for r in records if r.status == DONE]
        if changed:
            self.uploads.words_written(changed)

    # --- health and status ------------------------------------------------------------

    def _check_watcher(self) -> None:
        """Restart a watcher that died; while the image directory is gone (removed,
        not mounted yet) keep trying without blocking the loop, and say so once."""
        trouble = self.watcher.trouble()
        if trouble is None:
            if self._watch_problem is not None:
                log.info("watching %s again", self.root)
                self._watch_problem = None
            return
        now = time.monotonic()
        if now < self._next_watch_attempt:
            return
        if self._watch_problem is None:
            log.error("%s; restarting the watch and reconciling", trouble)
        self.watcher.stop()
        try:
            self.watcher.start()
        except ConfigError:
            raise
        except OSError as exc:
            problem = f"cannot watch {self.root}: {exc.strerror or exc}"
            if problem != self._watch_problem:
                log.error("%s; trying again every %.0fs", problem, RESTART_WATCHER_EVERY)
            self._watch_problem = problem
            self._next_watch_attempt = now + RESTART_WATCHER_EVERY
            return
        # "watching again" is said by the next check, which finds no trouble.
        self.request_reconcile("watcher restart")

    def healthy(self) -> bool:
        """What WATCHDOG=1 vouches for: watching, and every worker thread alive and
        not stuck. Without pings systemd restarts the daemon (WatchdogSec)."""
        threads_ok = self.files.alive() and self.writer.alive()
        uploads_ok = self.uploads is None or self.uploads.alive()
        # Waiting for a missing image directory is what should happen, not a hang:
        # a restart would only exit 78 and stay down.
        watching = self.watcher.alive() or self._watch_problem is not None
        stuck = self.files.stuck(STUCK_AFTER)
        if stuck is not None and not self._reported_stuck:
            log.error(
                "reading %r has taken over %ds; no more watchdog pings, so systemd restarts",
                stuck,
                STUCK_AFTER,
            )
        self._reported_stuck = stuck is not None
        return watching and threads_ok and uploads_ok and stuck is None

    def queue_depth(self) -> int:
        return len(self.debouncer) + self.files.work.qsize() + self.writer.pending()

    def status_line(self) -> str:
        s = self.stats
        doing = "watching" if self._watch_problem is None else "NOT watching, waiting for"
        text = (
            f"{doing} {self.root}: {self.queue_depth()} queued, {s.recorded} recorded, "
            f"{s.rejected} rejected, {s.missing} gone"
        )
        if self.uploads is not None:
            text += f", {s.uploaded} uploaded, {s.upload_failed} upload failures"
        paused = self._pause_state()
        if paused is not None:
            text += f"; uploads paused {duration(paused.seconds)}: {paused.message}"
        held = self.hold.current
        if held is not None:
            text += (
                f"; {held.rows} deletion(s) held, waiting for the files to come back or "
                "imgwatch retry --confirm-deletes"
            )
        if s.last_error:
            text += f"; last error: {s.last_error}"
        return text

    # --- reconciling --------------------------------------------------------------------

    def claim(self, file_name: str) -> bool:
        """For the reconcile (scanner.Claims): a file the watcher is waiting on (being
        written) or a worker is reading is left to them."""
        return file_name not in self.debouncer and self.files.claim(file_name)

    def release(self, file_names: Iterable[str]) -> None:
        self.files.release(file_names)

    def request_reconcile(self, reason: str) -> None:
        self._reconcile_reason = reason
        self._reconcile_wanted.set()

    def _reconcile_loop(self) -> None:
        reconciler = service_reconciler(
            self.settings,
            self.store,
            self.root,
            uploads=self.client is not None,
            claims=self,
            purge=self._purge,
            hold=self.hold,
        )
        # When the last reconcile that went through began: rows `retry` marked before
        # then were in its view, and those it could not read wait for the next
        # periodic one rather than bring a reconcile every RETRY_POLL seconds.
        since: dt.datetime | None = None
        while True:
            wanted = self._reconcile_wanted.wait(RETRY_POLL)
            if self.stopping.is_set():
                return
            reason = self._reconcile_reason if wanted else self._unasked_reason(since)
            if reason is None:
                continue
            self._reconcile_wanted.clear()
            started = utcnow()
            summary = self._run_reconcile(reconciler, reason)
            self._hold_recheck_at = time.monotonic() + HOLD_RECHECK
            if summary is not None and not summary.interrupted:
                since = started

    def _unasked_reason(self, since: dt.datetime | None) -> str | None:
        """Why to reconcile when no event or signal asked: held deletions an operator
        confirmed, or to see whether their files are back; rows `imgwatch retry`
        (another process) marked in the database. None: no reason."""
        try:
            # Asked of the database whether or not this daemon holds any: a --rescan
            # may have held them.
            confirmed = [
                c.confirmed_at
                for c in self.store.conditions()
                if c.kind == DELETIONS_HELD and c.confirmed_at is not None
            ]
            # Once per confirmation: one the reconcile could not apply (more files
            # gone since) is asked for again, with a new time.
            if confirmed and confirmed[0] != self._confirmation_seen:
                self._confirmation_seen = confirmed[0]
                return "confirmed deletes"
            if self.hold.current is not None and time.monotonic() >= self._hold_recheck_at:
                return "held deletes"
            return "retry" if rereads_due(self.store, since) else None
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            return None

    def _run_reconcile(self, reconciler: Reconciler, reason: str) -> ScanSummary | None:
        """One reconcile with its log line, history row and counts; None if it failed."""
        try:
            summary = reconciler.run(cancel=self.stopping)
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            log.warning("%s reconcile not done: the database is unavailable", reason)
            self.stopping.wait(5.0)
            return None
        except ConfigError as exc:
            # A look at held deletions every minute repeats what the watch says.
            level = logging.DEBUG if reason == "held deletes" else logging.ERROR
            log.log(level, "%s reconcile failed: %s", reason, exc)
            self.stopping.wait(5.0)
            return None
        except Exception:
            log.exception("internal error in the %s reconcile", reason)
            return None
        self.outage.ok()
        # A look at whether held deletions' files are back, which found nothing new,
        # is not worth a line (or a history row) a minute.
        quiet = reason == "held deletes" and summary.held and not summary.changes
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s reconcile: %s",
            reason,
            summary.line().removeprefix("rescan: "),
        )
        if self.metrics is not None:
            self.metrics.scan_done(reason, summary.elapsed)
        try:
            if not quiet:
                record_scan(self.store, reason, summary)
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
        self.stats.add("recorded", summary.new + summary.changed)
        self.stats.add("rejected", summary.rejected)
        self.stats.add("missing", summary.missing)
        if self.uploads is not None and not quiet:
            self.uploads.new_rows()
            self.uploads.sweep_text()
        return summary


def _kind(condition: SiteCondition | None) -> str | None:
    return None if condition is None else condition.kind
