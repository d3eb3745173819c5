"""Reconcile: make the database agree with what is on disk, once.

The same code runs for `imgwatch --rescan`, at daemon start, and periodically.
Unchanged files (same size and mtime as their `done` or `rejected` row) are
never opened, so a reconcile of a large, settled archive costs one walk and
one query.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from imgwatch.db.store import (
    DONE,
    FAILED,
    FILE_NAME_MAX,
    GONE,
    MISSING,
    PENDING,
    REJECTED,
    SETTLED,
    STATE,
    STATE_ID,
    STATE_MTIME,
    STATE_SIDECAR,
    STATE_SIZE,
    FileState,
    ImageRecord,
    KnownFile,
    PreparedRows,
)
from imgwatch.files.decide import FileProcessor, row_name, stand_in_name, unstorable_reason
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import FoundFile, WalkState, check_image_dir, walk
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, GoneRows

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ScanSummary:
    """What one reconcile did, for the summary line and the exit code."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    missing: int = 0
    failed: int = 0
    busy: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    held: int = 0  # rows whose deletion the mass-deletion guard holds (deletions.py)
    read: int = 0  # files read (new, changed, rejected ...), and their bytes
    read_bytes: int = 0

    @property
    def changes(self) -> int:
        """Rows this reconcile recorded anew or settled as gone (a file that fails
        to be read fails again each time: not a change)."""
        return self.new + self.changed + self.rejected + self.missing

    def line(self) -> str:
        return (
            f"rescan: {self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.rejected} rejected, {self.missing} missing, {self.failed} failed, "
            f"{self.busy} still being written, in {self.elapsed:.2f}s"
            + (" (interrupted)" if self.interrupted else "")
            + (f"; {self.held} deletion(s) held" if self.held else "")
        )


UNCHANGED = "unchanged"
VANISHED = "vanished"


def examine(
    found: FoundFile, row: KnownFile | None, processor: FileProcessor, uploads: bool
) -> ImageRecord | str:
    """What one found file means for its row: a record to write, or why there is none."""
    if _is_unchanged(found, row):
        return UNCHANGED
    unstorable = unstorable_reason(found.file_name)
    reason = unstorable or found.problem
    if reason is not None:
        name = found.file_name if unstorable is None else stand_in_name(found.file_name)
        return processor.reject(name, reason, found.size_bytes, found.mtime_ns, found.file_name)
    record = processor.process(
        found.file_name,
        found.path,
        found.size_bytes,
        found.mtime_ns,
        has_sidecar=found.sidecar_mtime_ns is not None,
    )
    if record is None:
        return VANISHED
    settle_status(record, row, uploads)
    return record


# What reading one file gave: a record to write, UNCHANGED or VANISHED.
Outcome = ImageRecord | str
ToRead = tuple[FoundFile, KnownFile | None]  # a file to read, and its row if any


class Readers(Protocol):
    """Reads files elsewhere (other processes) while the reconcile writes rows."""

    def available(self) -> bool: ...

    def submit(
        self, files: list[ToRead], processor: FileProcessor, uploads: bool
    ) -> list[Future[list[Outcome]]]:
        """Start reading; each future gives the outcomes of a run of `files`, in order."""
        ...


class Progress(Protocol):
    """Told, every so often, how many files the reconcile has looked at so far, and
    how many of them (and how many bytes) it read; see imgwatch/progress.py."""

    def __call__(self, seen: int, read: int, read_bytes: int) -> None: ...


class Rows(GoneRows, Protocol):
    """What a reconcile reads and writes: the store, or a dry run's stand-in."""

    def file_states(self) -> dict[str, FileState]: ...

    def lookup_many(self, file_names: Sequence[str]) -> dict[str, KnownFile]: ...

    def prepare_upsert(self, records: Sequence[ImageRecord]) -> PreparedRows: ...

    def write_prepared(self, prepared: PreparedRows) -> None: ...


class Claims(Protocol):
    """Who is reading which file, shared with the daemon's file workers.

    A reconcile that runs while the daemon watches claims each file before reading
    it, and releases it only once its row is committed; a worker does the same. So
    a file is never read by both, and the second one finds the first one's row.
    """

    def claim(self, file_name: str) -> bool:
        """Take file_name; False if someone else has it (or it is still being written)."""
        ...

    def release(self, file_names: Iterable[str]) -> None: ...


