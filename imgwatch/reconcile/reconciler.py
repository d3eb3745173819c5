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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imgwatch.db.upsert import PreparedRows
from imgwatch.files.decide import UNCHANGED, Outcome, ToRead, examine
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import FoundFile, WalkState, check_image_dir, walk
from imgwatch.model import (
    GONE,
    STATE,
    STATE_ID,
    FileState,
    ImageRecord,
    KnownFile,
    NameRange,
    ScanSummary,
    Status,
)
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, GoneRows
from imgwatch.reconcile.merge import RowMerge, Tally, differences
from imgwatch.reconcile.parts import (
    PARTS_PER_PROCESS,
    PartReaders,
    PartResult,
    can_split,
    compared_parts,
    split,
)

log = logging.getLogger(__name__)

# A file to read: the file, its row name, whether it had a row beside it in the
# walk, and the merge it was found in.
_Todo = tuple[FoundFile, str, bool, RowMerge]


@dataclass(slots=True)
class _Run:
    """One reconcile as it goes: what the walk found so far, and what is to be read."""

    root: Path
    exact: bool  # whether the database orders names as the walk does
    summary: ScanSummary
    cancel: threading.Event | None
    state: WalkState = field(default_factory=WalkState)
    todo: list[_Todo] = field(default_factory=list)
    seen: int = 0  # files the walk found
    live: int = 0  # in parts: rows whose file was there when last seen
    # In parts: each part's rows no file was found for.
    leftovers: list[list[FileState]] = field(default_factory=list)


