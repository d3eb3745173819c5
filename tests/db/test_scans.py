"""The scan history (imgwatch/db/scans.py): one row per reconcile, the newest kept."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from sqlalchemy import func, select

from imgwatch.db.schema import SCANS_KEPT, scans
from imgwatch.db.store import ImageStore
from imgwatch.model import ScanSummary, utcnow


def test_no_scan_yet_is_none(store: ImageStore) -> None:
    assert store.last_scan() is None


def test_a_scan_is_recorded_with_its_counts_and_when_it_started(store: ImageStore) -> None:
    summary = ScanSummary(
        new=1, changed=2, unchanged=3, rejected=4, missing=5, failed=6, busy=7, elapsed=90.5
    )
    before = utcnow()
    store.record_scan("startup", summary)
    last = store.last_scan()
    assert last is not None
    assert {
        k: last[k] for k in ("new", "changed", "unchanged", "rejected", "missing", "failed")
    } == {
        "new": 1,
        "changed": 2,
        "unchanged": 3,
        "rejected": 4,
        "missing": 5,
        "failed": 6,
    }
    assert (last["reason"], last["host"], last["duration_s"]) == (
        "startup",
        socket.gethostname()[:128],
        90.5,
    )
    assert not last["interrupted"]
    # It began elapsed seconds before it was recorded.
    began = before - dt.timedelta(seconds=90.5)
    assert began - dt.timedelta(seconds=1) <= last["started_at"] <= began + dt.timedelta(seconds=5)


def test_the_last_scan_is_the_most_recent_even_if_interrupted(store: ImageStore) -> None:
    store.record_scan("startup", ScanSummary(new=10))
    store.record_scan("periodic", ScanSummary(unchanged=10))
    store.record_scan("a reason longer than the column is wide", ScanSummary(interrupted=True))
    last = store.last_scan()
    assert last is not None
    assert last["reason"] == "a reason longer than the column "
    assert last["interrupted"] and last["unchanged"] == 0


def test_only_the_most_recent_scans_are_kept(store: ImageStore) -> None:
    old: dict[str, Any] = {
        "reason": "old",
        "host": "h",
        "started_at": utcnow() - dt.timedelta(days=1),
        "duration_s": 1.0,
        "new": 0,
        "changed": 0,
        "unchanged": 0,
        "rejected": 0,
        "missing": 0,
        "failed": 0,
        "interrupted": False,
    }
    with store.engine.begin() as conn:
        conn.execute(scans.insert(), [old] * (SCANS_KEPT + 4))
    store.record_scan("periodic", ScanSummary())
    with store.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(scans)).scalar_one()
        oldest = conn.execute(select(func.min(scans.c.id))).scalar_one()
    assert count == SCANS_KEPT
    assert oldest == 6  # of ids 1 to SCANS_KEPT + 5, the five oldest are dropped
    assert (store.last_scan() or {})["reason"] == "periodic"
