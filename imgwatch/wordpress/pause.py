"""Uploads paused as a whole while WordPress is in a condition no file can pass.

When an answer says something about the site rather than the file (a refused
password, a firewall's page, a redirect, no answer at all), every upload waits:
no row is failed for it, the rows stay due. The site is probed with capped
backoff (seconds at first, at most `probe_max` apart) and uploads resume by
themselves once it answers properly. The pause says what it is waiting for once,
in plain words, and again only when that changes, hourly while it lasts, and when
it is over.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from imgwatch.errors import SiteCondition

log = logging.getLogger(__name__)

FIRST_PROBE = 2.0  # seconds from a pause to the first probe
REMIND_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class PauseState:
    """What the pause looks like now, for STATUS=, metrics, health and the database."""

    kind: str
    message: str
    since: dt.datetime  # naive UTC, as stored
    seconds: float  # how long it has lasted


class UploadPause:
    def __init__(
        self,
        probe_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.probe_max = probe_max
        self._clock = clock
        self._wall = wall or (lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
        self._lock = threading.Lock()
        self._condition: SiteCondition | None = None
        self._since = 0.0
        self._since_wall = dt.datetime.min
        self._next_probe = 0.0
        self._delay = min(FIRST_PROBE, probe_max)
        self._reminded = 0.0
        # A probe passed but no upload has worked since: a condition that the probe
        # does not see (a firewall rule for uploads only) must not reset the backoff.
        self._unproven = False

    @property
    def condition(self) -> SiteCondition | None:
        return self._condition

    def state(self) -> PauseState | None:
        with self._lock:
            cond = self._condition
            if cond is None:
                return None
            now = self._clock()
            return PauseState(cond.kind, str(cond), self._since_wall, now - self._since)

    def report(self, condition: SiteCondition) -> None:
        """An upload (or the preflight) met a site condition: pause, or go on pausing."""
        with self._lock:
            now = self._clock()
            previous = self._condition
            self._condition = condition
            if previous is None:
                self._since, self._since_wall, self._reminded = now, self._wall(), now
                if self._unproven:  # the probe passed, the uploads did not: wait longer
                    self._delay = min(self._delay * 2, self.probe_max)
                self._schedule(now, condition)
                if self._unproven:
                    log.warning(
                        "uploads paused again: %s (WordPress answered the probe, not the upload)",
                        condition,
                    )
                else:
                    log.error(
                        "uploads paused: %s; files wait in the database, WordPress is asked "
                        "again in %.0fs",
                        condition,
                        self._next_probe - now,
                    )
            elif str(previous) != str(condition):
                log.error("uploads still paused, now: %s", condition)

    def probe_due(self) -> bool:
        with self._lock:
            return self._condition is not None and self._clock() >= self._next_probe

    def seconds_to_probe(self) -> float | None:
        """How long until the next probe; None when not paused."""
        with self._lock:
            if self._condition is None:
                return None
            return max(0.0, self._next_probe - self._clock())

    def probe_failed(self, condition: SiteCondition) -> None:
        """The site still answers wrongly: wait longer before the next probe."""
        with self._lock:
            now = self._clock()
            self._delay = min(self._delay * 2, self.probe_max)
            self._schedule(now, condition)
            if now - self._reminded >= REMIND_EVERY:
                self._reminded = now
                log.warning(
                    "uploads still paused after %s: %s", duration(now - self._since), condition
                )
        self.report(condition)

    def resume(self) -> None:
        """The site answered the probe properly: uploads go on."""
        with self._lock:
            if self._condition is None:
                return
            lasted = self._clock() - self._since
            self._condition = None
            self._unproven = True
        log.info("WordPress answers properly again after %s; uploads resume", duration(lasted))

    @property
    def unproven(self) -> bool:
        """Uploads resumed after a probe passed, and nothing has worked since."""
        return self._unproven

    def worked(self) -> None:
        """An upload (or an update, a delete) went through: the site is healthy, the
        next pause starts afresh."""
        if self._unproven or self._delay != min(FIRST_PROBE, self.probe_max):
            with self._lock:
                self._unproven = False
                self._delay = min(FIRST_PROBE, self.probe_max)

    def probe_now(self) -> None:
        """An operator asked (SIGHUP): probe at once."""
        with self._lock:
            self._next_probe = self._clock()

    def _schedule(self, now: float, condition: SiteCondition) -> None:
        wait = self._delay
        if condition.retry_after is not None:
            wait = min(max(wait, condition.retry_after), self.probe_max)
        self._next_probe = now + wait


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
