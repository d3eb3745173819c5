"""The one decision of what a found file means for its row.

Used alike by the daemon's file workers, the reconcile (in its own process and in
the reading processes), `imgwatch check` and the dry run: a file is unchanged, and
not read, by the rule in `unchanged` and nowhere else.
"""

from __future__ import annotations

from imgwatch.files.names import stand_in_name, unstorable_reason
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import FoundFile
from imgwatch.model import (
    FACTS_READ,
    GONE,
    NOT_AN_IMAGE,
    STATE,
    STATE_MTIME,
    STATE_SIDECAR,
    STATE_SIZE,
    TO_READ,
    FileState,
    ImageRecord,
    KnownFile,
    Status,
)

UNCHANGED = "unchanged"
VANISHED = "vanished"

# What reading one file gave: a record to write, UNCHANGED or VANISHED.
Outcome = ImageRecord | str
ToRead = tuple[FoundFile, KnownFile | None]  # a file to read, and its row if any


def row_state(status: str, sha256: str | None) -> int:
    """What a row says about its file's facts (model.TO_READ …). The database
    computes the same in db/images.py's file_states query."""
    if status == Status.MISSING:
        return GONE
    if status == Status.REJECTED:
        return NOT_AN_IMAGE
    return FACTS_READ if sha256 is not None else TO_READ


def unchanged(row: FileState, found: FoundFile) -> bool:
    """Nothing to read again: the file has the size and mtime its row was read at,
    and, for an image, its sidecar the same mtime (or none, as then).

    What is left to do for such a row (an upload) is found from its status. The
    words beside a file that is no image do not matter, so its sidecar does not.
    """
    state = row[STATE]
    if state == FACTS_READ:
        return (
            row[STATE_SIZE] == found.size_bytes
            and row[STATE_MTIME] == found.mtime_ns
            and row[STATE_SIDECAR] == found.sidecar_mtime_ns
        )
    if state == NOT_AN_IMAGE:
        return row[STATE_SIZE] == found.size_bytes and row[STATE_MTIME] == found.mtime_ns
    return False


def as_state(name: str, row: KnownFile) -> FileState:
    """A looked-up row as the reconcile's FileState."""
    state = row_state(row.status, row.sha256)
    return (name, row.size_bytes, row.mtime_ns, state, row.id, row.sidecar_mtime_ns)


def examine(
    found: FoundFile, row: KnownFile | None, processor: FileProcessor, uploads: bool
) -> Outcome:
    """What one found file means for its row: a record to write, or why there is none."""
    if row is not None and unchanged(as_state(found.file_name, row), found):
        return UNCHANGED
    unstorable = unstorable_reason(found.file_name)
    reason = unstorable or found.problem
    if reason is not None:
        name = found.file_name if unstorable is None else stand_in_name(found.file_name)
        return processor.reject(name, reason, found.size_bytes, found.mtime_ns, found.file_name)
    record = processor.process(
        found.file_name,
        found.path,
        found.size_bytes,
        found.mtime_ns,
        has_sidecar=found.sidecar_mtime_ns is not None,
    )
    if record is None:
        return VANISHED
    settle_status(record, row, uploads)
    return record


def settle_status(record: ImageRecord, row: KnownFile | None, uploads: bool) -> None:
    """An accepted file is `done` unless it still has to go to WordPress (`pending`)."""
    if record.status != Status.DONE or not uploads:
        return
    # Already in WordPress: the same content, or a row adopted from the original
    # service (its content was never hashed, but it has a URL), needs no upload.
    uploaded = (
        row is not None
        and row.wp_url is not None
        and (row.sha256 is None or row.sha256 == record.sha256)
    )
    if not uploaded:
        record.status = Status.PENDING
