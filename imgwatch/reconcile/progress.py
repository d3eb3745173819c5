"""How far a `--rescan` has got: a bar on a terminal, log lines everywhere else.

On a terminal (stderr is a tty) tqdm draws a bar over the files of the tree
(counted first, by a walk of its own that opens nothing), with the bytes read, the rate and
the time left; log lines go above it. Under systemd, in cron, or piped, a plain
line is logged every LOG_EVERY seconds instead: a journal has no use for a bar.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import walk
from imgwatch.reconcile.reconciler import Progress

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between progress lines when there is no terminal


class ProgressBar:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.bar = tqdm(
            total=total,
            unit="file",
            unit_scale=True,
            desc="rescan",
            dynamic_ncols=True,
            file=stream or sys.stderr,
            # Drawn at most ten times a second, whatever the rate of updates.
            mininterval=0.1,
        )

    def __call__(self, seen: int, read: int, read_bytes: int) -> None:
        self.bar.set_postfix_str(f"{read:,} read, {_size(read_bytes)}", refresh=False)
        self.bar.update(seen - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class ProgressLog:
    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self.clock = clock
        self.started = clock()
        self.next_line = self.started + every

    def __call__(self, seen: int, read: int, read_bytes: int) -> None:
        now = self.clock()
        if now < self.next_line:
            return
        self.next_line = now + self.every
        rate = seen / max(now - self.started, 1e-9)
        log.info(
            "rescan progress: %s files looked at, %s read (%s), %s files/s",
            f"{seen:,}",
            f"{read:,}",
            _size(read_bytes),
            f"{rate:,.0f}",
        )

    def close(self) -> None:
        pass


@contextmanager
def rescan_progress(image_dir: Path, accept: ImageNameFilter) -> Iterator[Progress]:
    """The progress a rescan reports to: a bar when stderr is a terminal."""
    shown: ProgressBar | ProgressLog
    redirect: AbstractContextManager[object]
    if sys.stderr.isatty():
        shown = ProgressBar(count_candidates(image_dir, accept))
        redirect = logging_redirect_tqdm()  # log lines above the bar, not through it
    else:
        shown, redirect = ProgressLog(), nullcontext()
    try:
        with redirect:
            yield shown
    finally:
        shown.close()


def count_candidates(image_dir: Path, accept: ImageNameFilter) -> int:
    """How many files the walk will find: the bar's total (a walk of its own, about
    the cost of a reconcile of an unchanged tree; only done for a terminal)."""
    return sum(1 for _ in walk(image_dir, accept))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
