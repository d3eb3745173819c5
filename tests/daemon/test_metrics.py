"""The daemon's Prometheus metrics (daemon/metrics.py), read as a scrape reads them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import generate_latest
from sqlalchemy import update
from sqlalchemy.engine import URL

from imgwatch.daemon.metrics import Metrics, reason_label
from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import ImageRecord, Status
from imgwatch.pipeline import media_client, uploader
from imgwatch.wordpress.outcomes import Outcome
from tests.daemon.helpers import record_of, settings_for
from tests.daemonproc import wp_settings
from tests.imagefiles import write_image
from tests.servers import WordPress


def scrape(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def sample(text: str, name: str) -> float | None:
    """One sample's value from the exposition text, by its full name and labels."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_written_rows_are_counted_by_outcome_and_reason(image_dir: Path, db_url: URL) -> None:
    metrics = Metrics()
    # As the daemon builds its store: every committed row is told to the metrics.
    store = ImageStore(db_url, on_written=metrics.rows_written)
    store.open()
    try:
        for name in ("a.jpg", "b.png", "c.jpg"):
            write_image(image_dir / name)
        (image_dir / "notes.jpg").write_text("not an image")
        (image_dir / "empty.jpg").write_bytes(b"")
        names = ("a.jpg", "b.png", "notes.jpg", "empty.jpg")
        store.upsert([record_of(image_dir, n, uploads=n == "b.png") for n in names])
        store.upsert(
            [
                ImageRecord(
                    "c.jpg",
                    "c.jpg",
                    None,
                    Status.FAILED,
                    last_error="read error: Input/output error",
                ),
                # Changed while being read: looked at again, not counted yet.
                ImageRecord("d.jpg", "d.jpg", None, Status.PENDING, last_error="still written"),
            ]
        )
    finally:
        store.close()
    text = scrape(metrics)
    assert sample(text, 'imgwatch_files_total{outcome="recorded",reason=""}') == 2
    assert sample(text, 'imgwatch_files_total{outcome="rejected",reason="not_an_image"}') == 1
    assert sample(text, 'imgwatch_files_total{outcome="rejected",reason="empty"}') == 1
    assert sample(text, 'imgwatch_files_total{outcome="failed",reason="read_error"}') == 1
    assert len([line for line in text.splitlines() if line.startswith("imgwatch_files_")]) == 4
    assert "_created" not in text  # no creation time beside each counter


def test_a_finished_reconcile_is_counted_by_reason_with_its_time() -> None:
    metrics = Metrics()
    before = time.time()
    metrics.scan_done("startup", 2.5)
    metrics.scan_done("periodic", 0.25)
    metrics.scan_done("periodic", 0.5)
    metrics.overflows.inc()
    text = scrape(metrics)
    assert sample(text, 'imgwatch_reconciles_total{reason="startup"}') == 1
    assert sample(text, 'imgwatch_reconciles_total{reason="periodic"}') == 2
    assert sample(text, "imgwatch_last_scan_duration_seconds") == 0.5  # the last one's
    end = sample(text, "imgwatch_last_scan_end_timestamp_seconds")
    assert end is not None and before <= end <= time.time()
    assert sample(text, "imgwatch_event_overflows_total") == 1


@dataclass
class Looks:
    """What the daemon's gauges read: its state now."""

    depth: int = 0
    database_up: bool = True
    watching: bool = True
    held: int = 0
    paused: str | None = None


def test_gauges_are_read_from_the_daemon_at_each_scrape() -> None:
    metrics = Metrics()
    now = Looks()
    metrics.watch(
        queue_depth=lambda: now.depth,
        database_up=lambda: now.database_up,
        watching=lambda: now.watching,
        deletions_held=lambda: now.held,
        wordpress_paused=lambda: now.paused,
        reconcile_interval=3600.0,
    )
    text = scrape(metrics)
    assert sample(text, "imgwatch_reconcile_interval_seconds") == 3600
    assert sample(text, "imgwatch_queue_depth") == 0
    assert sample(text, "imgwatch_database_up") == 1
    assert sample(text, "imgwatch_watching") == 1
    assert sample(text, "imgwatch_deletions_held") == 0
    assert sample(text, 'imgwatch_wordpress_up{reason=""}') == 1
    now.depth, now.database_up, now.watching, now.held = 42, False, False, 150
    now.paused = "firewall"
    text = scrape(metrics)
    assert sample(text, "imgwatch_queue_depth") == 42
    assert sample(text, "imgwatch_database_up") == 0
    assert sample(text, "imgwatch_watching") == 0
    assert sample(text, "imgwatch_deletions_held") == 150
    # One series at a time: the reason says why it is down.
    assert sample(text, 'imgwatch_wordpress_up{reason="firewall"}') == 0
    assert sample(text, 'imgwatch_wordpress_up{reason=""}') is None


def test_without_wordpress_there_is_no_wordpress_series() -> None:
    metrics = Metrics()
    metrics.watch(
        queue_depth=lambda: 0,
        database_up=lambda: True,
        watching=lambda: True,
        deletions_held=lambda: 0,
        wordpress_paused=None,
    )
    assert "imgwatch_wordpress_up" not in scrape(metrics)


def test_uploads_and_text_updates_are_counted_with_their_time(
    image_dir: Path, store: ImageStore, db_url: URL, live_wordpress: WordPress
) -> None:
    settings = settings_for(image_dir, db_url, **wp_settings(live_wordpress))
    client = media_client(settings)
    assert client is not None
    metrics = Metrics()
    up = uploader(settings, client, store)
    metrics.follow_uploads(up)
    try:
        path = write_image(image_dir / "a.jpg")
        (image_dir / "twin.jpg").write_bytes(path.read_bytes())  # the same content
        write_image(image_dir / "gone.jpg")
        names = ("a.jpg", "twin.jpg", "gone.jpg")
        store.upsert([record_of(image_dir, n, uploads=True) for n in names])
        (image_dir / "gone.jpg").unlink()  # gone before its upload: skipped
        jobs = {job.file_name: job for job in store.due_uploads()}
        outcomes = [up.upload(jobs[n]) for n in names]
        assert outcomes == ["done", "reused", "skipped"]
        with store.engine.begin() as conn:  # a person edits the title in the database
            conn.execute(update(images).where(images.c.file_name == "a.jpg").values(title="New"))
        assert up.update_all(store)[Outcome.UPDATED] == 1
    finally:
        client.close()
    text = scrape(metrics)
    for outcome in ("done", "reused", "skipped"):
        assert sample(text, f'imgwatch_uploads_total{{outcome="{outcome}"}}') == 1
    # Skipped ones took no time to speak of: they are not in the timings.
    assert sample(text, "imgwatch_upload_duration_seconds_count") == 2
    total = sample(text, "imgwatch_upload_duration_seconds_sum")
    assert total is not None and total > 0
    assert sample(text, 'imgwatch_text_updates_total{outcome="updated"}') == 1
    assert sample(text, "imgwatch_upload_retries_total") == 0


def test_reasons_are_a_few_fixed_labels() -> None:
    assert reason_label("not an image: content looks like text") == "not_an_image"
    assert reason_label("file is 300.0 MiB, over the 256 MiB limit (…)") == "too_large"
    assert reason_label("truncated JPEG: the file ends before the image does") == "truncated"
    assert reason_label("something new") == "other"
    assert reason_label(None) == "unknown"
