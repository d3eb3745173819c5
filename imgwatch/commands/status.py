"""`imgwatch status`: where the rows stand, what went wrong lately, the last scan.

Read from the database only (a running daemon writes it; nothing is asked of the
daemon), as text for people or JSON for scripts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from imgwatch.config import Settings
from imgwatch.db.scans import SCAN_COUNTS
from imgwatch.db.schema import conditions, images, scans
from imgwatch.db.store import ImageStore
from imgwatch.model import Condition, ConditionKind, Status, utcnow

# A pause not confirmed for this long: the process that recorded it may be gone.
STALE_AFTER = dt.timedelta(minutes=10)


def gather(store: ImageStore, limit: int) -> dict[str, Any]:
    """The report as plain data (JSON-ready: times are ISO 8601 UTC strings)."""
    missing_tables = store.missing_tables
    has_images = images.name not in missing_tables
    # The original service's table, not adopted yet: rows, but no status to count.
    original = store.images_unadopted
    counts = store.counts_by_status() if has_images and not original else {}
    total = store.count_rows() if original else sum(counts.values())
    scan = store.last_scan() if scans.name not in missing_tables else None
    problems = store.recent_problems(limit) if counts and limit > 0 else []
    waiting = store.conditions() if conditions.name not in missing_tables else []
    held = next((c for c in waiting if c.kind == ConditionKind.DELETIONS_HELD), None)
    return {
        "database": store.display_url,
        "adopted": not original,
        "total": total,
        # Every status, zeros included: a script need not know which ones exist.
        "counts": {s: counts.get(s, 0) for s in tuple(Status)}
        | {s: n for s, n in counts.items() if s not in tuple(Status)},
        "last_scan": _plain(scan) if scan is not None else None,
        "problems": [_plain(p) for p in problems],
        "uploads_paused": [_pause(c) for c in waiting if c.kind == ConditionKind.UPLOADS_PAUSED],
        "deletions_held": _held(held) if held is not None else None,
    }


def _pause(condition: Condition) -> dict[str, Any]:
    stale = utcnow() - condition.checked_at > STALE_AFTER
    return {"owner": condition.owner, **_condition(condition), "stale": stale}


def _held(condition: Condition) -> dict[str, Any]:
    confirmed = condition.confirmed_at is not None
    return {"rows": condition.rows, **_condition(condition), "confirmed": confirmed}


def _condition(condition: Condition) -> dict[str, Any]:
    return {
        "reason": condition.reason,
        "message": condition.message,
        "since": _iso(condition.since),
        "checked_at": _iso(condition.checked_at),
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items() if k != "id"}


def _iso(value: dt.datetime) -> str:
    return value.replace(microsecond=0).isoformat() + "Z"  # stored as naive UTC


def render(report: dict[str, Any]) -> str:
    lines = [f"database: {report['database']}"]
    counts = report["counts"]
    shown = ", ".join(f"{n:,} {s}" for s, n in counts.items() if n)
    lines.append(f"rows: {report['total']:,}" + (f" ({shown})" if shown else ""))
    if not report["adopted"]:
        lines.append(
            "the images table is the original service's: imgwatch adds its columns "
            "when it first runs (imgwatch or imgwatch --rescan)"
        )
    scan = report["last_scan"]
    if scan is None:
        lines.append("last scan: none recorded")
    else:
        found = ", ".join(f"{scan[k]:,} {k}" for k in SCAN_COUNTS)
        lines.append(
            f"last scan: {_shown_time(scan['started_at'])} ({scan['reason']}"
            + (f" on {scan['host']}" if scan["host"] else "")
            + f"), took {scan['duration_s']:.1f} s"
            + (", interrupted" if scan["interrupted"] else "")
            + f": {found}"
        )
    for pause in report["uploads_paused"]:
        lines.append(
            f"uploads paused since {_shown_time(pause['since'])} on {pause['owner']}: "
            f"{pause['message']}"
            + (
                f" (not confirmed since {_shown_time(pause['checked_at'])}: that process may "
                "have stopped)"
                if pause["stale"]
                else ""
            )
        )
    held = report["deletions_held"]
    if held is not None:
        lines.append(
            f"deletions held since {_shown_time(held['since'])}: {held['message']}"
            + ("; confirmed, the next reconcile applies them" if held["confirmed"] else "")
        )
    problems = report["problems"]
    if problems:
        lines.append("recent failures and rejections, newest first:")
        width = max(len(p["file_name"]) for p in problems)
        for p in problems:
            when = _shown_time(p["updated_at"]) if p["updated_at"] else "?"
            retry = ""
            if p["status"] == Status.FAILED:
                retry = (
                    f" (attempt {p['attempts']}, next {_shown_time(p['next_attempt_at'])})"
                    if p["next_attempt_at"]
                    else f" (attempt {p['attempts']}, not retried until the file changes)"
                )
            reason = _one_line(p["last_error"] or "no reason recorded")
            lines.append(f"  {p['status']:<8} {when}  {p['file_name']:<{width}}  {reason}{retry}")
    return "\n".join(lines)


def _shown_time(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z") + " UTC"


def _one_line(text: str) -> str:
    # A reason is one line when it is written; a file name in it might not be.
    return " ".join(text.split())


def run(settings: Settings, args: argparse.Namespace) -> int:
    """`imgwatch status [--json] [--limit N]`: read only, from the database."""
    as_json, limit = args.json, args.limit
    store = ImageStore(settings.database_url())
    try:
        store.open(create=False)  # a look changes nothing, not even the schema
        report = gather(store, limit)
    finally:
        store.close()
    print(json.dumps(report, indent=2) if as_json else render(report), flush=True)
    return 0
