"""The daemon's Prometheus metrics (prometheus-client), in a registry of its own.

Counters are fed where things happen (rows written, uploads, lost events,
reconciles); gauges are read when Prometheus scrapes (queue depth, database and
WordPress up, watching). Reasons are grouped into a few fixed values: a label
per distinct message would grow without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily

from imgwatch.model import ImageRecord, Status
from imgwatch.wordpress.uploader import Uploader

# (start of a reason as files/ and wordpress/uploader.py write it, its label value)
_REASONS: tuple[tuple[str, str], ...] = (
    ("not an image", "not_an_image"),
    ("empty file", "empty"),
    ("file is ", "too_large"),  # "file is 300.0 MiB, over the 256 MiB limit"
    ("image too large", "too_many_pixels"),
    ("corrupt", "corrupt"),
    ("truncated", "truncated"),
    ("unreadable", "unreadable"),
    ("read error", "read_error"),
    ("not a regular file", "not_a_file"),
    ("symbolic link", "link"),
    ("broken symbolic link", "link"),
    ("file name", "name"),
    ("relative path", "name"),
)

UPLOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def reason_label(reason: str | None) -> str:
    """A rejection's or failure's reason as one of a few fixed label values."""
    if not reason:
        return "unknown"
    for start, label in _REASONS:
        if reason.startswith(start):
            return label
    return "other"


class Metrics:
    def __init__(self) -> None:
        # No `_created` series beside each counter: nothing here reads them, and
        # they double what every scrape carries.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.files = Counter(
            "imgwatch_files",
            "Files whose row was written: recorded, rejected or failed (with a reason)",
            ["outcome", "reason"],
            registry=r,
        )
        self.uploads = Counter(
            "imgwatch_uploads",
            "Uploads by outcome: done, reused (linked to existing media), failed, skipped",
            ["outcome"],
            registry=r,
        )
        self.text_updates = Counter(
            "imgwatch_text_updates",
            "Media items given their rows' changed words: updated, gone (deleted in "
            "WordPress: uploaded again), failed, waiting",
            ["outcome"],
            registry=r,
        )
        self.upload_seconds = Histogram(
            "imgwatch_upload_duration_seconds",
            "Time to bring one row to WordPress, retries included",
            buckets=UPLOAD_BUCKETS,
            registry=r,
        )
        self.upload_retries = Counter(
            "imgwatch_upload_retries", "Upload attempts repeated after a passing error", registry=r
        )
        self.overflows = Counter(
            "imgwatch_event_overflows",
            "Times file events were lost (kernel or queue overflow); a reconcile follows",
            registry=r,
        )
        self.reconciles = Counter(
            "imgwatch_reconciles", "Reconciles run, by reason", ["reason"], registry=r
        )
        self.last_scan_seconds = Gauge(
            "imgwatch_last_scan_duration_seconds", "How long the last reconcile took", registry=r
        )
        self.last_scan_end = Gauge(
            "imgwatch_last_scan_end_timestamp_seconds",
            "When the last reconcile ended (Unix time)",
            registry=r,
        )
        # Beside the last reconcile's end, so that an alert can say "none for twice
        # the interval" without being told the interval (0: periodic ones are off).
        self.reconcile_interval = Gauge(
            "imgwatch_reconcile_interval_seconds",
            "Seconds between periodic reconciles, as configured (0: off)",
            registry=r,
        )
        self.queue_depth = Gauge(
            "imgwatch_queue_depth", "Files waiting to be read or their rows written", registry=r
        )
        self.database_up = Gauge(
            "imgwatch_database_up", "1 while the database answers, 0 during an outage", registry=r
        )
        self.wordpress_up = _WordPressUp()
        r.register(self.wordpress_up)
        self.deletions_held = Gauge(
            "imgwatch_deletions_held",
            "Rows whose deletion the mass-deletion guard holds (0: none)",
            registry=r,
        )
        self.watching = Gauge(
            "imgwatch_watching", "1 while the image directory is watched", registry=r
        )

    def follow_uploads(self, up: Uploader) -> None:
        """Counts each upload's outcome and time, each retry, each text update."""
        up.on_upload = self.upload_done
        up.on_retry = self.upload_retries.inc
        up.on_text_update = lambda outcome: self.text_updates.labels(outcome).inc()

    def watch(
        self,
        *,
        queue_depth: Callable[[], float],
        database_up: Callable[[], bool],
        watching: Callable[[], bool],
        deletions_held: Callable[[], float],
        wordpress_paused: Callable[[], str | None] | None,
        reconcile_interval: float = 0.0,
    ) -> None:
        """Gauges read at scrape time from the daemon's own state. wordpress_paused
        gives the kind of condition uploads are paused for, or None."""
        self.reconcile_interval.set(reconcile_interval)
        self.queue_depth.set_function(queue_depth)
        self.database_up.set_function(lambda: float(database_up()))
        self.watching.set_function(lambda: float(watching()))
        self.deletions_held.set_function(deletions_held)
        if wordpress_paused is not None:
            self.wordpress_up.paused = wordpress_paused
        else:
            self.registry.unregister(self.wordpress_up)

    def rows_written(self, records: Sequence[ImageRecord]) -> None:
        for record in records:
            if record.status in (Status.DONE, Status.PENDING) and record.last_error is None:
                self.files.labels("recorded", "").inc()
            elif record.status in (Status.REJECTED, Status.FAILED):
                self.files.labels(record.status, reason_label(record.last_error)).inc()

    def upload_done(self, outcome: str, seconds: float) -> None:
        self.uploads.labels(outcome).inc()
        if outcome != "skipped":
            self.upload_seconds.observe(seconds)

    def scan_done(self, reason: str, duration: float) -> None:
        self.reconciles.labels(reason).inc()
        self.last_scan_seconds.set(duration)
        self.last_scan_end.set(time.time())


class _WordPressUp:
    """imgwatch_wordpress_up{reason}: 1 with reason "" while uploads flow, 0 with the
    kind of condition (firewall, unauthorized, redirect …) while they are paused. One
    series at a time, so `imgwatch_wordpress_up == 0` alerts and the label says why."""

    def __init__(self) -> None:
        self.paused: Callable[[], str | None] = lambda: None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reason = self.paused()
        family = GaugeMetricFamily(
            "imgwatch_wordpress_up",
            "1 while uploads flow; 0 while they are paused by a condition of WordPress, "
            "named by reason; absent without WordPress",
            labels=["reason"],
        )
        family.add_metric([reason or ""], 0.0 if reason else 1.0)
        yield family