class Reconciler:
    """Walks the image directory and brings the images table in line with it."""

    def __init__(
        self,
        store: Rows,
        image_dir: Path,
        accept: ImageNameFilter,
        processor: FileProcessor,
        batch_size: int,
        uploads: bool = False,
        claims: Claims | None = None,
        readers: Readers | None = None,
        progress: Progress | None = None,
        deletions: Deletions | None = None,
    ) -> None:
        self.store = store
        # What becomes of rows whose file is gone (default: marked missing, guarded).
        self.deletions = deletions or Deletions(
            store, policy="missing", guard=DeleteGuard(), where=str(image_dir)
        )
        self.image_dir = image_dir
        self.accept = accept
        self.processor = processor
        self.batch_size = batch_size
        self.uploads = uploads
        self.claims = claims
        # Only without claims: a rescan of its own, not a reconcile inside the daemon.
        self.readers = readers if claims is None else None
        self.progress = progress
        self._in_flight: tuple[list[ToRead], list[Future[list[Outcome]]]] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None

    def run(self, cancel: threading.Event | None = None) -> ScanSummary:
        """One reconcile. When `cancel` is set midway it stops early and marks nothing
        missing (an unfinished walk cannot tell what is gone)."""
        started = time.monotonic()
        root = check_image_dir(self.image_dir)
        summary = ScanSummary()
        self._in_flight = self._writing = None  # nothing left over from a failed run
        # Rows not (yet) seen on disk: each file's row is taken out as the walk finds
        # it, so what is left at the end is what is gone.
        unseen = self.store.file_states()
        live = sum(1 for row in unseen.values() if row[STATE] != GONE)
        progress = self.progress
        seen = 0
        todo: list[tuple[FoundFile, str, bool]] = []  # to read: file, row name, has a row
        state = WalkState()
        try:
            for found in walk(root, self.accept, state):
                if cancel is not None and cancel.is_set():
                    summary.interrupted = True
                    break
                file_name = found.file_name
                name = file_name if _plain(file_name) else row_name(file_name)
                seen += 1
                if progress is not None and not seen % _PROGRESS_EVERY:
                    progress(seen, summary.read, summary.read_bytes)
                row = unseen.pop(name, None)
                # A settled archive takes only this path: one dict lookup, nothing read.
                if (
                    row is not None
                    and row[STATE] == SETTLED
                    and row[STATE_SIZE] == found.size_bytes
                    and row[STATE_MTIME] == found.mtime_ns
                    and row[STATE_SIDECAR] == found.sidecar_mtime_ns
                ):
                    summary.unchanged += 1
                    continue
                todo.append((found, name, row is not None))
                if len(todo) >= self.batch_size:
                    self._record(todo, summary, cancel)
            if not summary.interrupted:
                self._record(todo, summary, cancel)
            self._write_in_flight(summary)
            self._wait_for_writes()
            if progress is not None:
                progress(seen, summary.read, summary.read_bytes)
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None
        if not summary.interrupted:
            self._settle_gone(root, unseen, live, seen, state, summary)
        summary.elapsed = time.monotonic() - started
        return summary

    def _record(
        self,
        todo: list[tuple[FoundFile, str, bool]],
        summary: ScanSummary,
        cancel: threading.Event | None,
    ) -> None:
        """Read a batch of new or changed files and write their rows in one transaction."""
        held: list[str] = []  # claimed names, released once their rows are committed
        mine = todo
        try:
            if self.claims is not None:
                # Only what no worker has (being written or read); rows looked up after
                # the claim, since a worker may have recorded them after `known` was read.
                mine = [t for t in todo if self._take(t[0].file_name, held)]
                rows = self.store.lookup_many([t[1] for t in mine])
            else:
                rows = self.store.lookup_many([t[1] for t in todo if t[2]])
            files = [(found, rows.get(name)) for found, name, _ in mine]
            readers = self.readers
            if readers is not None and len(files) >= _READERS_MIN and readers.available():
                # Read in the other processes while the batch before is written.
                try:
                    futures = readers.submit(files, self.processor, self.uploads)
                except BrokenProcessPool:
                    self._readers_died()
                else:
                    self._write_in_flight(summary)
                    self._in_flight = (files, futures)
                    return
            outcomes: list[Outcome] = []
            for found, row in files:
                if cancel is not None and cancel.is_set():
                    summary.interrupted = True
                    break
                outcomes.append(examine(found, row, self.processor, self.uploads))
            self._write(files, outcomes, summary)
        finally:
            if held:
                self.claims.release(held)  # type: ignore[union-attr]
            todo.clear()

    def _write_in_flight(self, summary: ScanSummary) -> None:
        if self._in_flight is not None:
            files, futures = self._in_flight
            self._in_flight = None
            try:
                outcomes = [o for f in futures for o in f.result()]
            except BrokenProcessPool:
                self._readers_died()
                outcomes = [examine(f, row, self.processor, self.uploads) for f, row in files]
            records = self._tally(files, outcomes, summary)
            # Made ready here while the batch before is still being written, then
            # written from a thread, so that while the database takes the rows (and
            # flushes them), this thread goes on walking and handing out files.
            prepared = self.store.prepare_upsert(records) if records else None
            self._wait_for_writes()
            if prepared is not None:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="rescan-writer")
                self._writing = self._writer.submit(self.store.write_prepared, prepared)

    def _readers_died(self) -> None:
        # A reading process died (the OOM killer, a crash in an image library): its
        # files, and everything after them, are read in this process.
        if self.readers is not None:
            log.warning("a reading process died; reading the rest in this process")
            self.readers = None

    def _wait_for_writes(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()  # a database error surfaces here

    def _write(self, files: list[ToRead], outcomes: list[Outcome], summary: ScanSummary) -> None:
        """Count the outcomes and write the records, in one transaction."""
        records = self._tally(files, outcomes, summary)
        self._wait_for_writes()  # one transaction at a time
        if records:
            self.store.write_prepared(self.store.prepare_upsert(records))

    def _tally(
        self, files: list[ToRead], outcomes: list[Outcome], summary: ScanSummary
    ) -> list[ImageRecord]:
        """Count the outcomes; the records to write."""
        batch: list[ImageRecord] = []
        # Fewer outcomes than files when the reconcile was cancelled midway.
        for (found, row), outcome in zip(files, outcomes, strict=False):
            if outcome == UNCHANGED:
                summary.unchanged += 1
            elif isinstance(outcome, ImageRecord):
                self._count(summary, outcome, is_new=row is None)
                batch.append(outcome)
                summary.read += 1
                summary.read_bytes += found.size_bytes
        return batch

    def _take(self, file_name: str, held: list[str]) -> bool:
        assert self.claims is not None
        if not self.claims.claim(file_name):
            return False
        held.append(file_name)
        return True

    def _settle_gone(
        self,
        root: Path,
        unseen: dict[str, FileState],
        live: int,
        seen: int,
        state: WalkState,
        summary: ScanSummary,
    ) -> None:
        """Rows whose file the walk did not find: missing, forgotten or purged, unless
        the mass-deletion guard holds them all (deletions.py)."""
        gone = [
            GoneRow(row[STATE_ID], name)
            for name, row in unseen.items()
            if row[STATE] != GONE
            and not _under_any(name, state.unreadable_dirs)
            # Looked at again: a file that appeared after the walk passed its directory
            # (the daemon records it) is not gone.
            and not os.path.lexists(os.path.join(root, name))
        ]
        # Nothing at all on disk but rows that say otherwise: far more often an
        # unmounted share, or a mount that is not there yet, than a deliberate
        # deletion of everything.
        summary.missing, summary.held = self.deletions.settle(
            gone, live, whole_tree=True, empty_tree=bool(gone) and not seen
        )

    @staticmethod
    def _count(summary: ScanSummary, record: ImageRecord, *, is_new: bool) -> None:
        if record.status == REJECTED:
            summary.rejected += 1
        elif record.status == FAILED:
            summary.failed += 1
        elif record.last_error is not None:  # pending: changed while being read
            summary.busy += 1
        elif is_new:
            summary.new += 1
        else:
            summary.changed += 1


def _is_unchanged(found: FoundFile, row: KnownFile | None) -> bool:
    """Same size and mtime as a row whose facts were read: nothing to re-read.

    What is left to do for such a row (an upload) is found from its status, not by
    reading the file again. A rejected row has no hash but is settled too.
    """
    if row is None or row.status == MISSING:
        return False
    if row.status == REJECTED:  # the words beside a file that is no image do not matter
        return (row.size_bytes, row.mtime_ns) == (found.size_bytes, found.mtime_ns)
    return row.sha256 is not None and (row.size_bytes, row.mtime_ns, row.sidecar_mtime_ns) == (
        found.size_bytes,
        found.mtime_ns,
        found.sidecar_mtime_ns,
    )


def settle_status(record: ImageRecord, row: KnownFile | None, uploads: bool) -> None:
    """An accepted file is `done` unless it still has to go to WordPress (`pending`)."""
    if record.status != DONE or not uploads:
        return
    # Already in WordPress: the same content, or a row adopted from the original
    # service (its content was never hashed, but it has a URL), needs no upload.
    uploaded = (
        row is not None
        and row.wp_url is not None
        and (row.sha256 is None or row.sha256 == record.sha256)
    )
    if not uploaded:
        record.status = PENDING


# Files walked between two progress reports: often enough for a bar, rarely enough
# to cost nothing on the walk of an unchanged tree.
_PROGRESS_EVERY = 256

# Fewer files than this are read in the reconcile's own process: handing them to
# other processes would cost more than it saves.
_READERS_MIN = 64


def _plain(file_name: str) -> bool:
    """A short ASCII name, its own row name: the common case, told without encoding."""
    return file_name.isascii() and len(file_name) <= FILE_NAME_MAX


def _under_any(file_name: str, prefixes: list[str]) -> bool:
    # "" is the root itself: if it could not be listed, nothing is known to be gone.
    return any(file_name.startswith(p) for p in prefixes)
