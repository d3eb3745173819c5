"""A read-only stand-in for the store: a dry run's and `imgwatch check`'s.

Reads go to the database (which may lack the images table, or some of its
columns); writes are only noted, for the plan to show.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from imgwatch.db.schema import conditions, images
from imgwatch.db.store import ImageStore
from imgwatch.db.upsert import PreparedRows
from imgwatch.model import Condition, FileState, ImageRecord, KnownFile, NameRange
from imgwatch.reconcile.deletions import GoneRow


class NotingStore:
    """Stands in for the store in a reconcile: reads go to the database (which may
    lack the images table, or some of its columns), writes are only noted."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._no_table = images.name in store.missing_tables
        # A table still to be adopted is read as adopting it would leave it; only its
        # uploads due are not asked for (see dry_run_rescan).
        self.images_ready = not (self._no_table or store.images_unadopted)
        self.known: set[str] = set()  # names looked up that have a row
        self.records: list[ImageRecord] = []
        self.missing: list[str] = []
        self.forgotten: list[str] = []
        self.purged: list[str] = []
        self.held: Condition | None = None  # deletions the guard would hold

    def file_state_pages(
        self, page: int | None = None, names: NameRange = (None, None)
    ) -> Iterator[list[FileState]]:
        return iter(()) if self._no_table else self.store.file_state_pages(page, names)

    def release_connections(self) -> None:
        self.store.release_connections()

    def names_in_code_point_order(self) -> bool:
        return self._no_table or self.store.names_in_code_point_order()

    def lookup_many(self, file_names: Sequence[str]) -> dict[str, KnownFile]:
        # The reconcile looks up every file it would read: those with a row are changed.
        rows = {} if self._no_table else self.store.lookup_many(file_names)
        self.known.update(rows)
        return rows

    def prepare_upsert(self, records: Sequence[ImageRecord]) -> PreparedRows:
        return PreparedRows(records, [], [], None)

    def write_prepared(self, prepared: PreparedRows) -> None:
        self.records.extend(prepared.records)

    def mark_missing(self, ids: Sequence[int], *, names: Sequence[str] | None = None) -> int:
        self.missing.extend(names if names is not None else [str(i) for i in ids])
        return len(ids)

    def forget(self, ids: Sequence[int]) -> int:
        names = self.store.names_of(ids)
        self.forgotten.extend(names[i] for i in ids)
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
