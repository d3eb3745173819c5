"""Process a file once, when it is complete.

Every event for a path pushes its deadline back by the quiet period. Where the
watcher reports closes (inotify), a file written to and not yet closed is left
alone however long the writer pauses, so a slow copy is read once, after its last
chunk; and a close-after-write with no event after it is the fast path: one look
(`stat`) 50 ms later and the file is handed on (any later write would have sent
an event and reset that). Otherwise, when the deadline passes the file is looked
at, and again a settle time later: it is handed on only when size and mtime did
not change between two looks. A file that never goes quiet is handed on after
`max_wait` anyway (the processor's own read-time check still catches a change
during reading).

Single-threaded by design: only the daemon's main loop calls it.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

# (size, mtime_ns) of a file, or None when it is not there (deleted or moved away).
Signature = tuple[int, int] | None
Look = Callable[[str], Signature]

_GONE = object()


@dataclass(slots=True)
class _Pending:
    first_seen: float
    deadline: float
    last_look: Signature | object | None = None  # None: not looked at since the last event
    writing: bool = False  # written to, not closed yet
    closed: bool = False  # the last event was a close after writing


class Debouncer:
    def __init__(
        self,
        look: Look,
        *,
        quiet: float,
        max_wait: float,
        settle: float = 0.2,
        close_settle: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._look = look
        self.quiet = quiet
        self.max_wait = max_wait
        # A closed file is still looked at twice, `settle` apart: some tools close and
        # reopen between chunks.
        self.settle = min(settle, quiet) if quiet > 0 else 0.0
        self.close_settle = min(close_settle, self.settle)
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: str) -> bool:
        return key in self._pending

    def touch(self, key: str, *, closed: bool = False, writing: bool = False) -> None:
        """Something happened to key: (re)start its quiet period.

        closed: it was closed after writing; writing: it was written to and a close
        event will follow (only where the watcher reports closes).
        """
        now = self._clock()
        entry = self._pending.get(key)
        if entry is None:
            entry = _Pending(first_seen=now, deadline=now)
            self._pending[key] = entry
        entry.last_look = None
        entry.writing = writing or (entry.writing and not closed)
        entry.closed = closed
        if closed:
            entry.deadline = now + self.close_settle
        elif entry.writing:
            # Until the close: the look happens at max_wait at the latest.
            entry.deadline = max(now + self.quiet, entry.first_seen + self.max_wait)
        else:
            entry.deadline = now + self.quiet
        heapq.heappush(self._heap, (entry.deadline, key))

    def events_lost(self) -> None:
        """Events were dropped: a close may be among them, so no file is known to be
        still open any more; each falls back to the quiet period."""
        now = self._clock()
        for key, entry in self._pending.items():
            if entry.writing:
                entry.writing = False
                entry.deadline = now + self.quiet
                heapq.heappush(self._heap, (entry.deadline, key))

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, limit: int, busy: Callable[[str], bool] = lambda _k: False) -> list[str]:
        """Up to `limit` keys that are complete (or gone, or waited long enough).

        A key that is `busy` (being processed right now) stays pending and is
        looked at again after the settle time.
        """
        now = self._clock()
        ready: list[str] = []
        while self._heap and len(ready) < limit:
            deadline, key = self._heap[0]
            entry = self._pending.get(key)
            if entry is None or entry.deadline != deadline:
                heapq.heappop(self._heap)  # superseded by a later touch
                continue
            if deadline > now:
                break
            heapq.heappop(self._heap)
            if busy(key):
                self._recheck(entry, key, now)
                continue
            signature = self._look(key)
            current: Signature | object = _GONE if signature is None else signature
            settled = current == entry.last_look or (entry.closed and signature is not None)
            if settled or now - entry.first_seen >= self.max_wait:
                del self._pending[key]
                ready.append(key)
            else:
                entry.last_look = current
                self._recheck(entry, key, now)
        return ready

    def _recheck(self, entry: _Pending, key: str, now: float) -> None:
        entry.deadline = now + max(self.settle, 0.01)
        heapq.heappush(self._heap, (entry.deadline, key))

    def _drop_stale(self) -> None:
        while self._heap:
            deadline, key = self._heap[0]
            entry = self._pending.get(key)
            if entry is not None and entry.deadline == deadline:
                return
            heapq.heappop(self._heap)
