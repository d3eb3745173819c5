"""`imgwatch --rescan --dry-run`: the reconcile, with every write noted instead of made.

Files are read (hashed, sniffed) as in a real rescan, so what would be recorded or
rejected, and why, is exact. Nothing is written: not a row, not the schema, not the
scan history; WordPress is not contacted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from imgwatch.config import Settings
from imgwatch.db.store import (
    PENDING,
    REJECTED,
    STATE_ID,
    Condition,
    FileState,
    ImageRecord,
    ImageStore,
    KnownFile,
    PreparedRows,
    conditions,
    images,
)
from imgwatch.files.walk import check_image_dir
from imgwatch.pipeline import reconciler
from imgwatch.reconcile.deletions import GoneRow
from imgwatch.reconcile.reconciler import ScanSummary


class NotingStore:
    """Stands in for the store in a reconcile: reads go to the database (which may
    lack the images table, or some of its columns), writes are only noted."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._no_table = images.name in store.missing_tables
        # A table still to be adopted is read as adopting it would leave it; only its
        # uploads due are not asked for (see dry_run_rescan).
        self.images_ready = not (self._no_table or store.images_unadopted)
        self.known: set[str] = set()
        self.records: list[ImageRecord] = []
        self.missing: list[str] = []
        self.forgotten: list[str] = []
        self.purged: list[str] = []
        self._names: dict[int, str] = {}
        self.held: Condition | None = None  # deletions the guard would hold

    def file_states(self) -> dict[str, FileState]:
        states = {} if self._no_table else self.store.file_states()
        self.known = set(states)
        self._names = {row[STATE_ID]: name for name, row in states.items()}
        return states

    def lookup_many(self, file_names: Sequence[str]) -> dict[str, KnownFile]:
        return {} if self._no_table else self.store.lookup_many(file_names)

    def prepare_upsert(self, records: Sequence[ImageRecord]) -> PreparedRows:
        return PreparedRows(records, [], [], None)

    def write_prepared(self, prepared: PreparedRows) -> None:
        self.records.extend(prepared.records)

    def mark_missing(self, ids: Sequence[int], *, names: Sequence[str] | None = None) -> int:
        self.missing.extend(names if names is not None else [str(i) for i in ids])
        return len(ids)

    def forget(self, ids: Sequence[int]) -> int:
        self.forgotten.extend(self._names[i] for i in ids)
        return len(ids)

    def purge(self, rows: list[GoneRow]) -> None:
        self.purged.extend(r.file_name for r in rows)

    def conditions(self) -> list[Condition]:
        """Read for real (an operator's confirmation of held deletions counts)."""
        return [] if conditions.name in self.store.missing_tables else self.store.conditions()

    def set_condition(self, condition: Condition, *, keep_confirmation: bool = True) -> None:
        self.held = condition

    def clear_condition(self, kind: str, owners: Sequence[str]) -> int:
        return 0


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
            if record.status == REJECTED:
                plan.rejected.append((record.file_name, record.last_error or ""))
            elif record.last_error is not None:
                plan.other.append((record.file_name, record.status, record.last_error))
            elif record.file_name in rows.known:
                plan.changed.append(record.file_name)
            else:
                plan.new.append(record.file_name)
        if uploads:
            plan.uploads = [
                r.file_name for r in rows.records if r.status == PENDING and r.last_error is None
            ]
            if rows.images_ready:
                due = store.due_uploads(include_scheduled=True)
                # Their upload is decided above.
                settled = recorded | set(rows.missing + rows.forgotten + rows.purged)
                plan.uploads += [j.file_name for j in due if j.file_name not in settled]
        return plan
    finally:
        store.close()
