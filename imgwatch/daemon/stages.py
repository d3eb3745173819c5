"""The daemon's stages behind the debouncer, each on its own thread(s).

    FileWorkers (readers.py) ──ops──> Writer (writer.py) ──rows──> store
        ──due rows──> UploadDispatcher (uploads.py)

FileWorkers read and hash files (several threads; hashing releases the GIL).
The Writer is the only thread that changes rows on behalf of events: it applies
ops in arrival order and groups consecutive upserts into one transaction, so a
burst of files costs a few commits, not one per file. The UploadDispatcher asks
the store what is due (the row is the durable queue) and hands rows to the
Uploader's pool.

Here: the thread base they share, and what they report with.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from enum import StrEnum
from typing import Generic, TypeVar

from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class StageThreads(Generic[T]):
    """Threads fed by one bounded queue, stopped by one marker (None) each."""

    def __init__(
        self, name: str, threads: int, queue_size: int, *, store: ImageStore, outage: Outage | None
    ) -> None:
        self.store = store
        # Told of every database failure and recovery, shared by all stages: one story
        # per outage in the log.
        self.outage = outage or Outage()
        self.inbox: queue.Queue[T | None] = queue.Queue(maxsize=queue_size)
        self._threads = [
            threading.Thread(
                target=self._run, name=name if threads == 1 else f"{name}-{i}", daemon=True
            )
            for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def queued(self) -> int:
        return self.inbox.qsize()

    def _run(self) -> None:
        raise NotImplementedError

    def _join(self, deadline: float) -> bool:
        """Send each thread its stop marker after what is queued; wait for them until
        deadline (a monotonic time). True if all ended."""
        for _ in self._threads:
            self.inbox.put(None)
        return self._wait(deadline)

    def _wait(self, deadline: float) -> bool:
        """Wait for the threads until deadline; True if all ended."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


def take_batch(
    inbox: queue.Queue[T | None], limit: int, timeout: float | None = None
) -> tuple[list[T], bool]:
    """Wait for one item (at most `timeout` seconds, then take none), then take what
    else is waiting, up to `limit` in all.

    The flag says the stop marker (None) was taken: nothing after it is taken, and
    what came before it is still to be done.
    """
    try:
        first = inbox.get(timeout=timeout)
    except queue.Empty:
        return [], False
    if first is None:
        return [], True
    items = [first]
    while len(items) < limit:
        try:
            more = inbox.get_nowait()
        except queue.Empty:
            break
        if more is None:
            return items, True
        items.append(more)
    return items, False


class Count(StrEnum):
    """What STATUS= and the log count."""

    RECORDED = "recorded"
    REJECTED = "rejected"
    MISSING = "missing"
    UPLOADED = "uploaded"
    UPLOAD_FAILED = "upload_failed"


class Stats:
    """Counters for STATUS= and the log; updated from several threads."""

    def __init__(self) -> None:
        self._counts: Counter[Count] = Counter()
        self._lock = threading.Lock()
        self.last_error = ""

    def add(self, what: Count, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    def __getitem__(self, what: Count) -> int:
        return self._counts[what]


class Outage:
    """One story per database outage in the log, not one line per file per second.

    The first failure is logged at once; while it lasts, a reminder a minute; when
    any database call succeeds again, how long it lasted. Nothing is lost meanwhile:
    files wait in the debouncer, writes in the Writer, uploads in their rows.
    """

    REMIND_EVERY = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_said = 0.0

    def failed(self, exc: DatabaseUnavailable) -> None:
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = self._last_said = now
                log.error("%s; retrying, nothing is lost meanwhile", exc)
            elif now - self._last_said >= self.REMIND_EVERY:
                self._last_said = now
                log.warning("database still unavailable after %.0fs: %s", now - self._since, exc)

    @property
    def down(self) -> bool:
        """Whether the last database call failed (and none has succeeded since)."""
        return self._since is not None

    def ok(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is not None:
                log.info("database is back after %.0fs", time.monotonic() - self._since)
                self._since = None


class LastError(logging.Handler):
    """Keeps the latest warning or error line for `STATUS=` (messages hold no secrets)."""

    def __init__(self, stats: Stats) -> None:
        super().__init__(logging.WARNING)
        self.stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        self.stats.last_error = record.getMessage().splitlines()[0][:200]
