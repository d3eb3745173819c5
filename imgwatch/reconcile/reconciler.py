"""Reconcile: make the database agree with what is on disk, once.

The same code runs for `imgwatch --rescan`, at daemon start, and periodically.
Unchanged files (same size and mtime as their `done` or `rejected` row) are
never opened, so a reconcile of a large, settled archive costs one walk and
one read of the rows beside it, a page at a time (reconcile/merge.py): its
memory does not grow with the tree.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Protocol

from imgwatch.db.upsert import PreparedRows
from imgwatch.files.decide import UNCHANGED, Outcome, ToRead, examine, unchanged
from imgwatch.files.names import ImageNameFilter, is_plain, row_name
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import FoundFile, WalkState, check_image_dir, walk
from imgwatch.model import (
    GONE,
    STATE,
    STATE_ID,
    FileState,
    ImageRecord,
    KnownFile,
    ScanSummary,
    Status,
)
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, GoneRows
from imgwatch.reconcile.merge import RowMerge

log = logging.getLogger(__name__)


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
    how many of them (and how many bytes) it read; see reconcile/progress.py."""

    def __call__(self, seen: int, read: int, read_bytes: int) -> None: ...


class Rows(GoneRows, Protocol):
    """What a reconcile reads and writes: the store, or a dry run's stand-in."""

    def file_state_pages(self) -> Iterator[list[FileState]]: ...

    def names_in_code_point_order(self) -> bool: ...

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
        self._rows = RowMerge(iter(()))
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
        # The rows, read beside the walk in the same order: each file's row is taken
        # as the walk finds it, so what is left at the end is what is gone.
        rows = self._rows = RowMerge(
            self.store.file_state_pages(), exact=self.store.names_in_code_point_order()
        )
        state = WalkState()
        try:
            seen = self._compare(root, rows, state, summary, cancel)
            self._write_in_flight(summary)
            self._wait_for_writes()
            if self.progress is not None:
                self.progress(seen, summary.read, summary.read_bytes)
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None
        if not summary.interrupted:
            self._settle_gone(root, rows, seen, state, summary)
        summary.elapsed = time.monotonic() - started
        return summary

    def _compare(
        self,
        root: Path,
        rows: RowMerge,
        state: WalkState,
        summary: ScanSummary,
        cancel: threading.Event | None,
    ) -> int:
        """Walk the tree beside the rows, and read (in batches) what is new or changed;
        how many files the walk found."""
        progress = self.progress
        seen = same = 0
        take = rows.take
        todo: list[tuple[FoundFile, str, bool]] = []  # to read: file, row name, has a row
        # This loop runs once per file of the archive: what is not needed per file
        # (the cancel flag, progress) is looked at every _PROGRESS_EVERY files.
        for found in walk(root, self.accept, state):
            seen += 1
            if not seen % _PROGRESS_EVERY:
                if cancel is not None and cancel.is_set():
                    summary.interrupted = True
                    break
                if progress is not None:
                    progress(seen, summary.read, summary.read_bytes)
            file_name = found.file_name
            name = file_name if is_plain(file_name) else row_name(file_name)
            row = take(name)
            # A settled archive takes only this path: nothing read, nothing kept.
            if row is not None and unchanged(row, found):
                same += 1
                continue
            todo.append((found, name, row is not None))
            if len(todo) >= self.batch_size:
                summary.unchanged += same
                same = 0
                self._record(todo, summary, cancel)
                if summary.interrupted:
                    break
        summary.unchanged += same
        if not summary.interrupted:
            self._record(todo, summary, cancel)
        return seen

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
                # Also a file with no row beside it that may have one all the same
                # (reconcile/merge.py): its row may come later than the file.
                merge = self._rows
                rows = self.store.lookup_many(
                    [t[1] for t in todo if t[2] or merge.may_have_row(t[1], t[0].file_name)]
                )
            files = [(found, rows.get(name)) for found, name, _ in mine]
            for _, name, merged in mine:
                if not merged and name in rows:
                    self._rows.found_late(name)
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
        rows: RowMerge,
        seen: int,
        state: WalkState,
        summary: ScanSummary,
    ) -> None:
        """Rows whose file the walk did not find: missing, forgotten or purged, unless
        the mass-deletion guard holds them all (reconcile/deletions.py)."""
        gone: list[GoneRow] = []
        for row in rows.rest():
            name = row[0]
            if (
                row[STATE] != GONE
                and not _under_any(name, state.unreadable_dirs)
                # Looked at again: a file that appeared after the walk passed its
                # directory (the daemon records it) is not gone.
                and not os.path.lexists(os.path.join(root, name))
            ):
                gone.append(GoneRow(row[STATE_ID], name))
        # Nothing at all on disk but rows that say otherwise: far more often an
        # unmounted share, or a mount that is not there yet, than a deliberate
        # deletion of everything.
        summary.missing, summary.held = self.deletions.settle(
            gone, rows.live, whole_tree=True, empty_tree=bool(gone) and not seen
        )

    @staticmethod
    def _count(summary: ScanSummary, record: ImageRecord, *, is_new: bool) -> None:
        if record.status == Status.REJECTED:
            summary.rejected += 1
        elif record.status == Status.FAILED:
            summary.failed += 1
        elif record.last_error is not None:  # pending: changed while being read
            summary.busy += 1
        elif is_new:
            summary.new += 1
        else:
            summary.changed += 1


# Files walked between two progress reports: often enough for a bar, rarely enough
# to cost nothing on the walk of an unchanged tree.
_PROGRESS_EVERY = 256

# Fewer files than this are read in the reconcile's own process: handing them to
# other processes would cost more than it saves.
_READERS_MIN = 64


def _under_any(file_name: str, prefixes: list[str]) -> bool:
    # "" is the root itself: if it could not be listed, nothing is known to be gone.
    return any(file_name.startswith(p) for p in prefixes)
