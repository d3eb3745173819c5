"""The daemon's reconciles, on a thread of their own: at start, on a schedule, on
SIGHUP, after lost events or a watcher restart, and when the database says so
(rows `imgwatch retry` marked, held deletions confirmed or to be looked at again).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from imgwatch.daemon.metrics import Metrics
from imgwatch.daemon.stages import Count, Outage, Stats
from imgwatch.db.store import ImageStore
from imgwatch.errors import ConfigError, DatabaseUnavailable
from imgwatch.model import ConditionKind, ScanSummary, utcnow
from imgwatch.reconcile.deletions import HoldState
from imgwatch.reconcile.reconciler import Reconciler

log = logging.getLogger(__name__)

RETRY_POLL = 10.0  # how often the thread looks for rows `imgwatch retry` marked
HOLD_RECHECK = 60.0  # while deletions are held, how often to look whether the files are back


@dataclass(eq=False, kw_only=True)
class Reconciles:
    """Runs one reconcile at a time when asked (request) or when the database asks."""

    reconciler: Reconciler
    store: ImageStore
    hold: HoldState
    stats: Stats
    outage: Outage
    stopping: threading.Event
    metrics: Metrics | None
    on_done: Callable[[], None]  # told after a reconcile that may have left work
    _wanted: threading.Event = field(default_factory=threading.Event, init=False)
    _reason: str = field(default="", init=False)
    _hold_recheck_at: float = field(default=0.0, init=False)
    _confirmation_seen: dt.datetime | None = field(default=None, init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, reason: str) -> None:
        self._reason = reason
        self._wanted.set()

    def asked(self) -> str | None:
        """Why a reconcile was asked for and has not begun yet, or None."""
        return self._reason if self._wanted.is_set() else None

    def stop(self, deadline: float) -> bool:
        """The caller has set `stopping` (a running reconcile stops at it); True if
        the thread ended by deadline."""
        self._wanted.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _loop(self) -> None:
        # When the last reconcile that went through began: rows `retry` marked before
        # then were in its view, and those it could not read wait for the next
        # periodic one rather than bring a reconcile every RETRY_POLL seconds.
        since: dt.datetime | None = None
        while True:
            wanted = self._wanted.wait(RETRY_POLL)
            if self.stopping.is_set():
                return
            reason = self._reason if wanted else self._unasked_reason(since)
            if reason is None:
                continue
            self._wanted.clear()
            started = utcnow()
            summary = self._run(reason)
            self._hold_recheck_at = time.monotonic() + HOLD_RECHECK
            if summary is not None and not summary.interrupted:
                since = started

    def _unasked_reason(self, since: dt.datetime | None) -> str | None:
        """Why to reconcile when no event or signal asked: held deletions an operator
        confirmed, or to see whether their files are back; rows `imgwatch retry`
        (another process) marked in the database. None: no reason."""
        try:
            # Asked of the database whether or not this daemon holds any: a --rescan
            # may have held them.
            confirmed = [
                c.confirmed_at
                for c in self.store.conditions()
                if c.kind == ConditionKind.DELETIONS_HELD and c.confirmed_at is not None
            ]
            # Once per confirmation: one the reconcile could not apply (more files
            # gone since) is asked for again, with a new time.
            if confirmed and confirmed[0] != self._confirmation_seen:
                self._confirmation_seen = confirmed[0]
                return "confirmed deletes"
            if self.hold.current is not None and time.monotonic() >= self._hold_recheck_at:
                return "held deletes"
            return "retry" if self.store.rereads_due(since) else None
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            return None

    def _run(self, reason: str) -> ScanSummary | None:
        """One reconcile with its log line, history row and counts; None if it failed."""
        try:
            summary = self.reconciler.run(cancel=self.stopping)
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
            log.warning("%s reconcile not done: the database is unavailable", reason)
            self.stopping.wait(5.0)
            return None
        except ConfigError as exc:
            # A look at held deletions every minute repeats what the watch says.
            level = logging.DEBUG if reason == "held deletes" else logging.ERROR
            log.log(level, "%s reconcile failed: %s", reason, exc)
            self.stopping.wait(5.0)
            return None
        except Exception:
            log.exception("internal error in the %s reconcile", reason)
            return None
        self.outage.ok()
        # A look at whether held deletions' files are back, which found nothing new,
        # is not worth a line (or a history row) a minute.
        quiet = reason == "held deletes" and summary.held and not summary.changes
        log.log(
            logging.DEBUG if quiet else logging.INFO, "%s reconcile: %s", reason, summary.line()
        )
        if self.metrics is not None:
            self.metrics.scan_done(reason, summary.elapsed)
        try:
            if not quiet:
                self.store.record_scan(reason, summary)
        except DatabaseUnavailable as exc:
            self.outage.failed(exc)
        self.stats.add(Count.RECORDED, summary.new + summary.changed)
        self.stats.add(Count.REJECTED, summary.rejected)
        self.stats.add(Count.MISSING, summary.missing)
        if not quiet:
            self.on_done()
        return summary
