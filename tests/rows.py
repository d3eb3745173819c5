"""Whole rows as dicts, read straight from the images table: what a test checks.

The store itself reads only what the daemon needs; tests look at everything.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import FileState


def row_of(store: ImageStore, file_name: str) -> dict[str, Any] | None:
    """One row as a dict, or None."""
    with store.engine.connect() as conn:
        row = conn.execute(select(images).where(images.c.file_name == file_name)).first()
    return dict(row._mapping) if row is not None else None


def all_rows(store: ImageStore) -> list[dict[str, Any]]:
    """Every row, in id order."""
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(images).order_by(images.c.id))]


def file_states(store: ImageStore) -> dict[str, FileState]:
    """Every row as the reconcile reads it (a FileState), by name."""
    return {row[0]: row for page in store.file_state_pages() for row in page}
