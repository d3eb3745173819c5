"""What became of uploads: the retry schedule, the outcomes, and their tally."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from imgwatch.model import utcnow
from imgwatch.wordpress.client import Media

# Persisted retry schedule after a file used up its in-run attempts: 1 min, 2, 4 … 1 h.
RESCHEDULE_BASE = dt.timedelta(minutes=1)
RESCHEDULE_MAX = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts within one run, with capped exponential backoff and jitter."""

    attempts: int = 3
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(self.cap, retry_after)
        # Full jitter over the upper half keeps several workers from retrying in step.
        backoff = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


def reschedule_at(attempts_so_far: int, retry_after: float | None = None) -> dt.datetime:
    """When a failed row is next due, given how many times it already failed."""
    delay = RESCHEDULE_BASE * 2.0 ** min(attempts_so_far, 10)
    if retry_after is not None:
        delay = max(delay, dt.timedelta(seconds=retry_after))
    return utcnow() + min(delay, RESCHEDULE_MAX)


class Outcome(StrEnum):
    """What one upload, text update or purge came to (also the metrics' labels)."""

    DONE = "done"  # uploaded
    REUSED = "reused"  # found in WordPress by its slug, linked to
    UPDATED = "updated"  # a media item given its row's new words
    GONE = "gone"  # a media item a person deleted in WordPress
    FAILED = "failed"
    SKIPPED = "skipped"  # the file changed or went since it was recorded
    WAITING = "waiting"  # not tried or given back: uploads are paused by a site condition
    PURGED = "purged"
    KEPT = "kept"  # a purge found the file back


class UploadTally:
    """How many uploads came to each outcome."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[Outcome] = Counter()

    def add(self, outcome: str, n: int = 1) -> None:
        self.counts[Outcome(outcome)] += n

    def merge(self, other: UploadTally) -> None:
        self.counts.update(other.counts)

    def __getitem__(self, outcome: Outcome) -> int:
        return self.counts[outcome]


class Landed(NamedTuple):
    """A file in the media library: its item, whether it was there already (found by
    its slug), and what its words were set to (textdigest.UNKNOWN: not known)."""

    media: Media
    reused: bool
    text_digest: str


class ContentChanged(Exception):
    """The file on disk no longer has the row's content; a scan will pick up the new one."""
