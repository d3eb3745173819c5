"""`imgwatch --rescan --dry-run`: the reconcile, with every write noted instead of made.

Files are read (hashed, sniffed) as in a real rescan, so what would be recorded or
rejected, and why, is exact. Nothing is written: not a row, not the schema, not the
scan history; WordPress is not contacted.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from imgwatch.config import Settings
from imgwatch.db.standin import NotingStore
from imgwatch.db.store import ImageStore
from imgwatch.files.walk import check_image_dir
from imgwatch.model import ScanSummary, Status
from imgwatch.pipeline import reconciler


@dataclass(slots=True)
class DryRunPlan:
    summary: ScanSummary
    schema_changes: list[str]
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # name, reason
    other: list[tuple[str, str, str]] = field(default_factory=list)  # name, status, reason
    uploads: list[str] | None = None  # None: WordPress is not configured
    missing: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    held: str | None = None  # why the mass-deletion guard would hold the deletions

    def render(self) -> str:
        lines = ["dry run: nothing was changed"]
        lines += [f"would {change}" for change in self.schema_changes]
        lines += [f"would record new: {n}" for n in self.new]
        lines += [f"would record changed: {n}" for n in self.changed]
        lines += [f"would reject: {n}: {reason}" for n, reason in self.rejected]
        lines += [f"would record {status}: {n}: {why}" for n, status, why in self.other]
        if self.uploads is not None:
            lines += [f"would upload: {n}" for n in self.uploads]
        lines += [f"would mark missing: {n}" for n in self.missing]
        lines += [f"would forget: {n}" for n in self.forgotten]
        lines += [f"would purge (row and media item): {n}" for n in self.purged]
        if self.held is not None:
            lines.append(f"would hold the deletions: {self.held}")
        uploads = (
            "WordPress not configured" if self.uploads is None else f"{len(self.uploads)} to upload"
        )
        gone = len(self.missing) + len(self.forgotten) + len(self.purged)
        lines.append(
            f"dry run: {len(self.new)} new, {len(self.changed)} changed, "
            f"{self.summary.unchanged} unchanged, {len(self.rejected)} rejected, "
            f"{gone} missing, {uploads}"
            + (f", {self.summary.held} deletion(s) held" if self.summary.held else "")
        )
        return "\n".join(lines)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """`imgwatch --rescan --dry-run`: the plan, printed; nothing changed."""
    print(dry_run_rescan(settings).render(), flush=True)
    return 0


def dry_run_rescan(settings: Settings) -> DryRunPlan:
    image_dir = check_image_dir(settings.image_dir)
    store = ImageStore(settings.database_url())
    try:
        store.open(create=False)
        rows = NotingStore(store)
        uploads = settings.wordpress_enabled
        purge = rows.purge if uploads else None
        summary = reconciler(
            settings, rows, image_dir, uploads=uploads, purge=purge, dry_run=True
        ).run()
        plan = DryRunPlan(
            summary,
            store.schema_changes,
            missing=rows.missing,
            forgotten=rows.forgotten,
            purged=rows.purged,
            held=rows.held.message if rows.held is not None else None,
        )
        recorded = set()
        for record in rows.records:
            recorded.add(record.file_name)
            if record.status == Status.REJECTED:
                plan.rejected.append((record.file_name, record.last_error or ""))
            elif record.last_error is not None:
                plan.other.append((record.file_name, record.status, record.last_error))
            elif record.file_name in rows.known:
                plan.changed.append(record.file_name)
            else:
                plan.new.append(record.file_name)
        if uploads:
            plan.uploads = [
                r.file_name
                for r in rows.records
                if r.status == Status.PENDING and r.last_error is None
            ]
            if rows.images_ready:
                due = store.due_uploads(include_scheduled=True)
                # Their upload is decided above.
                settled = recorded | set(rows.missing + rows.forgotten + rows.purged)
                plan.uploads += [j.file_name for j in due if j.file_name not in settled]
        return plan
    finally:
        store.close()
