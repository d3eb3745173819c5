"""Reconcile: make the database agree with what is on disk, once.

The same code runs for `imgwatch --rescan`, at daemon start, and periodically.
Unchanged files (same size and mtime as their `done` or `rejected` row) are
never opened, so a reconcile of a large, settled archive costs one walk and
one query.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imgwatch.errors import ConfigError
from imgwatch.filters import ImageNameFilter, is_hidden_or_temp
from imgwatch.processor import FileProcessor, row_name, unstorable_reason
from imgwatch.store import (
    DONE,
    FAILED,
    MISSING,
    PENDING,
    REJECTED,
    ImageRecord,
    ImageStore,
    KnownFile,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FoundFile:
    """A candidate image seen by the walk."""

    file_name: str  # relative to the image directory, '/'-separated
    path: str
    size_bytes: int
    mtime_ns: int
    # Why this is no image file at all (a FIFO, a link leading out); None for a file.
    problem: str | None = None


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
    refused_missing: int = 0  # rows not marked missing because the directory was empty

    def line(self) -> str:
        return (
            f"rescan: {self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.rejected} rejected, {self.missing} missing, {self.failed} failed, "
            f"{self.busy} still being written, in {self.elapsed:.2f}s"
            + (" (interrupted)" if self.interrupted else "")
        )


@dataclass(slots=True)
class _Walk:
    """Walk state: directories that could not be listed keep their rows from going missing."""

    unreadable_dirs: list[str] = field(default_factory=list)


def check_image_dir(image_dir: Path) -> Path:
    """The image directory, resolved; ConfigError if it is not a readable directory."""
    try:
        st = image_dir.stat()
    except FileNotFoundError:
        raise ConfigError(f"image directory {str(image_dir)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"image directory {str(image_dir)!r}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"image directory {str(image_dir)!r} is not a directory")
    if not os.access(image_dir, os.R_OK | os.X_OK):
        raise ConfigError(f"image directory {str(image_dir)!r} is not readable")
    return image_dir.resolve()


def walk(
    root: Path, accept: ImageNameFilter, state: _Walk | None = None, subdir: str = ""
) -> Iterator[FoundFile]:
    """Every candidate image under root (or only under root/subdir), depth first,
    without following directory links. Names are relative to root either way."""
    state = state if state is not None else _Walk()
    real_root = str(root)
    start = os.path.join(real_root, subdir) if subdir else real_root
    stack: list[tuple[str, str]] = [(start, subdir + "/" if subdir else "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            # Listed in full before anything is yielded: the directory handle is not
            # held open while the caller reads files (or abandons the walk).
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError as exc:
            log.warning("cannot list directory %r: %s", prefix or ".", exc.strerror)
            state.unreadable_dirs.append(prefix)
            continue
        for entry in entries:
            if is_hidden_or_temp(entry.name):
                continue
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel + "/"))
                    continue
                # The name is known not to be hidden or temporary: only the ending counts.
                if not entry.name.lower().endswith(accept.extensions):
                    continue
                found = classify(entry.path, rel, real_root, entry.stat(follow_symlinks=False))
            except OSError as exc:
                log.warning("cannot stat %r: %s", rel, exc.strerror)
                continue
            yield found


_SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def classify(path: str, rel: str, real_root: str, lst: os.stat_result) -> FoundFile:
    """What a name with an image extension is: a file to read, or why it is none.

    Never opens anything: a FIFO named `y.png` must not block the walk. A link is
    followed only to a file inside the image directory.
    """

    def problem(reason: str) -> FoundFile:
        return FoundFile(rel, path, lst.st_size, lst.st_mtime_ns, reason)

    st = lst
    if stat.S_ISLNK(lst.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath([target, real_root]) != real_root:
            return problem("symbolic link leads outside the image directory")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return problem("broken symbolic link")
        except OSError as exc:
            return problem(f"symbolic link cannot be followed: {exc.strerror}")
    kind = stat.S_IFMT(st.st_mode)
    if kind in _SPECIAL:
        return problem(f"not a regular file: {_SPECIAL[kind]}")
    if kind == stat.S_IFDIR:
        return problem("not a regular file: a link to a directory")
    return FoundFile(rel, path, st.st_size, st.st_mtime_ns)


def find_one(root: Path, file_name: str) -> FoundFile | None:
    """The candidate at file_name (relative), by the walk's rules; None if nothing
    is there (gone) or it is a directory (the walk goes into those)."""
    path = os.path.join(root, file_name)
    try:
        lst = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISDIR(lst.st_mode):
        return None
    return classify(path, file_name, str(root), lst)


UNCHANGED = "unchanged"
VANISHED = "vanished"


def examine(
    found: FoundFile, row: KnownFile | None, processor: FileProcessor, uploads: bool
) -> ImageRecord | str:
    """What one found file means for its row: a record to write, or why there is none."""
    if _is_unchanged(found, row):
        return UNCHANGED
    reason = unstorable_reason(found.file_name) or found.problem
    if reason is not None:
        return processor.reject(
            row_name(found.file_name), reason, found.size_bytes, found.mtime_ns, found.file_name
        )
    record = processor.process(found.file_name, found.path, found.size_bytes, found.mtime_ns)
    if record is None:
        return VANISHED
    settle_status(record, row, uploads)
    return record


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
        store: ImageStore,
        image_dir: Path,
        accept: ImageNameFilter,
        processor: FileProcessor,
        batch_size: int,
        uploads: bool = False,
        claims: Claims | None = None,
    ) -> None:
        self.store = store
        self.image_dir = image_dir
        self.accept = accept
        self.processor = processor
        self.batch_size = batch_size
        self.uploads = uploads
        self.claims = claims

    def run(self, cancel: threading.Event | None = None) -> ScanSummary:
        """One reconcile. When `cancel` is set midway it stops early and marks nothing
        missing (an unfinished walk cannot tell what is gone)."""
        started = time.monotonic()
        root = check_image_dir(self.image_dir)
        summary = ScanSummary()
        known = self.store.known_files()
        seen: set[str] = set()
        batch: list[ImageRecord] = []
        held: list[str] = []  # claimed names, released once their rows are committed
        state = _Walk()
        try:
            for found in walk(root, self.accept, state):
                if cancel is not None and cancel.is_set():
                    summary.interrupted = True
                    break
                name = row_name(found.file_name)
                seen.add(name)
                if not self._take(found.file_name, held):
                    continue  # the watcher's side has it (being written or read)
                row = self._row(found, name, known)
                outcome = examine(found, row, self.processor, self.uploads)
                if outcome == UNCHANGED:
                    summary.unchanged += 1
                elif isinstance(outcome, ImageRecord):
                    self._count(summary, outcome, is_new=row is None)
                    batch.append(outcome)
                    if len(batch) >= self.batch_size:
                        self._commit(batch, held)
            self._commit(batch, held)
        finally:
            self._release(held)
        if not summary.interrupted:
            self._mark_gone(root, known, seen, state, summary)
        summary.elapsed = time.monotonic() - started
        return summary

    def _take(self, file_name: str, held: list[str]) -> bool:
        if self.claims is None:
            return True
        if not self.claims.claim(file_name):
            return False
        held.append(file_name)
        return True

    def _row(self, found: FoundFile, name: str, known: dict[str, KnownFile]) -> KnownFile | None:
        row = known.get(name)
        if self.claims is not None and not _is_unchanged(found, row):
            # The daemon's workers may have recorded it since `known` was read; one
            # indexed query is cheap beside reading the file again.
            row = self.store.lookup(name)
        return row

    def _commit(self, batch: list[ImageRecord], held: list[str]) -> None:
        self.store.upsert(batch)
        batch.clear()
        self._release(held)

    def _release(self, held: list[str]) -> None:
        if self.claims is not None and held:
            self.claims.release(held)
        held.clear()

    def _mark_gone(
        self,
        root: Path,
        known: dict[str, KnownFile],
        seen: set[str],
        state: _Walk,
        summary: ScanSummary,
    ) -> None:
        gone = [
            (row.id, name)
            for name, row in known.items()
            if name not in seen
            and row.status != MISSING
            and not _under_any(name, state.unreadable_dirs)
            # Looked at again: a file that appeared after the walk passed its directory
            # (the daemon records it) is not gone.
            and not os.path.lexists(os.path.join(root, name))
        ]
        if gone and not seen:
            # Nothing at all on disk but rows that say otherwise: far more often an
            # unmounted share or a mount that is not there yet than a deliberate
            # deletion of everything. Marking (or purging) every row would be wrong.
            log.error(
                "image directory %s is empty but %d row(s) say files were there: not "
                "marking them missing (not mounted?)",
                root,
                len(gone),
            )
            summary.refused_missing = len(gone)
            return
        if gone:
            ids, names = [g[0] for g in gone], [g[1] for g in gone]
            summary.missing = self.store.mark_missing(ids, names=names)
            log.info("%d file(s) gone from disk, marked missing", summary.missing)

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
    return (
        row is not None
        and row.status != MISSING
        and (row.sha256 is not None or row.status == REJECTED)
        and row.size_bytes == found.size_bytes
        and row.mtime_ns == found.mtime_ns
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


def _under_any(file_name: str, prefixes: list[str]) -> bool:
    # "" is the root itself: if it could not be listed, nothing is known to be gone.
    return any(file_name.startswith(p) for p in prefixes)
