"""The scan history: one row per reconcile, for `imgwatch status` in another process."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from imgwatch.db.engine import Database
from imgwatch.db.schema import SCANS_KEPT, scans
from imgwatch.model import ScanSummary, utcnow

SCAN_COUNTS = ("new", "changed", "unchanged", "rejected", "missing", "failed")


class ScanHistory(Database):
    """The most recent SCANS_KEPT reconciles."""

    def record_scan(self, reason: str, summary: ScanSummary) -> None:
        """Add one reconcile to the history, dropping the oldest beyond SCANS_KEPT."""
        values: dict[str, Any] = {k: getattr(summary, k) for k in SCAN_COUNTS}
        started_at = utcnow() - dt.timedelta(seconds=summary.elapsed)

        def record(conn: Connection) -> None:
            inserted = conn.execute(
                scans.insert().values(
                    reason=reason[:32],
                    host=socket.gethostname()[:128],
                    started_at=started_at,
                    duration_s=summary.elapsed,
                    interrupted=summary.interrupted,
                    **values,
                )
            ).inserted_primary_key
            assert inserted is not None
            conn.execute(delete(scans).where(scans.c.id <= inserted[0] - SCANS_KEPT))

        self.transaction("recording the scan", record)

    def last_scan(self) -> dict[str, Any] | None:
        """The most recent reconcile, finished or interrupted, or None."""
        query = select(scans).order_by(scans.c.id.desc()).limit(1)
        with self.guard("reading the scan history"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row is not None else None
