"""Noticing changes: a watchdog observer and a handler that only forwards paths.

The handler runs on watchdog's thread, where an exception kills the thread
without a word. So it does no I/O and cannot raise. Its queue is bounded: when
the daemon falls that far behind, changes are dropped and a reconcile finds
them, just as after the kernel's own queue overflows.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog import events
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from imgwatch.errors import ConfigError

log = logging.getLogger(__name__)

# After an overflow watchdog re-adds its watches and warns about each one it
# already had: bookkeeping noise, one line per directory, nothing to act on.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

ChangeKind = Literal[
    "created",
    "written",
    "closed",
    "deleted",
    "moved",
    "dir_created",
    "dir_deleted",
    "dir_moved",
]

# Filesystems where inotify sees no changes made by other hosts or by the FUSE daemon.
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "lustre", "gpfs"}
)


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened under the image directory (absolute paths)."""

    kind: ChangeKind
    path: str = ""
    dest: str = ""


class ForwardingHandler(FileSystemEventHandler):
    """Turns watchdog events into Changes on a queue; nothing else."""

    def __init__(self, inbox: queue.Queue[Change]) -> None:
        self.inbox = inbox
        # Set when a change had to be dropped; the daemon answers with a reconcile.
        self.lost = threading.Event()

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_synthetic:
            # watchdog's own walk of a directory moved in, moved or moved out: an event
            # per file, repeating what the daemon does for the directory as a whole
            # (it walks one moved in, renames or marks gone the rows under it). A
            # burst of 10,000 files moved in would otherwise fill the queue twice over.
            return
        try:
            change = _change_for(event)
            if change is not None:
                self.put(change)
        except Exception:
            log.exception("internal error handling a file event; the next reconcile covers it")

    def put(self, change: Change) -> None:
        # Bounded: past the limit, changes are dropped and a reconcile finds them, as
        # after a kernel queue overflow. Blocking here would only grow watchdog's own
        # unbounded queue instead.
        try:
            self.inbox.put_nowait(change)
        except queue.Full:
            self.lost.set()


# watchdog event type -> our kind, for files and for directories. Anything else (a
# directory's own mtime, attribute changes) says nothing about images.
_FILE_KINDS: dict[str, ChangeKind] = {
    "created": "created",  # by open(O_CREAT), or moved in from outside the tree
    "modified": "written",  # with inotify, a close follows if a create was seen
    "closed": "closed",  # closed after writing (IN_CLOSE_WRITE)
    "deleted": "deleted",
    "moved": "moved",
}
_DIR_KINDS: dict[str, ChangeKind] = {
    "created": "dir_created",
    "deleted": "dir_deleted",
    "moved": "dir_moved",
}


# Only these are asked of the kernel. Not opens and read-only closes: every file
# the daemon reads would come back as two events through three threads, which
# cost a burst of small files a third of its speed; and directory modifications,
# one more per file created.
_WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    events.FileCreatedEvent,
    events.FileModifiedEvent,
    events.FileClosedEvent,
    events.FileDeletedEvent,
    events.FileMovedEvent,
    events.DirCreatedEvent,
    events.DirDeletedEvent,
    events.DirMovedEvent,
]


def _change_for(event: FileSystemEvent) -> Change | None:
    kinds = _DIR_KINDS if event.is_directory else _FILE_KINDS
    kind = kinds.get(event.event_type)
    if kind is None:
        return None
    dest = os.fsdecode(event.dest_path) if event.dest_path else ""
    return Change(kind, os.fsdecode(event.src_path), dest)


class OverflowSignal(logging.Handler):
    """watchdog drops the kernel's IN_Q_OVERFLOW after logging it: catch that line.

    Events were lost, so the daemon has to rescan; this is the only place the
    overflow is visible from outside watchdog. The periodic reconcile covers
    versions of watchdog that do not log it.
    """

    def __init__(self, handler: ForwardingHandler) -> None:
        super().__init__(logging.WARNING)
        self.handler = handler

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.handler.lost.set()


