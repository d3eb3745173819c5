"""The daemon's upload side: everything that talks to WordPress, on its own threads.

The rows are the queue. The dispatcher asks the store what is due (uploads first,
then media items whose words changed) and hands it to the Uploader's pool; it is
woken by new rows, and every 30 s otherwise. While uploads are paused by a
condition of the site it probes WordPress instead, and keeps the pause in the
database for `imgwatch status`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from imgwatch.daemon.stages import Count, Outage, Stats
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.model import Condition, ConditionKind, TextUpdate, UploadJob, utcnow
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.wordpress.uploader import Uploader

log = logging.getLogger(__name__)

# Names of rows whose words may have changed, kept until looked up; past this many
# a sweep of the whole table is cheaper than the list.
TEXT_NAMES_MAX = 10_000
TEXT_PAGE = 100  # text updates read per query
_PURGING = ("purge", 0)  # the in-flight key of the one purge task at a time


class UploadDispatcher:
    """Feeds due rows to the Uploader's workers; woken by new rows, every 30 s otherwise."""

    RECHECK = 30.0

    def __init__(
        self, uploader: Uploader, store: ImageStore, stats: Stats, outage: Outage | None = None
    ) -> None:
        self.outage = outage or Outage()
        self.uploader = uploader
        self.store = store
        self.stats = stats
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(uploader.workers, thread_name_prefix="upload")
        self._in_flight: dict[tuple[str, int], Future[None]] = {}
        self._backlog: deque[UploadJob | TextUpdate] = deque()
        self._refetch = threading.Event()
        self._retry_requested = False
        # Words to bring to WordPress: of these rows, or (sweep) of any row; a sweep
        # goes through the table in pages, from the id after the last one.
        self._text_names: set[str] = set()
        # Rows of files deleted with IMGWATCH_ON_DELETE=purge, settled one at a time
        # (two rows sharing a media item must not both keep it for the other).
        # By row id: a reconcile while the site is paused hands the same rows again.
        self._purges: dict[int, GoneRow] = {}
        self._text_sweep = False
        self._text_after = 0
        self._sweeps = 0  # sweeps begun: a page read during a new one is not its page
        # The pause as last written to the database, and when.
        self._recorded: tuple[str, str] | None = None
        self._recorded_at = 0.0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="uploads", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def stop(self, deadline: float) -> bool:
        """No new uploads; wait for those under way. A row left `uploading` is resolved
        by the slug lookup at the next start, never uploaded blindly again."""
        self._stopping.set()
        self.wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            futures = list(self._in_flight.values())
        for future in futures:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001, S112 - timeouts and cancellations: reported below
                continue
        if self._recorded is not None:  # a pause of this process is not one any more
            # If the database is down too, the next start clears it (dead_owners).
            with contextlib.suppress(DatabaseUnavailable):
                self.store.clear_condition(ConditionKind.UPLOADS_PAUSED, [self.uploader.owner])
        return self.in_flight() == 0

    def new_rows(self) -> None:
        """Rows that need uploading were written: look them up now."""
        self._refetch.set()
        self.wake.set()

    def words_written(self, names: Iterable[str]) -> None:
        """Rows were written whose words may have changed: bring them to WordPress."""
        with self._lock:
            self._text_names.update(names)
            if len(self._text_names) > TEXT_NAMES_MAX:
                self._text_names.clear()
                self._sweep_locked()
        self.new_rows()

    def purge(self, rows: list[GoneRow]) -> None:
        """Files deleted with IMGWATCH_ON_DELETE=purge: their media items, then rows."""
        with self._lock:
            self._purges.update((row.id, row) for row in rows)
        self.wake.set()

    def sweep_text(self) -> None:
        """After a reconcile (or a restart): any row's words may differ from its media
        item's, a person's edit in the database among them. Look at them all."""
        with self._lock:
            self._sweep_locked()
        self.new_rows()

    def _sweep_locked(self) -> None:
        self._text_sweep, self._text_after = True, 0
        self._sweeps += 1

    def retry_now(self) -> None:
        """An operator asked (SIGHUP): failed uploads are due now, a paused site is
        probed at once."""
        self.uploader.pause.probe_now()
        self._retry_requested = True
        self.new_rows()

    def _run(self) -> None:
        pause = self.uploader.pause
        while not self._stopping.is_set():
            timeout = self.RECHECK
            to_probe = pause.seconds_to_probe()
            if to_probe is not None:
                timeout = min(timeout, to_probe)
            if not self.wake.wait(timeout):
                self._refetch.set()  # scheduled retries come due with time alone
            self.wake.clear()
            if self._stopping.is_set():
                return
            try:
                if not self._paused():
                    self._dispatch()
                self._record_pause()
            except DatabaseUnavailable as exc:
                self.outage.failed(exc)
                self._stopping.wait(5.0)
            except Exception:
                log.exception("internal error dispatching uploads; trying again shortly")
                self._stopping.wait(5.0)

    def _record_pause(self) -> None:
        """Keep the pause in the database for `imgwatch status` (another process):
        when it begins, changes or ends, and once a minute while it lasts."""
        state = self.uploader.pause.state()
        key = None if state is None else (state.kind, state.message)
        now = time.monotonic()
        if key == self._recorded and (key is None or now - self._recorded_at < self.RECHECK * 2):
            return
        owner = self.uploader.owner
        if state is None:
            self.store.clear_condition(ConditionKind.UPLOADS_PAUSED, [owner])
        else:
            self.store.set_condition(
                Condition(
                    ConditionKind.UPLOADS_PAUSED,
                    owner,
                    state.kind,
                    state.message,
                    state.since,
                    utcnow(),
                )
            )
        self._recorded, self._recorded_at = key, now

    def _paused(self) -> bool:
        """Probe a paused site when it is time; True while uploads stay paused."""
        pause = self.uploader.pause
        if pause.condition is None:
            return False
        if not pause.probe_due():
            return True
        condition = self.uploader.client.probe()
        if condition is not None:
            pause.probe_failed(condition)
            return True
        pause.resume()
        self._refetch.set()  # every row that waited is due: read them again
        return False

    def _dispatch(self) -> None:
        if self._refetch.is_set() or not self._backlog:
            self._refetch.clear()
            if self._retry_requested:
                self._retry_requested = False
                # In the rows, not in memory: whatever reads them next sees them due.
                self.store.retry_failed_now()
            with self._lock:
                busy = set(self._in_flight)
                # Words read but not sent yet are looked up again, not dropped.
                self._text_names.update(
                    w.file_name for w in self._backlog if isinstance(w, TextUpdate)
                )
            # The row is the queue: re-read it rather than trust what was read before.
            # Rows under way here are left out (else the backlog never empties, and
            # the words behind it never come).
            uploads = [
                job
                for job in self.store.due_uploads(owner=self.uploader.owner)
                if ("upload", job.id) not in busy
            ]
            # Uploads first: a new item gets its words with it.
            self._backlog = deque(uploads or self._text_updates(busy))
        limit = self.uploader.workers * 2
        with self._lock:
            while (
                self._backlog
                and len(self._in_flight) < limit
                and self.uploader.pause.condition is None
                and not self._stopping.is_set()
            ):
                work = self._backlog.popleft()
                key = ("upload" if isinstance(work, UploadJob) else "text", work.id)
                if key not in self._in_flight:
                    self._in_flight[key] = self._pool.submit(self._run_one, key, work)
            if self._purges and _PURGING not in self._in_flight:
                batch = list(self._purges.values())
                self._purges.clear()
                self._in_flight[_PURGING] = self._pool.submit(self._purge_all, batch)
        # Nothing more is asked for here: a worker that finishes wakes this thread.

    def _text_updates(self, busy: set[tuple[str, int]]) -> list[TextUpdate]:
        """The next words to send: of the rows named since the last look, then the
        next page of a sweep; the first of these with any, or none."""
        while True:
            with self._lock:
                names = list(self._text_names)[:500]
                self._text_names.difference_update(names)
                sweep, after, generation = self._text_sweep, self._text_after, self._sweeps
            if names:
                found = self.store.text_updates_due(names=names)
            elif sweep:
                found = self.store.text_updates_due(after_id=after, limit=TEXT_PAGE)
                with self._lock:
                    if generation == self._sweeps:  # not restarted meanwhile
                        self._text_after = found[-1].id if found else 0
                        self._text_sweep = bool(found)
            else:
                return []
            found = [u for u in found if ("text", u.id) not in busy]
            if found:
                return found

    def _purge_all(self, rows: list[GoneRow]) -> None:
        done = 0
        try:
            for row in rows:
                if self._stopping.is_set() or self.uploader.purge(row) == "waiting":
                    break  # the site is in trouble (or we stop): the rest wait
                done += 1
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
        except Exception:
            log.exception("internal error purging; the next reconcile finds the rest")
            done = len(rows)
        finally:
            with self._lock:
                left = {row.id: row for row in rows[done:]}
                self._purges = {**left, **self._purges}
                self._in_flight.pop(_PURGING, None)
            self.wake.set()

    def _run_one(self, key: tuple[str, int], work: UploadJob | TextUpdate) -> None:
        try:
            if isinstance(work, UploadJob):
                outcome = self.uploader.upload(work)
                if outcome in {"done", "reused"}:
                    self.stats.add(Count.UPLOADED)
                elif outcome == "failed":
                    self.stats.add(Count.UPLOAD_FAILED)
            else:
                outcome = self.uploader.update_text(work)
                if outcome == "gone":
                    self.new_rows()  # its rows are due for upload again
                elif outcome == "waiting":
                    with self._lock:  # sent once the site is back
                        self._text_names.add(work.file_name)
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)  # the row still says what is left to do
        except Exception:
            log.exception(
                "internal error sending %r to WordPress; tried again later", work.file_name
            )
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
            self.wake.set()