class Readers(PartReaders, Protocol):
    """Reads files elsewhere (other processes) while the reconcile writes rows, and
    compares parts of the tree there (reconcile/parts.py)."""

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

    def file_state_pages(
        self, page: int | None = None, names: NameRange = (None, None)
    ) -> Iterator[list[FileState]]: ...

    def names_in_code_point_order(self) -> bool: ...

    def release_connections(self) -> None: ...

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
        # In parts (else None): names whose row was found by name after their part's
        # merge had none, so that no part takes such a row for gone (reconcile/parts.py).
        self._found_late: set[str] | None = None

    def run(self, cancel: threading.Event | None = None) -> ScanSummary:
        """One reconcile. When `cancel` is set midway it stops early and marks nothing
        missing (an unfinished walk cannot tell what is gone)."""
        started = time.monotonic()
        root = check_image_dir(self.image_dir)
        self._in_flight = self._writing = None  # nothing left over from a failed run
        exact = self.store.names_in_code_point_order()
        run = _Run(root, exact, ScanSummary(), cancel)
        summary = run.summary
        parts = self._parts(root, exact)
        self._found_late = set() if parts is not None else None
        try:
            if parts is None:
                # The rows, read beside the walk in the same order: each file's row is
                # taken as the walk finds it, so what is left at the end is what is gone.
                rows = RowMerge(self.store.file_state_pages(), exact=exact)
                run.seen = self._compare(run, rows, (None, None))
                leftover: Iterable[FileState] = rows.rest()

                def live() -> int:
                    return rows.live  # once the rest is read

            else:
                self._compare_parts(run, parts)
                leftover = (row for rows_left in run.leftovers for row in rows_left)

                def live() -> int:
                    return run.live

            if not summary.interrupted:
                self._record(run.todo, summary, cancel)
            self._write_in_flight(summary)
            self._wait_for_writes()
            if self.progress is not None:
                self.progress(run.seen, summary.read, summary.read_bytes)
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None
        if not summary.interrupted:
            self._settle_gone(root, leftover, live, run.seen, run.state, summary)
        summary.elapsed = time.monotonic() - started
        return summary

    def _parts(self, root: Path, exact: bool) -> list[NameRange] | None:
        """The parts a rescan compares the tree in, in its reading processes; None
        where it is compared here, in one walk: in the daemon (whose reconcile shares
        files with its workers), with one process, into an empty table, or where the
        database orders names otherwise than the walk (a part would not be one range
        of its rows)."""
        readers = self.readers
        if readers is None or not exact or not self._has_rows():
            return None
        if not can_split(readers, self.store):
            return None
        parts = split(root, PARTS_PER_PROCESS * readers.processes)
        return parts if len(parts) > 1 else None

    def _has_rows(self) -> bool:
        """Whether the table has a row at all: into an empty one (a first rescan)
        every file is new, and comparing parts elsewhere would only cost their start."""
        return any(self.store.file_state_pages(page=1))

    def _compare(self, run: _Run, rows: RowMerge, names: NameRange) -> int:
        """Walk the tree (or the part `names` of it) beside its rows, and read, in
        batches, what is new or changed; how many files the walk found."""
        progress, summary, cancel = self.progress, run.summary, run.cancel
        before = run.seen  # files the reconcile went through before this part

        def tick(seen: int) -> bool:
            # What is not needed per file: the cancel flag, progress.
            if cancel is not None and cancel.is_set():
                summary.interrupted = True
                return True
            if progress is not None:
                progress(before + seen, summary.read, summary.read_bytes)
            return False

        tally = Tally()
        todo = run.todo
        files = walk(run.root, self.accept, run.state, names=names)
        with closing(differences(files, rows, tally, tick)) as different:
            for found, name, merged in different:
                todo.append((found, name, merged, rows))
                if len(todo) >= self.batch_size:
                    self._record(todo, summary, cancel)
                    if summary.interrupted:
                        break
        summary.unchanged += tally.unchanged
        return tally.seen

    def _compare_parts(self, run: _Run, parts: list[NameRange]) -> None:
        """Compare the parts in the reading processes, and read what differs, in
        batches; the rows no file was found for go to `run.leftovers`."""
        assert self.readers is not None
        summary = run.summary
        rest: NameRange | None = None  # walked here, in one piece
        for names, part in compared_parts(self.readers, run.root, self.accept, parts, run.exact):
            if run.cancel is not None and run.cancel.is_set():
                summary.interrupted = True
                break
            if part is None:
                # Too much differs to be sent back (or its process died): walked here,
                # its files read as it goes.
                self._compare_here(run, names)
            else:
                self._take_part(run, part)
            if summary.interrupted:
                break
            if self.progress is not None:
                self.progress(run.seen, summary.read, summary.read_bytes)
            if run.seen >= _MOSTLY_NEW_AFTER and 2 * summary.unchanged < run.seen:
                # Mostly new files (a first rescan, an archive copied in): comparing
                # them elsewhere saves nothing, and the processes are better used
                # reading them. The rest is walked here, in one piece.
                rest = (names[1], None) if names[1] is not None else None
                break
        if rest is not None and not summary.interrupted:
            self._compare_here(run, rest)

    def _take_part(self, run: _Run, part: PartResult) -> None:
        """What a part process found: its differences read, in batches, its counts kept."""
        merge = RowMerge(iter(()), exact=part.exact, parted=True)
        todo, summary = run.todo, run.summary
        for found, name, merged in part.differences:
            todo.append((found, name, merged, merge))
            if len(todo) >= self.batch_size:
                self._record(todo, summary, run.cancel)
                if summary.interrupted:
                    return
        run.seen += part.tally.seen
        run.live += part.live
        summary.unchanged += part.tally.unchanged
        run.leftovers.append(part.leftover)
        run.state.unreadable_dirs.extend(part.unreadable_dirs)
        run.state.directories += part.directories

    def _compare_here(self, run: _Run, names: NameRange) -> None:
        """A part of the tree compared in this process."""
        rows = RowMerge(self.store.file_state_pages(names=names), exact=run.exact, parted=True)
        run.seen += self._compare(run, rows, names)
        if not run.summary.interrupted:
            run.leftovers.append(list(rows.rest()))
            run.live += rows.live

    def _record(
        self,
        todo: list[_Todo],
        summary: ScanSummary,
        cancel: threading.Event | None,
    ) -> None:
        """Read a batch of new or changed files and write their rows in one transaction."""
        held: list[str] = []  # claimed names, released once their rows are committed
        try:
            files = self._with_rows(todo, held)
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

    def _with_rows(self, todo: list[_Todo], held: list[str]) -> list[ToRead]:
        """The files of a batch to read (in the daemon, those it could claim: their
        names go to `held`), each with its row as looked up now."""
        mine = todo
        if self.claims is not None:
            # Only what no worker has (being written or read); rows looked up after
            # the claim, since a worker may have recorded them after `known` was read.
            mine = [t for t in todo if self._take(t[0].file_name, held)]
            rows = self.store.lookup_many([t[1] for t in mine])
        else:
            # Also a file with no row beside it that may have one all the same
            # (reconcile/merge.py): its row may come later than the file.
            rows = self.store.lookup_many(
                [t[1] for t in todo if t[2] or t[3].may_have_row(t[1], t[0].file_name)]
            )
        for _, name, merged, merge in mine:
            if not merged and name in rows:
                merge.found_late(name)
                if self._found_late is not None:
                    self._found_late.add(name)
        return [(found, rows.get(name)) for found, name, _, _ in mine]

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
        leftover: Iterable[FileState],
        live: Callable[[], int],
        seen: int,
        state: WalkState,
        summary: ScanSummary,
    ) -> None:
        """Rows whose file the walk did not find (`leftover`; `live()` rows in all
        were live once it is read): missing, forgotten or purged, unless the
        mass-deletion guard holds them all (reconcile/deletions.py)."""
        gone: list[GoneRow] = []
        found_late = self._found_late or set()
        for row in leftover:
            name = row[0]
            if (
                row[STATE] != GONE
                and name not in found_late
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
            gone, live(), whole_tree=True, empty_tree=bool(gone) and not seen
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


# Files compared in parts before a tree where most differ is walked in this process.
_MOSTLY_NEW_AFTER = 1_000

# Fewer files than this are read in the reconcile's own process: handing them to
# other processes would cost more than it saves.
_READERS_MIN = 64


def _under_any(file_name: str, prefixes: list[str]) -> bool:
    # "" is the root itself: if it could not be listed, nothing is known to be gone.
    return any(file_name.startswith(p) for p in prefixes)
