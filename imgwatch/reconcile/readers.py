"""Files read in worker processes, when many files are to be read at once.

Reading a small image (open, header, hash) is Python work that holds the GIL, so
threads do not spread it over cores; processes do. A rescan forks them before it
starts any thread. The daemon, which has threads, starts them from a fork server
(a fresh process that forks the readers, so no thread's held lock is copied into
them) when a burst of files arrives. Either way they share nothing with the
process that uses them but the files and the records they send back.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from imgwatch.files.decide import Outcome, ToRead, examine
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import find_one
from imgwatch.logsetup import configure_logging
from imgwatch.model import KnownFile

log = logging.getLogger(__name__)

T = TypeVar("T")


def _examine_all(processor: FileProcessor, uploads: bool, files: list[ToRead]) -> list[Outcome]:
    return [examine(found, row, processor, uploads) for found, row in files]


def _look_at_all(
    root: Path, processor: FileProcessor, uploads: bool, keys: list[tuple[str, KnownFile | None]]
) -> list[Outcome | None]:
    """What each settled path means for its row (None: nothing is there any more)."""
    outcomes: list[Outcome | None] = []
    for key, row in keys:
        found = find_one(root, key)
        outcomes.append(None if found is None else examine(found, row, processor, uploads))
    return outcomes


class ProcessReaders:
    """A pool of forked processes that turn found files into outcomes, in chunks."""

    def __init__(self, processes: int, *, fork_server: str | None = None) -> None:
        self.processes = processes
        # Forked straight from this process (a rescan, single-threaded, whose logging
        # the copies inherit), or from a fork server (the daemon, which has threads):
        # then fork_server is the log level the readers set up their logging with, so
        # their lines (`recorded …`) go where the daemon's go.
        self.fork_server = fork_server
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._preparing: threading.Thread | None = None
        self._closed = False

    def available(self) -> bool:
        """Whether the processes can be used: they are started on first use; forked
        from this process only while it has one thread (a fork copies no other thread,
        and whatever locks they held would stay held in the copy)."""
        return bool(self.fork_server) or self._pool is not None or threading.active_count() == 1

    def forks_from_here(self) -> bool:
        """Whether the processes are still to be forked from this process, which has
        one thread: they will inherit what it holds now (reconcile/parts.py)."""
        return not self.fork_server and self._pool is None and threading.active_count() == 1

    def prepare(self) -> None:
        """Start the processes in the background, if they are not running (the
        daemon, as it starts). Started on a
        burst's first batch instead, the fork server and its processes took a
        fifth of the time a burst of 10,000 small files took. Only from a fork
        server: a rescan forks them itself when it has one thread."""
        with self._lock:
            if not self.fork_server or self._pool or self._preparing or self._closed:
                return
            self._preparing = threading.Thread(
                target=self._prepare, name="readers-start", daemon=True
            )
            self._preparing.start()

    def _prepare(self) -> None:
        try:
            pool = self._started()
            # A call per process: the executor forks them as calls come.
            for future in [pool.submit(os.getpid) for _ in range(self.processes)]:
                future.result()
        except Exception as exc:  # noqa: BLE001 - the first batch starts them, and says why not
            log.debug("reading processes not started ahead: %s", exc)

    def call(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """fn(*args) in one of the processes (fn and args are sent there by pickle)."""
        return self._started().submit(fn, *args)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                if self.fork_server:
                    server = multiprocessing.get_context("forkserver")
                    # Imported once in the server, not in every reader it forks.
                    server.set_forkserver_preload(["imgwatch.reconcile.readers"])
                    self._pool = ProcessPoolExecutor(
                        self.processes,
                        mp_context=server,
                        initializer=_reader_start,
                        initargs=(self.fork_server, os.getpid()),
                    )
                else:
                    # All processes are forked now, before the pool starts its own thread.
                    context = multiprocessing.get_context("fork")
                    self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
                log.info("reading files in %d processes", self.processes)
            return self._pool

    def submit(
        self, files: list[ToRead], processor: FileProcessor, uploads: bool
    ) -> list[Future[list[Outcome]]]:
        # A few chunks per process: large enough that sending them costs little,
        # small enough that the processes finish together.
        size = max(16, -(-len(files) // (4 * self.processes)))
        return [
            self.examine(files[i : i + size], processor, uploads)
            for i in range(0, len(files), size)
        ]

    def examine(
        self, files: list[ToRead], processor: FileProcessor, uploads: bool
    ) -> Future[list[Outcome]]:
        """One chunk of found files (with their rows), read in one process."""
        return self._started().submit(_examine_all, processor, uploads, files)

    def look_at(
        self,
        root: Path,
        keys: list[tuple[str, KnownFile | None]],
        processor: FileProcessor,
        uploads: bool,
    ) -> Future[list[Outcome | None]]:
        """The daemon's settled paths (with their rows), looked at in one process."""
        return self._started().submit(_look_at_all, root, processor, uploads, keys)

    def close(self) -> None:
        """Stop the processes without waiting: by now what was asked of them is done,
        or is stuck (a hung network mount), and a stop must not wait on that."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
            preparing = self._preparing
        if preparing is not None:
            preparing.join()  # short: a fork server and its processes starting
            with self._lock:
                pool, self._pool = pool or self._pool, None
        if pool is None:
            return
        processes = list((pool._processes or {}).values())  # the executor keeps no other handle
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _reader_start(log_level: str, daemon: int) -> None:
    """In a reading process of the daemon's fork server: the daemon's logging, and
    an end of its own when the daemon's process is gone."""
    configure_logging(log_level)
    threading.Thread(target=_end_with, args=(daemon,), name="end-with-daemon", daemon=True).start()


def _end_with(pid: int) -> None:
    """Exit once process pid has. A daemon killed outright (SIGKILL, the OOM killer)
    never tells its reading processes to stop: they would wait for work for good,
    and keep the fork server, which waits for every process it forked, with them.
    (Under systemd the unit's leftover processes are killed anyway; run by hand or
    under another supervisor they were not.)"""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # no pidfd (Linux before 5.3): ask every few seconds
        while True:
            time.sleep(2.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
    select.select([handle], [], [])  # readable once the process has exited
    os._exit(0)


def reader_processes(workers: int) -> int:
    """How many reading processes a rescan uses: the file workers setting, at most
    one per core; 1 means reading in the rescan's own process."""
    return max(1, min(workers, os.cpu_count() or 1))


def burst_readers(workers: int, log_level: str) -> ProcessReaders | None:
    """The daemon's reading processes for bursts (reader_processes of them, started
    from a fork server on the first burst); None where there is one core or one
    worker: then every file is read in the daemon's threads."""
    processes = reader_processes(workers)
    return ProcessReaders(processes, fork_server=log_level) if processes > 1 else None
