"""The file workers: threads that read a settled path and hand the Writer its row."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from imgwatch.daemon.stages import Outage, StageThreads, take_batch
from imgwatch.daemon.writer import Gone, Upsert, Writer
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.decide import examine
from imgwatch.files.names import row_name
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import find_one
from imgwatch.model import ImageRecord, KnownFile, Status

log = logging.getLogger(__name__)

LOOKUP_BATCH = 64  # settled paths whose rows one query looks up


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
    ) -> None:
        # Small on purpose: the debouncer holds the backlog, this only keeps threads fed.
        super().__init__("file", threads, threads * 32, store=store, outage=outage)
        self.root = root
        self.processor = processor
        self.uploads = uploads
        self.writer = writer
        self.retouch = retouch
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._reading: dict[str, float] = {}  # key -> when a worker started on it

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
        return self._join(deadline)

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
        for k in keys:
            self._one(k, rows.get(row_name(k)))

    def _one(self, key: str, row: KnownFile | None) -> None:
        handed_on = False
        with self._busy_lock:
            self._reading[key] = time.monotonic()
        try:
            handed_on = self.process(key, row)
        except Exception:
            log.exception("internal error processing %r; the next reconcile retries it", key)
        finally:
            with self._busy_lock:
                self._reading.pop(key, None)
            if not handed_on:  # else the Writer releases it once the row is committed
                self.release([key])

    def process(self, key: str, row: KnownFile | None) -> bool:
        """Look at one settled path, given its row as it was just read; True if an
        Upsert for it went to the Writer. Keys are candidate names already (the
        daemon's _file_key filtered them)."""
        found = find_one(self.root, key)
        if found is None:
            self.writer.put(Gone(key))
            return False
        outcome = examine(found, row, self.processor, self.uploads)
        if not isinstance(outcome, ImageRecord):
            return False  # unchanged, or vanished while being read
        if outcome.status == Status.PENDING and outcome.sha256 is None:
            # Changed while being read: not finished after all; wait for quiet again.
            self.retouch(key)
            return False
        self.writer.put(Upsert(outcome, key))
        return True
