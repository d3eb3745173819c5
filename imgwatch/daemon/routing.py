"""Routing: watcher changes to debouncer deadlines, settled paths to the file workers,
moves and deletes to the row writer.

Runs on the main loop's thread, which alone owns the debouncer. A worker that
wants a path looked at again (it changed while being read, the database was
down) puts it on a queue of its own: never on the watcher's, whose overflow means
the kernel's changes were lost.
"""

from __future__ import annotations

import logging
import os
import posixpath
import queue
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imgwatch.daemon.debounce import Debouncer, Signature
from imgwatch.daemon.readers import FileWorkers
from imgwatch.daemon.watch import Change, Watcher, inotify_room_left
from imgwatch.daemon.writer import Gone, GoneDir, Rename, RenameDir, Writer
from imgwatch.files.metadata import SIDECAR_SUFFIX
from imgwatch.files.names import ImageNameFilter, is_hidden_or_temp
from imgwatch.files.walk import FoundFile, walk

log = logging.getLogger(__name__)

TICK = 0.25  # longest the main loop sleeps: bounds signal and health-check latency
BUSY_WAIT = 0.02  # how often to look for free workers while paths are due
TAKE_AT_ONCE = 1000  # changes routed per wake-up, before due paths are dispatched


@dataclass(eq=False, kw_only=True)
class Router:
    """Changes in, deadlines kept, settled paths out; also the reconcile's Claims."""

    root: Path
    accept: ImageNameFilter
    inbox: queue.Queue[Change]
    watcher: Watcher
    files: FileWorkers
    writer: Writer
    quiet: float
    max_wait: float
    queue_size: int
    debouncer: Debouncer = field(init=False)
    # Paths to look at again, from the workers' threads. Unbounded, but never longer
    # than the paths being read: each is one a worker had.
    rechecks: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue, init=False)
    # Files created and not closed yet (a writer holds them), as far as events tell.
    _open: set[str] = field(default_factory=set, init=False)
    # Walks of directories that arrived (moved in, created), taken as the debouncer
    # has room: a directory of a million files is not a million entries at once.
    _arrived: deque[Iterator[FoundFile]] = field(default_factory=deque, init=False)
    # Directories moved in whole that the file workers handed back to go a path at a
    # time (rows are under their names), from the workers' threads.
    _rewalks: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue, init=False)
    _watch_limit_reported: bool = field(default=False, init=False)
    _prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self._prefix = str(self.root).rstrip("/") + "/"
        self.debouncer = Debouncer(self._signature, quiet=self.quiet, max_wait=self.max_wait)

    def depth(self) -> int:
        """Paths waiting: to settle, to be read, to be written (not counting the
        files of arrived directories still to be walked)."""
        return len(self.debouncer) + self.files.queued() + self.writer.pending()

    def recheck(self, key: str) -> None:
        """From any thread: look at key again once it is quiet."""
        self.rechecks.put(key)

    def rewalk(self, key: str) -> None:
        """From any thread: walk the directory key here, its files to the debouncer."""
        self._rewalks.put(key)

    # --- the reconcile's Claims ---------------------------------------------------

    def claim(self, file_name: str) -> bool:
        """A file the watcher is waiting on (being written) or a worker is reading is
        left to them."""
        return file_name not in self.debouncer and self.files.claim(file_name)

    def release(self, file_names: Iterable[str]) -> None:
        self.files.release(file_names)

    # --- the main loop's part -------------------------------------------------------

    def take_changes(self) -> None:
        """Wait up to a tick (less when a deadline comes first) for changes; route them."""
        self._take_rechecks()
        self._take_rewalks()
        self._take_arrived()
        timeout = TICK
        deadline = self.debouncer.next_deadline()
        if deadline is not None:
            timeout = min(TICK, max(0.0, deadline - time.monotonic()))
            if self.files.room() == 0:
                # Paths are due but the workers are full: waking at once would only
                # spin this thread and starve the workers of the GIL.
                timeout = max(timeout, BUSY_WAIT)
        if len(self.debouncer) >= self.queue_size:
            # Back-pressure: leave changes in the inbox (the watcher then waits).
            time.sleep(min(timeout, 0.05))
            return
        try:
            change = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self.route(change)
        for _ in range(TAKE_AT_ONCE):
            try:
                change = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.route(change)

    def _take_rechecks(self) -> None:
        while True:
            try:
                key = self.rechecks.get_nowait()
            except queue.Empty:
                return
            self.debouncer.touch(key)

    def _take_rewalks(self) -> None:
        """Directories the file workers handed back, walked here a path at a time."""
        while True:
            try:
                key = self._rewalks.get_nowait()
            except queue.Empty:
                return
            self._scan_dir(key)

    def _take_arrived(self) -> None:
        """The files of arrived directories, into the debouncer while it has room."""
        room = self.queue_size - len(self.debouncer)
        while self._arrived and room > 0:
            for found in self._arrived[0]:
                # Complete: it was written before it arrived, or was closed since
                # (its close would come as an event of its own).
                self.debouncer.touch(found.file_name, closed=True)
                room -= 1
                if room <= 0:
                    return
            self._arrived.popleft()

    def dispatch_due(self) -> None:
        room = self.files.room()
        if room <= 0:
            return
        for key in self.debouncer.due(room, busy=self.files.is_busy):
            # Read now: the writer closed it, or waited too long. (A file moved in from
            # outside the tree also came as a create, and no close will follow it.)
            self._open.discard(key)
            if not self.files.submit(key):
                self.debouncer.touch(key, closed=True)

    def events_lost(self) -> None:
        """Changes were dropped: no file is known to be open any more; the reconcile
        that follows finds what the dropped changes would have said."""
        # What was queued before the drop goes first, whatever the back-pressure: a
        # write routed after the reset below would wait for a close that was dropped.
        for _ in range(self.inbox.qsize()):
            try:
                self.route(self.inbox.get_nowait())
            except queue.Empty:
                break
        self.debouncer.events_lost()
        self._open.clear()

    def route(self, change: Change) -> None:
        """One watcher Change -> debouncer deadlines or writer ops. No I/O but a directory walk."""
        kind = change.kind
        if self._route_sidecar(change):
            return
        if kind in {"created", "written", "closed", "deleted"}:
            key = self._file_key(change.path)
            if key is not None:
                if kind == "created":
                    self._track_open(key, True)
                elif kind in {"closed", "deleted"}:
                    self._track_open(key, False)
                # A write waits for its close only when the file was created by an open
                # still held (a copy under way); truncate(2) writes without one, an
                # in-place rewrite is not told apart from it, and a poller sees neither.
                writing = kind == "written" and key in self._open
                self.debouncer.touch(key, closed=kind == "closed", writing=writing)
        elif kind == "moved":
            self._route_move(self._file_key(change.path), self._file_key(change.dest))
        else:
            self._route_dir(kind, self._dir_key(change.path), self._dir_key(change.dest))

    def _route_sidecar(self, change: Change) -> bool:
        """A sidecar (`photo.jpg.json`) written, moved or deleted: its image is looked
        at again, once the sidecar is quiet. True if the change was about one."""
        images = [
            key
            for path in (change.path, change.dest)
            if path.endswith(SIDECAR_SUFFIX)
            and (key := self._file_key(path[: -len(SIDECAR_SUFFIX)])) is not None
        ]
        for key in images:
            self.debouncer.touch(key, closed=change.kind in {"closed", "deleted", "moved"})
        return bool(images)

    def _track_open(self, key: str, is_open: bool) -> None:
        if is_open:
            if len(self._open) < self.queue_size:  # bounded, like everything
                self._open.add(key)
        else:
            self._open.discard(key)

    def _route_dir(self, kind: str, old: str | None, new: str | None) -> None:
        if kind == "dir_created":
            self._check_watch_room()
            self._scan_dir(old)
        elif kind == "dir_deleted" and old is not None:
            self.files.leaving(old + "/")
            self.writer.put(GoneDir(old + "/"))
        elif kind == "dir_moved":
            if old is not None:
                # Before the move's op: nothing read under the old name is handed
                # on after it.
                self.files.leaving(old + "/")
            if old is not None and new is not None:
                self.writer.put(RenameDir(old + "/", new + "/"))
            elif old is not None:
                self.writer.put(GoneDir(old + "/"))
            elif new is not None:
                # Moved in from outside the tree: complete, and read whole unless
                # rows are under its name (daemon/arrivals.py).
                self._check_watch_room()
                if self.files.arrived(new):
                    return
            self._scan_dir(new)

    def _route_move(self, old: str | None, new: str | None) -> None:
        if old is not None and self.files.arriving(old):
            # From a directory being read whole, whose row for it may not be written
            # yet: looked at once the reading is done, as a delete; `new` is read.
            self.debouncer.touch(old)
        elif old is not None and new is not None:
            # The row follows the file (no new upload); the look at `new` then finds
            # it unchanged, or records what changed.
            self.debouncer.forget(old)
            self.writer.put(Rename(old, new))
        elif old is not None:
            self.debouncer.forget(old)
            self.writer.put(Gone(old))  # renamed to a name we ignore, or moved out
        if new is not None:
            self.debouncer.touch(new, closed=True)

    def _check_watch_room(self) -> None:
        """A new directory needs a watch; past the limit watchdog skips it silently."""
        if self.watcher.polling or inotify_room_left(self.root):
            self._watch_limit_reported = False
            return
        if not self._watch_limit_reported:
            self._watch_limit_reported = True
            log.error(
                "out of inotify watches: new directories are not watched, their files are "
                "found by the periodic reconcile only; raise fs.inotify.max_user_watches "
                "(packaging/systemd/60-imgwatch.conf) and restart"
            )

    def _scan_dir(self, key: str | None) -> None:
        """A new or moved-in directory: files may have landed before its watch existed.
        Walked as the debouncer has room (_take_arrived), the first files at once."""
        if key is None:
            return
        self._arrived.append(walk(self.root, self.accept, subdir=key))
        self._take_arrived()

    def _file_key(self, path: str) -> str | None:
        """The file_name for a path under the image directory that names a candidate."""
        key = self._dir_key(path)
        if key is None or not self.accept(posixpath.basename(key)):
            return None
        return key

    def _dir_key(self, path: str) -> str | None:
        if not path.startswith(self._prefix):
            return None
        key = path[len(self._prefix) :]
        if not key or any(is_hidden_or_temp(part) for part in key.split("/")):
            return None
        return key

    def _signature(self, key: str) -> Signature:
        try:
            st = os.stat(os.path.join(self.root, key))
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)
