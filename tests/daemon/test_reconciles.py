"""The daemon's reconciles (daemon/reconciles.py): when they run, and what each leaves."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.daemon import reconciles as reconciles_module
from imgwatch.daemon.metrics import Metrics
from imgwatch.daemon.reconciles import Reconciles
from imgwatch.daemon.stages import Count, Outage, Stats
from imgwatch.db.store import ImageStore
from imgwatch.model import Status
from imgwatch.pipeline import reconciler
from imgwatch.reconcile.deletions import HoldState
from tests.daemon.helpers import settings_for
from tests.daemonproc import all_done, start, wait_for, wait_rows
from tests.imagefiles import write_image
from tests.rows import all_rows


def test_sighup_reconciles(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    with start(tmp_path, image_dir, db_url, watch_mode="polling", poll_interval="60") as daemon:
        # Polling once a minute: only the reconcile can see this file in time.
        write_image(image_dir / "late.jpg")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log(r"SIGHUP reconcile: 1 new")
        wait_rows(db_url, all_done({"late.jpg"}))
        assert daemon.stop() == 0
    assert "(polling every 60s)" in daemon.log()


def test_periodic_reconcile(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    with start(
        tmp_path,
        image_dir,
        db_url,
        watch_mode="polling",
        poll_interval="60",
        reconcile_interval="1",
    ) as daemon:
        write_image(image_dir / "found-later.jpg")
        wait_rows(db_url, all_done({"found-later.jpg"}), timeout=20)
        daemon.wait_log(r"periodic reconcile: ")
        assert daemon.stop() == 0


# --- in-process: the reconcile thread, built as the daemon builds it -------------------


class Reconciling:
    """A Reconciles over a real store and image directory, and what it told."""

    def __init__(
        self,
        store: ImageStore,
        image_dir: Path,
        db: URL,
        metrics: Metrics | None = None,
        **more: str,
    ) -> None:
        settings = settings_for(image_dir, db, **more)
        hold = HoldState()
        self.store = store
        self.done = 0  # on_done calls
        self.reconciles = Reconciles(
            reconciler=reconciler(settings, store, image_dir, uploads=False, hold=hold),
            store=store,
            hold=hold,
            stats=Stats(),
            outage=Outage(),
            stopping=threading.Event(),
            metrics=metrics,
            on_done=self._on_done,
        )

    def _on_done(self) -> None:
        self.done += 1

    def wait_done(self, count: int) -> None:
        wait_for(lambda: self.done >= count, 10, f"{count} reconcile(s) done")

    def last_reason(self) -> str | None:
        scan = self.store.last_scan()
        return None if scan is None else str(scan["reason"])

    @contextmanager
    def thread(self) -> Iterator[Reconciles]:
        r = self.reconciles
        r.start()
        try:
            yield r
        finally:
            r.stopping.set()
            began = time.monotonic()
            assert r.stop(began + 10)
            assert time.monotonic() - began < 5.0  # not a RETRY_POLL or a pause later


def statuses(store: ImageStore) -> dict[str, str]:
    return {r["file_name"]: r["status"] for r in all_rows(store)}


def test_a_request_is_asked_until_it_begins_and_runs_once_with_its_reason(
    store: ImageStore, db_url: URL, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgwatch.daemon.reconciles")
    write_image(image_dir / "a.jpg")
    (image_dir / "notes.jpg").write_text("not an image")
    metrics = Metrics()
    rec = Reconciling(store, image_dir, db_url, metrics)
    r = rec.reconciles
    assert r.asked() is None
    r.request("startup")
    assert r.asked() == "startup"
    r.request("SIGHUP")  # before the first began: one reconcile, the latest reason
    assert r.asked() == "SIGHUP"
    with rec.thread():
        rec.wait_done(1)
        assert r.asked() is None
        assert rec.last_reason() == "SIGHUP"
        assert statuses(store) == {"a.jpg": Status.DONE, "notes.jpg": Status.REJECTED}
        assert "SIGHUP reconcile: 1 new, 0 changed, 0 unchanged, 1 rejected" in caplog.text
        assert (r.stats[Count.RECORDED], r.stats[Count.REJECTED]) == (1, 1)
        samples = metrics.registry.get_sample_value
        assert samples("imgwatch_reconciles_total", {"reason": "SIGHUP"}) == 1
        assert samples("imgwatch_reconciles_total", {"reason": "startup"}) is None
        r.request("periodic")
        rec.wait_done(2)
        assert rec.last_reason() == "periodic"
    assert rec.done == 2


def test_rows_marked_by_retry_bring_a_reconcile_unasked(
    store: ImageStore,
    db_url: URL,
    image_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconciles_module, "RETRY_POLL", 0.05)
    (image_dir / "notes.jpg").write_text("not an image")
    rec = Reconciling(store, image_dir, db_url)
    with rec.thread() as r:
        r.request("startup")
        rec.wait_done(1)
        write_image(image_dir / "notes.jpg")  # fixed; no event here, no request
        store.retry(failed=False, rejected=True)  # `imgwatch retry --rejected`, elsewhere
        rec.wait_done(2)
        assert rec.last_reason() == "retry"
        assert statuses(store) == {"notes.jpg": Status.DONE}


def hold_two_of_three(rec: Reconciling, image_dir: Path) -> Reconciles:
    """Three files recorded, then two deleted at once: held by the guard (min 2)."""
    r = rec.reconciles
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(image_dir / name)
    r.request("startup")
    rec.wait_done(1)
    (image_dir / "a.jpg").unlink()
    (image_dir / "b.jpg").unlink()
    r.request("periodic")
    rec.wait_done(2)
    held = r.hold.current
    assert held is not None and held.rows == 2
    assert set(statuses(rec.store).values()) == {Status.DONE}
    return r


def test_a_confirmed_hold_is_applied_unasked(
    store: ImageStore, db_url: URL, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciles_module, "RETRY_POLL", 0.05)
    rec = Reconciling(store, image_dir, db_url, delete_guard_min="2")
    with rec.thread() as r:
        hold_two_of_three(rec, image_dir)
        assert store.confirm_held_deletions()  # `imgwatch retry --confirm-deletes`
        rec.wait_done(3)
        assert rec.last_reason() == "confirmed deletes"
        assert statuses(store) == {
            "a.jpg": Status.MISSING,
            "b.jpg": Status.MISSING,
            "c.jpg": Status.DONE,
        }
        assert r.hold.current is None


def test_held_deletions_are_looked_at_again_quietly_until_the_files_are_back(
    store: ImageStore, db_url: URL, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciles_module, "RETRY_POLL", 0.05)
    monkeypatch.setattr(reconciles_module, "HOLD_RECHECK", 0.0)
    metrics = Metrics()
    rec = Reconciling(store, image_dir, db_url, metrics, delete_guard_min="2")

    def looks() -> float:
        return (
            metrics.registry.get_sample_value(
                "imgwatch_reconciles_total", {"reason": "held deletes"}
            )
            or 0
        )

    with rec.thread() as r:
        hold_two_of_three(rec, image_dir)
        # Two looks: the first one's history row and on_done would be done by the second.
        wait_for(lambda: looks() >= 2, 10, "two looks at the held deletions")
        assert rec.last_reason() == "periodic"  # no history row a look
        assert rec.done == 2
        assert r.hold.current is not None
        write_image(image_dir / "a.jpg")  # the share is back
        write_image(image_dir / "b.jpg")
        wait_for(lambda: r.hold.current is None, 10, "the hold to end")
        rec.wait_done(3)
        assert rec.last_reason() == "held deletes"
        assert set(statuses(store).values()) == {Status.DONE}


def test_a_failed_reconcile_says_why_and_leaves_no_history(
    store: ImageStore, db_url: URL, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Reconciling(store, image_dir, db_url)
    image_dir.rmdir()
    with rec.thread() as r:
        r.request("periodic")
        wait_for(lambda: "periodic reconcile failed: " in caplog.text, 10, "the failure said")
        assert r.asked() is None
    # Stopped at once though it pauses after a failure (the context checks the time).
    assert rec.done == 0 and rec.last_reason() is None
