"""The file workers: threads that read a settled path and hand the Writer its row.

A burst (many paths settled at once) is read in processes instead (the same
reading processes a rescan uses, started from a fork server on the first
burst): reading a small image is Python work, which threads do not spread over
cores. One file at a time stays in the thread: no process hop for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

from imgwatch.daemon.stages import Outage, StageThreads, take_batch
from imgwatch.daemon.writer import Gone, Upsert, Writer
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.decide import Outcome, examine
from imgwatch.files.names import row_name
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import find_one
from imgwatch.model import ImageRecord, KnownFile, Status
from imgwatch.reconcile.readers import ProcessReaders

log = logging.getLogger(__name__)

LOOKUP_BATCH = 64  # settled paths whose rows one query looks up
# A batch at least this large is read in the reading processes, when there are any.
BURST_MIN = 16
QUEUED_PER_THREAD = 256  # settled paths waiting for a worker, per worker thread


class FileWorkers(StageThreads[str]):
    """Threads that turn a settled path into an op for the Writer."""

    def __init__(
        self,
        *,
        root: Path,
        store: ImageStore,
        processor: FileProcessor,
        uploads: bool,
        writer: Writer,
        retouch: Callable[[str], None],
        threads: int,
        outage: Outage | None = None,
        readers: ProcessReaders | None = None,
    ) -> None:
        # The debouncer holds the backlog, this only keeps the threads fed: enough for
        # the time the main loop waits while the workers are full (routing's
        # BUSY_WAIT) at the rate of a burst read in processes.
        super().__init__("file", threads, threads * QUEUED_PER_THREAD, store=store, outage=outage)
        self.root = root
        self.processor = processor
        self.uploads = uploads
        self.writer = writer
        self.retouch = retouch
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._reading: dict[str, float] = {}  # key -> when a worker started on it
        self.readers = readers

    def prepare_readers(self) -> None:
        """Start the reading processes ahead of a burst, if there are any."""
        if self.readers is not None:
            self.readers.prepare()

    def stuck(self, limit: float) -> str | None:
        """A file some worker has been reading for longer than limit seconds (a hung
        network mount, a dead disk), or None."""
        now = time.monotonic()
        with self._busy_lock:
            for key, since in self._reading.items():
                if now - since > limit:
                    return key
        return None

    def is_busy(self, key: str) -> bool:
        with self._busy_lock:
            return key in self._busy

    def room(self) -> int:
        return self.inbox.maxsize - self.inbox.qsize()

    def claim(self, key: str) -> bool:
        """Take key for reading; False if a worker or a reconcile already has it."""
        with self._busy_lock:
            if key in self._busy:
                return False
            self._busy.add(key)
            return True

    def release(self, keys: Iterable[str]) -> None:
        with self._busy_lock:
            self._busy.difference_update(keys)

    def submit(self, key: str) -> bool:
        """Queue key for a worker; False if it is claimed or the queue is full."""
        if not self.claim(key):
            return False
        try:
            self.inbox.put_nowait(key)
        except queue.Full:
            self.release([key])
            return False
        return True

    def stop(self, deadline: float) -> bool:
        """Drop what has not started (the next start finds it again), finish the rest."""
        dropped = 0
        while True:
            try:
                if self.inbox.get_nowait() is not None:
                    dropped += 1
            except queue.Empty:
                break
        if dropped:
            log.info("%d file(s) not yet read; they are picked up at the next start", dropped)
        joined = self._join(deadline)
        if self.readers is not None:
            self.readers.close()
        return joined

    def _run(self) -> None:
        stopped = False
        while not stopped:
            # What is waiting, up to a batch: one query looks up all their rows. Each
            # thread consumes exactly one stop marker.
            keys, stopped = take_batch(self.inbox, LOOKUP_BATCH)
            if keys:
                self._batch(keys)

    def _batch(self, keys: list[str]) -> None:
        try:
            # No outage.ok() here: reads work on a full disk; a write says it is over.
            rows = self.store.lookup_many([row_name(k) for k in keys])
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            time.sleep(1.0)
            for k in keys:
                self.retouch(k)
            self.release(keys)
            return
        if self.readers is not None and len(keys) >= BURST_MIN:
            self._burst(keys, rows)
            return
        for k in keys:
            self._one(k, rows.get(row_name(k)))

    def _burst(self, keys: list[str], rows: dict[str, KnownFile]) -> None:
        """A batch read in a reading process; in this thread if the processes fail."""
        assert self.readers is not None
        items = [(k, rows.get(row_name(k))) for k in keys]
        now = time.monotonic()
        with self._busy_lock:
            self._reading.update(dict.fromkeys(keys, now))
        try:
            outcomes = self.readers.look_at(self.root, items, self.processor, self.uploads)
            results = outcomes.result()
        except BrokenProcessPool:
            # A reading process died (the OOM killer, a crash in an image library).
            log.warning("a reading process died; reading files in threads from now on")
            self.readers.close()
            self.readers = None
            results = None
        except Exception:
            log.exception("internal error in a reading process; reading this batch here")
            results = None
        finally:
            with self._busy_lock:
                for k in keys:
                    self._reading.pop(k, None)
        if results is None:
            for k, row in items:
                self._one(k, row)
            return
        for k, outcome in zip(keys, results, strict=True):
            self._settle(k, partial(self._hand_on, k, outcome))

    def _one(self, key: str, row: KnownFile | None) -> None:
        with self._busy_lock:
            self._reading[key] = time.monotonic()
        try:
            self._settle(key, partial(self.process, key, row))
        finally:
            with self._busy_lock:
                self._reading.pop(key, None)

    def _settle(self, key: str, work: Callable[[], bool]) -> None:
        """work() for key, which says whether an Upsert went to the Writer; key is let
        go here unless it did (the Writer lets it go once the row is committed)."""
        handed_on = False
        try:
            handed_on = work()
        except Exception:
            log.exception("internal error processing %r; the next reconcile retries it", key)
        finally:
            if not handed_on:
                self.release([key])

    def process(self, key: str, row: KnownFile | None) -> bool:
        """Look at one settled path, given its row as it was just read; True if an
        Upsert for it went to the Writer. Keys are candidate names already (the
        daemon's _file_key filtered them)."""
        found = find_one(self.root, key)
        outcome = None if found is None else examine(found, row, self.processor, self.uploads)
        return self._hand_on(key, outcome)

    def _hand_on(self, key: str, outcome: Outcome | None) -> bool:
        """What a look at key found, to the Writer; True if an Upsert went."""
        if outcome is None:  # nothing there any more
            self.writer.put(Gone(key))
            return False
        if not isinstance(outcome, ImageRecord):
            return False  # unchanged, or vanished while being read
        if outcome.status == Status.PENDING and outcome.sha256 is None:
            # Changed while being read: not finished after all; wait for quiet again.
            self.retouch(key)
            return False
        self.writer.put(Upsert(outcome, key))
        return True
