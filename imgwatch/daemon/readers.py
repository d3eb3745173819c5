"""The file workers: threads that read a settled path and hand the Writer its row.

A burst (many paths settled at once) is read in processes instead (the same
reading processes a rescan uses, started from a fork server as the daemon
starts): reading a small image is Python work, which threads do not spread over
cores. One file at a time stays in the thread: no process hop for it. A
directory moved in whole is read whole (daemon/arrivals.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from imgwatch.daemon.arrivals import AHEAD_PER_PROCESS, ArrivedDir, BusyDirs, read_ahead
from imgwatch.daemon.stages import Outage, StageThreads, take_batch
from imgwatch.daemon.writer import Gone, Upsert, Writer
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.decide import VANISHED, Outcome, ToRead, examine
from imgwatch.files.names import ImageNameFilter, row_name
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import find_one, walk
from imgwatch.model import ImageRecord, KnownFile, Status
from imgwatch.reconcile.readers import ProcessReaders

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOKUP_BATCH = 64  # settled paths whose rows one query looks up
# A batch at least this large is read in the reading processes, when there are any.
BURST_MIN = 16
QUEUED_PER_THREAD = 256  # settled paths waiting for a worker, per worker thread


class FileWorkers(StageThreads[str | ArrivedDir]):
    """Threads that turn a settled path, or a directory that arrived whole, into ops
    for the Writer."""

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
        accept: ImageNameFilter,
        rewalk: Callable[[str], None],
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
        # Arrived directories are walked by this name filter; rewalk(key) hands one
        # back to the router, to go a path at a time.
        self.accept = accept
        self.rewalk = rewalk
        self._busy: set[str] = set()
        # Directories queued or being read whole, under the same lock as _busy.
        self._busy_dirs = BusyDirs()
        self._busy_lock = threading.Lock()
        # Held while a directory's outcomes are handed on, so that no op of a move
        # of it is put before them (leaving()).
        self._hand_over = threading.Lock()
        self._reading: dict[str, float] = {}  # key -> when a worker started on it
        self._stopping = threading.Event()
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
            return self._taken(key)

    def _taken(self, key: str) -> bool:
        """Under the claims lock: whether a worker, a reconcile or the reading of a
        directory has key."""
        return key in self._busy or self._busy_dirs.covers(key)

    def room(self) -> int:
        return self.inbox.maxsize - self.inbox.qsize()

    def claim(self, key: str) -> bool:
        """Take key for reading; False if a worker or a reconcile already has it."""
        with self._busy_lock:
            if self._taken(key):
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

    def arrived(self, key: str) -> bool:
        """A directory moved in from outside the tree: queue it to be read whole, its
        paths claimed meanwhile. False when the queue is full: then it goes a path at
        a time."""
        job = ArrivedDir(key)
        with self._busy_lock:
            self._busy_dirs.add(job)
        try:
            self.inbox.put_nowait(job)
        except queue.Full:
            self._done_with(job)
            return False
        return True

    def arriving(self, key: str) -> bool:
        """Whether key lies under a directory being read whole (or queued to be)."""
        with self._busy_lock:
            return self._busy_dirs.covers(key)

    def leaving(self, prefix: str) -> None:
        """A directory ("dir/") moved or deleted: a directory being read whole that is
        it or lies under it stops where it is; one it lies under stops, and the rest
        of it goes a path at a time (what it recorded is then found unchanged).
        Nothing of theirs is handed on to the Writer after this returns, so the
        move's or the delete's op, put after it, comes after all of their rows."""
        with self._hand_over, self._busy_lock:
            for job in self._busy_dirs:
                if job.prefix.startswith(prefix):
                    job.left = True
                elif prefix.startswith(job.prefix):
                    job.left = job.walk_again = True

    def stop(self, deadline: float) -> bool:
        """Drop what has not started (the next start finds it again), finish the rest;
        a directory being read whole is left where its reading is."""
        self._stopping.set()
        dropped: list[str | ArrivedDir] = []
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                dropped.append(item)
        files = sum(1 for item in dropped if isinstance(item, str))
        if files:
            log.info("%d file(s) not yet read; they are picked up at the next start", files)
        for item in dropped:
            if isinstance(item, ArrivedDir):
                log.info("directory %r not yet read; it is picked up at the next start", item.key)
                self._done_with(item)
        joined = self._join(deadline)
        if self.readers is not None:
            self.readers.close()
        return joined

    def _run(self) -> None:
        stopped = False
        while not stopped:
            # What is waiting, up to a batch: one query looks up all their rows. Each
            # thread consumes exactly one stop marker.
            taken: tuple[list[str | ArrivedDir], bool] = take_batch(self.inbox, LOOKUP_BATCH)
            items, stopped = taken
            keys = [item for item in items if isinstance(item, str)]
            if keys:
                self._batch(keys)
            for item in items:
                if isinstance(item, ArrivedDir):
                    self._read_arrived(item)

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
        readers = self.readers
        with self._reading_now(keys):
            results = self._from_readers(
                lambda: readers.look_at(self.root, items, self.processor, self.uploads).result()
            )
        if results is None:
            for k, row in items:
                self._one(k, row)
            return
        for k, outcome in zip(keys, results, strict=True):
            self._settle(k, partial(self._hand_on, k, outcome))

    def _from_readers(self, read: Callable[[], T]) -> T | None:
        """What read() got from the reading processes; None if they failed, and the
        caller reads the files in this thread."""
        try:
            return read()
        except BrokenProcessPool:
            self._readers_died()
        except Exception:
            log.exception("internal error in a reading process; reading these files here")
        return None

    def _readers_died(self) -> None:
        """A reading process died (the OOM killer, a crash in an image library)."""
        readers, self.readers = self.readers, None
        if readers is not None:
            log.warning("a reading process died; reading files in threads from now on")
            readers.close()

    # --- a directory that arrived whole -----------------------------------------------

    def _read_arrived(self, job: ArrivedDir) -> None:
        """Read a directory that arrived whole, if no row is under its name (it is new);
        else hand it back to the router, to go a path at a time, each looked up."""
        new = False
        try:
            new = not job.left and not self.store.has_rows_under(job.prefix)
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)  # a path at a time, each waits out the outage
        try:
            if new:
                self._read_whole(job)
        except Exception:
            log.exception(
                "internal error reading directory %r; the next reconcile reads it", job.key
            )
        finally:
            self._done_with(job)
        if job.walk_again or not (new or job.left):
            self.rewalk(job.key)

    def _done_with(self, job: ArrivedDir) -> None:
        with self._busy_lock:
            self._busy_dirs.discard(job)

    def _read_whole(self, job: ArrivedDir) -> None:
        began = time.monotonic()
        log.info("directory %r moved in: reading it whole", job.key)
        found = walk(self.root, self.accept, subdir=job.key)
        ahead = AHEAD_PER_PROCESS * (self.readers.processes if self.readers is not None else 1)

        def stopped() -> bool:
            return job.left or self._stopping.is_set()

        files = 0
        for chunk, future in read_ahead(found, self._read_chunk, ahead, stopped):
            outcomes = self._outcomes(chunk, future)  # the chunks out are waited for
            with self._hand_over:
                if not job.left:
                    self._hand_on_chunk(chunk, outcomes)
                    files += len(chunk)
        if job.left:
            log.info("directory %r moved or deleted while it was read", job.key)
        elif self._stopping.is_set():
            log.info("stopping: the rest of directory %r is read at the next start", job.key)
        else:
            took = time.monotonic() - began
            log.info("directory %r read: %d file(s) in %.1fs", job.key, files, took)

    def _read_chunk(self, chunk: list[ToRead]) -> Future[list[Outcome]]:
        """A chunk's outcomes, from a reading process if there are any."""
        readers = self.readers
        if readers is not None:
            sent = self._from_readers(lambda: readers.examine(chunk, self.processor, self.uploads))
            if sent is not None:
                return sent
        read_here: Future[list[Outcome]] = Future()
        read_here.set_result(self._examine_here(chunk))
        return read_here

    def _outcomes(self, chunk: list[ToRead], future: Future[list[Outcome]]) -> list[Outcome]:
        # Counted as reading while waited for, not while the outcomes wait for room
        # at the Writer: a database down for long must not look like a hung read,
        # and get the daemon restarted.
        with self._reading_now([chunk[0][0].file_name]):
            outcomes = self._from_readers(future.result)
        return outcomes if outcomes is not None else self._examine_here(chunk)

    def _examine_here(self, chunk: list[ToRead]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._reading_now([chunk[0][0].file_name]):
            for found, row in chunk:
                try:
                    outcomes.append(examine(found, row, self.processor, self.uploads))
                except Exception:
                    log.exception(
                        "internal error processing %r; the next reconcile retries it",
                        found.file_name,
                    )
                    outcomes.append(VANISHED)  # nothing to hand on
        return outcomes

    @contextmanager
    def _reading_now(self, keys: list[str]) -> Iterator[None]:
        """While keys are read: a read that hangs (a dead network mount) shows as
        stuck (stuck())."""
        now = time.monotonic()
        with self._busy_lock:
            self._reading.update(dict.fromkeys(keys, now))
        try:
            yield
        finally:
            with self._busy_lock:
                for key in keys:
                    self._reading.pop(key, None)

    def _hand_on_chunk(self, chunk: list[ToRead], outcomes: list[Outcome]) -> None:
        """Each file's outcome to the Writer, the file claimed on its own until its row
        is committed; one a worker took meanwhile (a write to it after it arrived) is
        left to that worker, which reads it again."""
        keys = [found.file_name for found, _row in chunk]
        with self._busy_lock:
            mine = [k not in self._busy for k in keys]
            self._busy.update(k for k, free in zip(keys, mine, strict=True) if free)
        for key, outcome, free in zip(keys, outcomes, mine, strict=True):
            if free:
                self._settle(key, partial(self._hand_on, key, outcome))

    # --- a path at a time -------------------------------------------------------------

    def _one(self, key: str, row: KnownFile | None) -> None:
        with self._reading_now([key]):
            self._settle(key, partial(self.process, key, row))

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
