"""Files read in worker processes, for a one-shot rescan with many files to read.

Reading a small image (open, header, hash) is Python work that holds the GIL, so
threads do not spread it over cores; processes do. They are forked from the
rescan before it starts any thread, and share nothing with it but the files
and the records they send back. The daemon keeps its threads and does not fork.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Self

from imgwatch.files.decide import Outcome, ToRead, examine
from imgwatch.files.record import FileProcessor

log = logging.getLogger(__name__)


def _examine_all(processor: FileProcessor, uploads: bool, files: list[ToRead]) -> list[Outcome]:
    return [examine(found, row, processor, uploads) for found, row in files]


class ProcessReaders:
    """A pool of forked processes that turn found files into outcomes, in chunks."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def available(self) -> bool:
        """Whether the processes can be used: they are started (forked) on first use,
        and only from a process with one thread (a fork copies no other thread, and
        whatever locks they held would stay held in the copy)."""
        return self._pool is not None or threading.active_count() == 1

    def submit(
        self, files: list[ToRead], processor: FileProcessor, uploads: bool
    ) -> list[Future[list[Outcome]]]:
        if self._pool is None:
            # All processes are forked now, before the pool starts its own thread.
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
            log.info("reading files in %d processes", self.processes)
        # A few chunks per process: large enough that sending them costs little,
        # small enough that the processes finish together.
        size = max(16, -(-len(files) // (4 * self.processes)))
        return [
            self._pool.submit(_examine_all, processor, uploads, files[i : i + size])
            for i in range(0, len(files), size)
        ]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def reader_processes(workers: int) -> int:
    """How many reading processes a rescan uses: the file workers setting, at most
    one per core; 1 means reading in the rescan's own process."""
    return max(1, min(workers, os.cpu_count() or 1))
