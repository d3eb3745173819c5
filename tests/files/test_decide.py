"""The one "unchanged?" rule and the one file-to-row decision (files/decide.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import insert

from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.files.decide import (
    UNCHANGED,
    as_state,
    examine,
    row_state,
    settle_status,
    unchanged,
)
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import find_one
from imgwatch.model import (
    FACTS_READ,
    GONE,
    NOT_AN_IMAGE,
    STATE,
    TO_READ,
    FileState,
    ImageRecord,
    KnownFile,
    Status,
)
from tests.imagefiles import write_image
from tests.rows import file_states

HASH = "0" * 64


def test_the_database_and_python_give_each_row_the_same_state(store: ImageStore) -> None:
    """file_states computes row_state in SQL: every status, with and without a hash."""
    cases = list(itertools.product(list(Status), (None, HASH)))
    with store.engine.begin() as conn:
        for i, (status, sha) in enumerate(cases):
            conn.execute(insert(images).values(file_name=f"{i}.jpg", status=status, sha256=sha))
    states = file_states(store)
    for i, (status, sha) in enumerate(cases):
        assert states[f"{i}.jpg"][STATE] == row_state(status, sha), (status, sha)


def test_row_states() -> None:
    assert row_state(Status.MISSING, HASH) == GONE
    assert row_state(Status.REJECTED, None) == NOT_AN_IMAGE
    assert row_state(Status.DONE, HASH) == FACTS_READ
    assert row_state(Status.FAILED, HASH) == FACTS_READ  # an upload failed: read
    assert row_state(Status.FAILED, None) == TO_READ  # the read failed
    assert row_state(Status.PENDING, None) == TO_READ


def _found(image_dir: Path, name: str, sidecar: bool = False) -> tuple[int, int, int | None]:
    path = image_dir / name
    write_image(path)
    if sidecar:
        (image_dir / (name + ".json")).write_text('{"title": "t"}')
    found = find_one(image_dir, name)
    assert found is not None
    return found.size_bytes, found.mtime_ns, found.sidecar_mtime_ns


@pytest.mark.parametrize("state", [FACTS_READ, NOT_AN_IMAGE])
def test_unchanged_needs_the_same_size_and_mtime(image_dir: Path, state: int) -> None:
    size, mtime, _ = _found(image_dir, "a.png")
    found = find_one(image_dir, "a.png")
    assert found is not None
    row: FileState = ("a.png", size, mtime, state, 1, None)
    assert unchanged(row, found)
    assert not unchanged(("a.png", size + 1, mtime, state, 1, None), found)
    assert not unchanged(("a.png", size, mtime - 1, state, 1, None), found)


@pytest.mark.parametrize("state", [TO_READ, GONE])
def test_a_row_not_read_or_gone_is_never_unchanged(image_dir: Path, state: int) -> None:
    size, mtime, _ = _found(image_dir, "a.png")
    found = find_one(image_dir, "a.png")
    assert found is not None
    assert not unchanged(("a.png", size, mtime, state, 1, None), found)


def test_a_sidecar_matters_for_an_image_only(image_dir: Path) -> None:
    size, mtime, sidecar = _found(image_dir, "a.png", sidecar=True)
    found = find_one(image_dir, "a.png")
    assert found is not None and sidecar is not None
    assert unchanged(("a.png", size, mtime, FACTS_READ, 1, sidecar), found)
    assert not unchanged(("a.png", size, mtime, FACTS_READ, 1, None), found)  # new sidecar
    assert not unchanged(("a.png", size, mtime, FACTS_READ, 1, sidecar - 1), found)
    # Beside a file that is no image the words do not matter.
    assert unchanged(("a.png", size, mtime, NOT_AN_IMAGE, 1, None), found)


def test_examine_reads_nothing_for_an_unchanged_row(image_dir: Path) -> None:
    size, mtime, _ = _found(image_dir, "a.png")
    found = find_one(image_dir, "a.png")
    assert found is not None
    processor = FileProcessor("Image description")
    row = KnownFile(1, size, mtime, Status.DONE, HASH, "https://wp/a.png")
    assert as_state("a.png", row)[STATE] == FACTS_READ
    assert examine(found, row, processor, uploads=True) == UNCHANGED
    changed = row._replace(size_bytes=size + 1)
    record = examine(found, changed, processor, uploads=True)
    assert isinstance(record, ImageRecord) and record.sha256 is not None
    # Other content than the uploaded: to be uploaded again.
    assert record.status == Status.PENDING


def test_settle_status_keeps_an_upload_of_the_same_content() -> None:
    def accepted() -> ImageRecord:
        return ImageRecord("a.png", "a.png", "d", Status.DONE, sha256=HASH)

    record = accepted()
    settle_status(record, KnownFile(1, 1, 1, Status.DONE, HASH, "https://wp/a"), uploads=True)
    assert record.status == Status.DONE
    record = accepted()
    settle_status(record, None, uploads=True)
    assert record.status == Status.PENDING
    record = accepted()
    settle_status(record, None, uploads=False)
    assert record.status == Status.DONE
    # Adopted from the original service: never hashed, but it has a URL.
    record = accepted()
    settle_status(record, KnownFile(1, 1, 1, Status.DONE, None, "https://wp/a"), uploads=True)
    assert record.status == Status.DONE
