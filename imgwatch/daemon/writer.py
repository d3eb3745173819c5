"""The row writer: the one thread that changes rows on behalf of file events.

Ops are applied in arrival order; consecutive upserts share a transaction, so a
burst of files costs a few commits, not one per file. It never waits on
WordPress: purges go to the upload side.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from imgwatch.daemon.stages import Count, Outage, StageThreads, Stats, take_batch
from imgwatch.db.engine import chunks
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.names import ImageNameFilter, row_name, unstorable_reason
from imgwatch.files.walk import walk
from imgwatch.model import ImageRecord, KnownFile, Status
from imgwatch.reconcile.deletions import Deletions, GoneRow

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 500  # names per query when many are looked up at once


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


class Writer(StageThreads[Op]):
    """Applies ops in order on one thread; consecutive upserts share a transaction.

    Deletes are gathered into a run and settled once no delete came for
    `run_quiet` seconds (or the run is RUN_MAX old). A run is judged by the
    mass-deletion guard (reconcile/deletions.py) together with the runs of the DELETE_WINDOW
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
        super().__init__("writer", 1, max(100, batch_size * 2), store=store, outage=outage)
        self.root = root
        # Files stay claimed (see reconcile.reconciler.Claims) until their rows are committed.
        self.release = release
        self.stats = stats
        self.batch_size = batch_size
        self.deletions = deletions
        self.accept = accept
        self.on_rows = on_rows
        self.run_quiet = run_quiet
        self._stopping = threading.Event()
        # The run of deletes being gathered (names and directories), when it began
        # and when its last delete came.
        self._gone: set[str] = set()
        self._gone_dirs: set[str] = set()
        self._run_began = self._run_last = 0.0
        # Runs settled within DELETE_WINDOW: (when, rows); and the live rows before them.
        self._recent: deque[tuple[float, int]] = deque()
        self._window_base = 0

    def put(self, op: Op) -> None:
        self.inbox.put(op)

    def pending(self) -> int:
        return self.inbox.qsize() + len(self._gone) + len(self._gone_dirs)

    def stop(self, deadline: float) -> bool:
        if self._join(deadline):
            return True
        self._stopping.set()  # a database still down at the deadline is not waited for
        return self._wait(time.monotonic() + 1.0)

    def _run(self) -> None:
        done = False
        while not done:
            taken: tuple[list[Op], bool] = take_batch(
                self.inbox, self.batch_size, self._run_due_in()
            )
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
        rejected = sum(1 for r in records if r.status == Status.REJECTED)
        self.stats.add(Count.REJECTED, rejected)
        recorded = sum(1 for r in records if r.status in {Status.DONE, Status.PENDING})
        self.stats.add(Count.RECORDED, recorded)
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
            and not (keep_missing and row.status == Status.MISSING)
        ]
        if not gone:
            return
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > self.DELETE_WINDOW:
            self._recent.popleft()
        # Rows marked missing before (forgotten or purged now) were not counted live.
        live = self.store.count_live() + sum(1 for r in rows.values() if r.status == Status.MISSING)
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
            self.stats.add(Count.MISSING, settled)
