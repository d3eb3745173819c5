"""A directory moved into the tree from outside, read as a whole.

Its files were written before it arrived (a camera card, an rsync run's last
rename, a `mv` from another folder): complete, and new when no row is under its
name. So the walk's own look at each file stands for the debouncer's, no row is
looked up, and the files go to the reading processes in chunks as the walk finds
them, the walk and the hand-over on one file worker's thread. The daemon's main
loop hears of the directory only, not of each file in it: for a burst of small
files that loop, with its look at each file and a row lookup per file, was most
of the daemon's time.

A write to one of its files after it arrived is an event like any other: the path
waits in the debouncer until the directory is read, and is then looked at again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice

from imgwatch.files.decide import Outcome, ToRead
from imgwatch.files.walk import FoundFile

# Files handed to a reading process at a time: enough that sending them costs
# little beside reading them, few enough that both processes start at once.
CHUNK = 128
# Chunks sent ahead per reading process: a process never waits for the next chunk
# while this thread hands on the last one's rows, and what is read ahead of the
# writer stays bounded whatever the directory holds.
AHEAD_PER_PROCESS = 2


@dataclass(eq=False, slots=True)
class ArrivedDir:
    """A directory that arrived whole: its name relative to the image directory."""

    key: str
    # Moved or deleted while queued or read: nothing more of it is handed on.
    left: bool = False
    # What moved was a directory inside it: the rest of it goes a path at a time.
    walk_again: bool = False

    @property
    def prefix(self) -> str:
        return self.key + "/"


class BusyDirs:
    """Directories queued or being read whole: a path under one is claimed by that
    reading.

    Not thread-safe on its own: the file workers hold their claims lock around it.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, list[ArrivedDir]] = {}  # "dir/" -> its readings under way

    def __iter__(self) -> Iterator[ArrivedDir]:
        return (job for jobs in self._jobs.values() for job in jobs)

    def add(self, job: ArrivedDir) -> None:
        self._jobs.setdefault(job.prefix, []).append(job)

    def discard(self, job: ArrivedDir) -> None:
        jobs = self._jobs.get(job.prefix, [])
        if job in jobs:
            jobs.remove(job)
        if not jobs:
            self._jobs.pop(job.prefix, None)

    def covers(self, key: str) -> bool:
        """Whether key lies under a directory being read."""
        if not self._jobs:  # the usual case, asked for every path claimed
            return False
        slash = key.find("/")
        while slash >= 0:
            if key[: slash + 1] in self._jobs:
                return True
            slash = key.find("/", slash + 1)
        return False


Read = Callable[[list[ToRead]], "Future[list[Outcome]]"]


def read_ahead(
    found: Iterator[FoundFile], read: Read, ahead: int, stopped: Callable[[], bool]
) -> Iterator[tuple[list[ToRead], Future[list[Outcome]]]]:
    """The walk's files, in chunks, each handed to `read` up to `ahead` chunks before
    its outcomes are asked for; (chunk, its future) in walk order. Stops taking
    files from the walk once `stopped()`: what was not read is found by the next
    start's reconcile."""
    waiting: deque[tuple[list[ToRead], Future[list[Outcome]]]] = deque()
    files: Iterable[ToRead] = ((f, None) for f in found)  # new: no row under the directory
    while True:
        while len(waiting) < ahead and not stopped():
            chunk = list(islice(files, CHUNK))
            if not chunk:
                break
            waiting.append((chunk, read(chunk)))
        if not waiting:
            return
        yield waiting.popleft()
