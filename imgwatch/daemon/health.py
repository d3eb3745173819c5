"""What the daemon says about itself: STATUS=, the health answer, WATCHDOG=1's
vouching; and the watch kept alive (restarted, waited for) while saying it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgwatch.daemon.readers import FileWorkers
from imgwatch.daemon.stages import Count, Stats
from imgwatch.daemon.uploads import UploadDispatcher
from imgwatch.daemon.watch import Watcher
from imgwatch.daemon.writer import Writer
from imgwatch.errors import ConfigError
from imgwatch.reconcile.deletions import HoldState
from imgwatch.wordpress.pause import PauseState, duration

log = logging.getLogger(__name__)

RESTART_WATCHER_EVERY = 5.0
# A single file read this long means a hung mount or disk, not a big file.
STUCK_AFTER = 600


@dataclass(eq=False, kw_only=True)
class Health:
    """The daemon's parts, looked at together."""

    root: Path
    watcher: Watcher
    files: FileWorkers
    writer: Writer
    uploads: UploadDispatcher | None
    hold: HoldState
    stats: Stats
    depth: Callable[[], int]
    database_check: Callable[[], str | None]
    pause_unhealthy: float
    on_watch_restarted: Callable[[], None]
    # Why the watch is down and being retried (the directory is gone, say), or None.
    watch_problem: str | None = field(default=None, init=False)
    _next_watch_attempt: float = field(default=0.0, init=False)
    _reported_stuck: bool = field(default=False, init=False)

    def watching(self) -> bool:
        return self.watch_problem is None and self.watcher.alive()

    def check_watcher(self) -> None:
        """Restart a watcher that died; while the image directory is gone (removed,
        not mounted yet) keep trying without blocking the loop, and say so once."""
        trouble = self.watcher.trouble()
        if trouble is None:
            if self.watch_problem is not None:
                log.info("watching %s again", self.root)
                self.watch_problem = None
            return
        now = time.monotonic()
        if now < self._next_watch_attempt:
            return
        if self.watch_problem is None:
            log.error("%s; restarting the watch and reconciling", trouble)
        self.watcher.stop()
        try:
            self.watcher.start()
        except ConfigError:
            raise
        except OSError as exc:
            problem = f"cannot watch {self.root}: {exc.strerror or exc}"
            if problem != self.watch_problem:
                log.error("%s; trying again every %.0fs", problem, RESTART_WATCHER_EVERY)
            self.watch_problem = problem
            self._next_watch_attempt = now + RESTART_WATCHER_EVERY
            return
        # "watching again" is said by the next check, which finds no trouble.
        self.on_watch_restarted()

    def trouble(self) -> str | None:
        """What the health check answers 503 for, or None: not watching the image
        directory, the database not answering, uploads paused for long."""
        if self.watch_problem is not None:
            return self.watch_problem
        if not self.watcher.alive():
            return f"not watching {self.root}: the file watcher has stopped"
        paused = self.pause_state()
        if paused is not None and paused.seconds >= self.pause_unhealthy:
            return f"uploads paused for {duration(paused.seconds)}: {paused.message}"
        held = self.hold.current
        if held is not None:
            return f"deletions held: {held.message}"
        return self.database_check()

    def pause_state(self) -> PauseState | None:
        return None if self.uploads is None else self.uploads.uploader.pause.state()

    def healthy(self) -> bool:
        """What WATCHDOG=1 vouches for: watching, and every worker thread alive and
        not stuck. Without pings systemd restarts the daemon (WatchdogSec)."""
        threads_ok = self.files.alive() and self.writer.alive()
        uploads_ok = self.uploads is None or self.uploads.alive()
        # Waiting for a missing image directory is what should happen, not a hang:
        # a restart would only exit 78 and stay down.
        watching = self.watcher.alive() or self.watch_problem is not None
        stuck = self.files.stuck(STUCK_AFTER)
        if stuck is not None and not self._reported_stuck:
            log.error(
                "reading %r has taken over %ds; no more watchdog pings, so systemd restarts",
                stuck,
                STUCK_AFTER,
            )
        self._reported_stuck = stuck is not None
        return watching and threads_ok and uploads_ok and stuck is None

    def status_line(self) -> str:
        s = self.stats
        doing = "watching" if self.watch_problem is None else "NOT watching, waiting for"
        text = (
            f"{doing} {self.root}: {self.depth()} queued, {s[Count.RECORDED]} recorded, "
            f"{s[Count.REJECTED]} rejected, {s[Count.MISSING]} gone"
        )
        if self.uploads is not None:
            text += f", {s[Count.UPLOADED]} uploaded, {s[Count.UPLOAD_FAILED]} upload failures"
        paused = self.pause_state()
        if paused is not None:
            text += f"; uploads paused {duration(paused.seconds)}: {paused.message}"
        held = self.hold.current
        if held is not None:
            text += (
                f"; {held.rows} deletion(s) held, waiting for the files to come back or "
                "imgwatch retry --confirm-deletes"
            )
        if s.last_error:
            text += f"; last error: {s.last_error}"
        return text
