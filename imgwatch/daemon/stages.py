"""The daemon's moving parts behind the debouncer, each on its own thread(s).

    FileWorkers ──ops──> Writer ──rows──> store ──due rows──> UploadDispatcher (uploads.py)

FileWorkers read and hash files (several threads; hashing releases the GIL).
The Writer is the only thread that changes rows on behalf of events: it applies
ops in arrival order and groups consecutive upserts into one transaction, so a
burst of files costs a few commits, not one per file. The UploadDispatcher asks
the store what is due (the row is the durable queue) and hands rows to the
Uploader's pool.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from imgwatch.db.store import (
    DONE,
    MISSING,
    PENDING,
    REJECTED,
    ImageRecord,
    ImageStore,
    KnownFile,
    chunks,
)
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.decide import FileProcessor, row_name, unstorable_reason
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import find_one, walk
from imgwatch.reconcile.deletions import Deletions, GoneRow
from imgwatch.reconcile.reconciler import examine

log = logging.getLogger(__name__)

LOOKUP_BATCH = 64  # settled paths whose rows one query looks up
LOOKUP_CHUNK = 500  # names per query when many are looked up at once

T = TypeVar("T")


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


# --- what the Writer is asked to do --------------------------------------------


@dataclass(frozen=True, slots=True)
class Upsert:
    record: ImageRecord
    key: str  # the path's name as claimed; the row's file_name may be a stand-in


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class RenameDir:
    old_prefix: str  # "dir/"
    new_prefix: str


@dataclass(frozen=True, slots=True)
class Gone:
    file_name: str


@dataclass(frozen=True, slots=True)
class GoneDir:
    prefix: str


Op = Upsert | Rename | RenameDir | Gone | GoneDir


@dataclass(slots=True)
class Stats:
    """Counters for STATUS= and the log; updated from several threads."""

    recorded: int = 0
    rejected: int = 0
    missing: int = 0
    uploaded: int = 0
    upload_failed: int = 0
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


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


# --- reading files --------------------------------------------------------------


class FileWorkers:
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
        self.outage = outage or Outage()
        self.root = root
        self.store = store
        self.processor = processor
        self.uploads = uploads
        self.writer = writer
        self.retouch = retouch
        # Small on purpose: the debouncer holds the backlog, this only keeps threads fed.
        self.work: queue.Queue[str | None] = queue.Queue(maxsize=threads * 32)
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._reading: dict[str, float] = {}  # key -> when a worker started on it
        self._threads = [
            threading.Thread(target=self._run, name=f"file-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

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
        return self.work.maxsize - self.work.qsize()

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
            self.work.put_nowait(key)
        except queue.Full:
            self.release([key])
            return False
        return True

    def stop(self, deadline: float) -> bool:
        """Drop what has not started (the next start finds it again), finish the rest."""
        dropped = 0
        while True:
            try:
                if self.work.get_nowait() is not None:
                    dropped += 1
            except queue.Empty:
                break
        if dropped:
            log.info("%d file(s) not yet read; they are picked up at the next start", dropped)
        for _ in self._threads:
            self.work.put(None)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _run(self) -> None:
        stopped = False
        while not stopped:
            # What is waiting, up to a batch: one query looks up all their rows. Each
            # thread consumes exactly one stop marker.
            keys, stopped = take_batch(self.work, LOOKUP_BATCH)
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
        if outcome.status == PENDING and outcome.sha256 is None:
            # Changed while being read: not finished after all; wait for quiet again.
            self.retouch(key)
            return False
        self.writer.put(Upsert(outcome, key))
        return True


# --- writing rows -------------------------------------------------------------------


class Writer:
    """Applies ops in order on one thread; consecutive upserts share a transaction.

    Deletes are gathered into a run and settled once no delete came for
    `run_quiet` seconds (or the run is RUN_MAX old). A run is judged by the
    mass-deletion guard (deletions.py) together with the runs of the DELETE_WINDOW
    before it, so that a wipe spread over many runs is held too. A file back
    meanwhile (an editor's save, a sync tool refilling the folder) is not deleted."""

    RUN_MAX = 30.0
    DELETE_WINDOW = 600.0

    def __init__(
        self,
        *,
        root: Path,
        store: ImageStore,
        stats: Stats,
        batch_size: int,
        deletions: Deletions,
        accept: ImageNameFilter,
        on_rows: Callable[[list[ImageRecord]], None],
        release: Callable[[Iterable[str]], None] = lambda _names: None,
        outage: Outage | None = None,
        run_quiet: float = 2.0,
    ) -> None:
        self.outage = outage or Outage()
        self.root = root
        # Files stay claimed (see scanner.Claims) until their rows are committed.
        self.release = release
        self.store = store
        self.stats = stats
        self.batch_size = batch_size
        self.deletions = deletions
        self.accept = accept
        self.on_rows = on_rows
        self.run_quiet = run_quiet
        self.ops: queue.Queue[Op | None] = queue.Queue(maxsize=max(100, batch_size * 2))
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._stopping = threading.Event()
        # The run of deletes being gathered (names and directories), when it began
        # and when its last delete came.
        self._gone: set[str] = set()
        self._gone_dirs: set[str] = set()
        self._run_began = self._run_last = 0.0
        # Runs settled within DELETE_WINDOW: (when, rows); and the live rows before them.
        self._recent: deque[tuple[float, int]] = deque()
        self._window_base = 0

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def put(self, op: Op) -> None:
        self.ops.put(op)

    def pending(self) -> int:
        return self.ops.qsize() + len(self._gone) + len(self._gone_dirs)

    def stop(self, deadline: float) -> bool:
        self.ops.put(None)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()  # a database still down at the deadline is not waited for
        self._thread.join(1.0)
        return not self._thread.is_alive()

    def _run(self) -> None:
        done = False
        while not done:
            taken: tuple[list[Op], bool] = take_batch(self.ops, self.batch_size, self._run_due_in())
            batch, done = taken
            if batch:
                self._with_retry(partial(self._apply, batch), batch)
            if self._run_due_in() == 0.0 and not done:
                self._with_retry(self._settle_run, [])
        # Deletes not settled yet are left to the next start's reconcile, which sees
        # the whole tree (a stop in the middle of a wipe must not apply half of it).
        self._forget_run()

    def _run_due_in(self) -> float | None:
        """Seconds until the run of deletes is to be settled; None without one."""
        if not (self._gone or self._gone_dirs):
            return None
        now = time.monotonic()
        due = min(self._run_last + self.run_quiet, self._run_began + self.RUN_MAX)
        return max(0.0, due - now)

    def _with_retry(self, action: Callable[[], None], batch: list[Op]) -> None:
        pause = 1.0
        while True:
            try:
                action()
                self.outage.ok()
                return
            except DatabaseUnavailable as exc:
                if self._stopping.is_set():
                    log.error(
                        "%s; %d change(s) not written, the next start reconciles them",
                        exc,
                        len(batch) + len(self._gone) + len(self._gone_dirs),
                    )
                    self._release_batch(batch)
                    self._forget_run()
                    return
                self.outage.failed(exc)
                self._stopping.wait(pause)
                pause = min(pause * 2, 10.0)
            except Exception:
                log.exception(
                    "internal error writing %d change(s); the next reconcile redoes them",
                    len(batch),
                )
                self._release_batch(batch)
                if not batch:
                    self._forget_run()
                return

    def _release_batch(self, batch: list[Op]) -> None:
        self.release(op.key for op in batch if isinstance(op, Upsert))

    def _apply(self, batch: list[Op]) -> None:
        records: list[Upsert] = []
        for op in batch:
            if isinstance(op, Upsert):
                records.append(op)
                continue
            self._flush(records)
            if isinstance(op, Rename):
                self._rename(op)
            elif isinstance(op, RenameDir):
                self._rename_dir(op)
            elif isinstance(op, Gone):
                self._note_gone(op.file_name)
            else:
                self._note_gone_dir(op.prefix)
        self._flush(records)

    def _flush(self, ops: list[Upsert]) -> None:
        if not ops:
            return
        records = [op.record for op in ops]
        self.store.upsert(records)
        self.release(op.key for op in ops)
        ops.clear()
        rejected = sum(1 for r in records if r.status == REJECTED)
        self.stats.add("rejected", rejected)
        self.stats.add("recorded", sum(1 for r in records if r.status in {DONE, PENDING}))
        self.on_rows(records)

    def _rename(self, op: Rename) -> None:
        # `rm x; mv y x`: x's row goes first (y's row, and its media, move to x).
        self._settle_before_move(lambda n: n in (op.old, op.new))
        # A new name no row can hold gets its own (rejected) row when it is looked at.
        if unstorable_reason(op.new) is None and self.store.rename(row_name(op.old), op.new):
            log.info("moved %r -> %r", op.old, op.new)
        else:
            self._note_gone(op.old)  # no row to move, or the new name has its own row

    def _rename_dir(self, op: RenameDir) -> None:
        # `rm -rf d; mv d.new d`, or a file deleted just before its directory moved:
        # the deleted rows go first, so that the rows that move are the files'.
        self._settle_before_move(
            lambda n: n.startswith(op.old_prefix) or n.startswith(op.new_prefix)
        )
        if unstorable_reason(op.old_prefix) or unstorable_reason(op.new_prefix):
            self._note_gone_dir(row_name(op.old_prefix))
            return
        moved, stuck = self.store.rename_prefix(op.old_prefix, op.new_prefix)
        if moved:
            old, new = op.old_prefix.rstrip("/"), op.new_prefix.rstrip("/")
            log.info("moved directory %r -> %r (%d file(s))", old, new, moved)
        for name in stuck:
            self._note_gone(name)

    def _note_gone(self, key: str) -> None:
        self._noted()
        self._gone.add(key)

    def _note_gone_dir(self, prefix: str) -> None:
        self._noted()
        self._gone_dirs.add(prefix)

    def _noted(self) -> None:
        now = time.monotonic()
        if not (self._gone or self._gone_dirs):
            self._run_began = now
        self._run_last = now

    def _forget_run(self) -> None:
        self._gone.clear()
        self._gone_dirs.clear()

    def _settle_before_move(self, touched: Callable[[str], bool]) -> None:
        """A move is about to be applied: if the run holds deletes of names it
        touches, settle the run first; the files at those names now are the moved
        ones, not the deleted ones."""
        if any(touched(name) for name in (*self._gone, *self._gone_dirs)):
            self._settle_run(replaced=touched)

    def _settle_run(self, replaced: Callable[[str], bool] = lambda _name: False) -> None:
        """The run of deletes is over: its rows whose file is still gone (or was
        replaced by a move), judged by the guard with the runs just before it."""
        rows: dict[str, KnownFile] = {}
        for chunk in chunks([row_name(key) for key in self._gone], LOOKUP_CHUNK):
            rows.update(self.store.lookup_many(chunk))
        for prefix in self._gone_dirs:
            rows.update(self.store.rows_under(prefix))
        self._forget_run()
        keep_missing = self.deletions.policy == "missing"
        gone = [
            GoneRow(row.id, name)
            for name, row in rows.items()
            # back already (a save that replaces the file): its own event follows
            if (replaced(name) or not os.path.lexists(os.path.join(self.root, name)))
            and not (keep_missing and row.status == MISSING)
        ]
        if not gone:
            return
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > self.DELETE_WINDOW:
            self._recent.popleft()
        # Rows marked missing before (forgotten or purged now) were not counted live.
        live = self.store.count_live() + sum(1 for r in rows.values() if r.status == MISSING)
        if not self._recent:
            self._window_base = live
        settled, _held = self.deletions.settle(
            gone,
            max(live, self._window_base),
            whole_tree=False,
            empty_tree=next(walk(self.root, self.accept), None) is None,
            earlier=sum(n for _, n in self._recent),
        )
        if settled:
            self._recent.append((now, settled))
            self.stats.add("missing", settled)