def filesystem_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem path lives on, from the longest matching mount point."""
    target = str(path.resolve())
    best, best_type = "", None
    try:
        with open(mounts, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, best_type = point, fields[2]
    except OSError:
        return None
    return best_type


def wants_polling(mode: str, image_dir: Path) -> bool:
    if mode != "auto":
        return mode == "polling"
    fstype = filesystem_type(image_dir) or ""
    return fstype in NETWORK_FS_TYPES or fstype.startswith("fuse")


class Watcher:
    """The observer for one image directory, restartable."""

    def __init__(
        self,
        image_dir: Path,
        inbox: queue.Queue[Change],
        *,
        polling: bool,
        poll_interval: float,
    ) -> None:
        self.image_dir = image_dir
        self.polling = polling
        self.poll_interval = poll_interval
        self.handler = ForwardingHandler(inbox)
        self._overflow = OverflowSignal(self.handler)
        self.observer: BaseObserver | None = None
        # Which directory the watch is on: a mount over it, or an unmount, or a
        # remove-and-recreate gives another (device, inode), and the old watch sees
        # nothing that happens in the new one.
        self._identity: tuple[int, int] | None = None

    @property
    def mode(self) -> str:
        return f"polling every {self.poll_interval:g}s" if self.polling else "inotify"

    def start(self) -> None:
        """Start watching; ConfigError when the kernel's inotify limits are reached."""
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval)
            if self.polling
            # Full events: a directory moved in from outside the tree comes as a move
            # with no source, not as a created one, so it is known to be complete
            # (routing.py); a file or directory moved out, as a move with no target.
            else InotifyObserver(generate_full_events=True)
        )
        observer.schedule(
            self.handler, str(self.image_dir), recursive=True, event_filter=_WATCHED_EVENTS
        )
        try:
            observer.start()
            # watchdog skips a subdirectory it cannot watch without a word, ENOSPC
            # included: probe whether the limit was reached on the way.
            if not self.polling and not inotify_room_left(self.image_dir):
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
        except OSError as exc:
            observer.stop()
            raise _limit_error(exc) or exc from None
        self.observer = observer
        self._identity = _identity(self.image_dir)
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._overflow)

    def alive(self) -> bool:
        return self.trouble() is None

    def take_lost(self) -> bool:
        """Whether changes were dropped (the inbox or the kernel's queue overflowed)
        since the last call."""
        if not self.handler.lost.is_set():
            return False
        self.handler.lost.clear()
        return True

    def trouble(self) -> str | None:
        """Why the watch no longer covers the image directory, or None if it does."""
        observer = self.observer
        if observer is None:
            return "not started"
        if not observer.is_alive() or not all(e.is_alive() for e in observer.emitters):
            return "the watcher thread stopped"
        identity = _identity(self.image_dir)
        if identity is None:
            return "the image directory is gone"
        if identity != self._identity:
            return "the image directory was replaced, mounted over or unmounted"
        return None

    def stop(self, timeout: float = 5.0) -> None:
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._overflow)
        observer, self.observer = self.observer, None
        if observer is None:
            return
        try:
            observer.stop()
            observer.join(timeout)
        except Exception as exc:  # noqa: BLE001 - a broken observer is being discarded anyway
            log.debug("stopping the file watcher: %s", exc)


_IN_CREATE = 0x100


def inotify_room_left(path: Path) -> bool:
    """False when this user cannot add one more inotify watch (ENOSPC): then some
    directory is, or the next new one will be, left unwatched."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return ctypes.get_errno() != errno.EMFILE
    try:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_CREATE) < 0:
            return ctypes.get_errno() != errno.ENOSPC
        return True
    finally:
        os.close(fd)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _limit_error(exc: OSError) -> ConfigError | None:
    if exc.errno == errno.ENOSPC:
        return ConfigError(
            "out of inotify watches (one is needed per directory): raise "
            "fs.inotify.max_user_watches, e.g. `sysctl fs.inotify.max_user_watches=524288` "
            "(packaging/systemd/60-imgwatch.conf for /etc/sysctl.d), or set "
            "IMGWATCH_WATCH_MODE=polling"
        )
    if exc.errno == errno.EMFILE:
        return ConfigError(
            "out of inotify instances: raise fs.inotify.max_user_instances "
            "(packaging/systemd/60-imgwatch.conf for /etc/sysctl.d)"
        )
    return None
