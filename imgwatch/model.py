"""The domain's types: what a row is, says and waits for. No I/O here.

Every package imports these; only `db/` turns them into SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any, Final, NamedTuple

FILE_NAME_MAX = 255  # the original service's file_name column


class Status(StrEnum):
    """A row's place in its life, as stored in `images.status`:
    pending -> uploading -> done; or failed, rejected, missing."""

    PENDING = "pending"  # read (or to be read); its upload, if any, is due
    UPLOADING = "uploading"  # claimed by an uploader
    DONE = "done"  # recorded, and in WordPress when WordPress is configured
    FAILED = "failed"  # reading or uploading failed; next_attempt_at says when again
    REJECTED = "rejected"  # not an image, or not one imgwatch can take: until it changes
    MISSING = "missing"  # its file is gone (IMGWATCH_ON_DELETE=missing)


class ConditionKind(StrEnum):
    """What a process is waiting for, as stored in `imgwatch_conditions.kind`."""

    UPLOADS_PAUSED = "uploads_paused"  # a condition of WordPress; one per process
    DELETIONS_HELD = "deletions_held"  # the mass-deletion guard; one per database


# What a reconcile compares with the disk, one plain tuple per row (db.images'
# file_states): name, size, mtime, row state, id, sidecar mtime.
FileState = tuple[str, int | None, int | None, int, int, int | None]
# Final, so that mypy knows each element's type when a tuple is indexed with them.
STATE_SIZE: Final = 1
STATE_MTIME: Final = 2
STATE: Final = 3
STATE_ID: Final = 4
STATE_SIDECAR: Final = 5

# A part of the tree by name, (lo, hi): lo <= file_name < hi, None where unbounded.
NameRange = tuple[str | None, str | None]

# Row states (files/decide.py row_state): the file's facts were read, so size and
# mtime (and the sidecar's) say whether it changed; it was read and is no image, so
# its sidecar does not matter; it is still to be read (pending without a hash, a
# failed read); or it is marked missing.
TO_READ, FACTS_READ, GONE, NOT_AN_IMAGE = 0, 1, 2, 3


def utcnow() -> dt.datetime:
    """Naive UTC, as stored in DATETIME columns on both backends."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class KnownFile(NamedTuple):
    """The part of a row that is compared with the disk."""

    id: int
    size_bytes: int | None
    mtime_ns: int | None
    status: str
    sha256: str | None
    wp_url: str | None
    wp_media_id: int | None = None
    sidecar_mtime_ns: int | None = None


class UploadJob(NamedTuple):
    """A row that needs its file in the media library."""

    id: int
    file_name: str
    sha256: str
    mime_type: str
    title: str | None
    description: str | None
    wp_media_id: int | None
    attempts: int
    caption: str | None = None
    alt_text: str | None = None


class TextUpdate(NamedTuple):
    """A row whose words differ from what its media item was last given."""

    id: int
    file_name: str
    wp_media_id: int
    title: str | None
    description: str | None
    caption: str | None
    alt_text: str | None
    wp_text_digest: str  # what was sent; textdigest.UNKNOWN: send everything

    @property
    def values(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.title, self.description, self.caption, self.alt_text)


@dataclass(slots=True)
class ImageRecord:
    """One file's row as it is to be written."""

    file_name: str
    title: str | None
    description: str | None
    status: str
    sha256: str | None = None
    size_bytes: int | None = None
    mtime_ns: int | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    last_error: str | None = None
    next_attempt_at: dt.datetime | None = None
    caption: str | None = None
    alt_text: str | None = None
    sidecar_mtime_ns: int | None = None
    file_text_digest: str | None = None  # of the four fields as the file gave them
    # Not a column: the fields a sidecar file gave, which replace what the row has.
    sidecar_fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type[ImageRecord], tuple[Any, ...]]:
        # Pickled as its values: reading processes send thousands, and a slots
        # dataclass's own pickling looks its fields up again for every record.
        return (ImageRecord, _all_record_values(self))


_all_record_values = attrgetter(*(f.name for f in fields(ImageRecord)))


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing a process is waiting for (a row of imgwatch_conditions)."""

    kind: str
    owner: str
    reason: str
    message: str
    since: dt.datetime
    checked_at: dt.datetime
    rows: int | None = None
    confirmed_at: dt.datetime | None = None


@dataclass(slots=True)
class ScanSummary:
    """What one reconcile did, for the summary line and the exit code."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: int = 0
    missing: int = 0
    failed: int = 0
    busy: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    held: int = 0  # rows whose deletion the mass-deletion guard holds (reconcile/deletions.py)
    read: int = 0  # files read (new, changed, rejected ...), and their bytes
    read_bytes: int = 0

    @property
    def changes(self) -> int:
        """Rows this reconcile recorded anew or settled as gone (a file that fails
        to be read fails again each time: not a change)."""
        return self.new + self.changed + self.rejected + self.missing

    def line(self) -> str:
        """The counts in words, for the log and the --rescan summary."""
        return (
            f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.rejected} rejected, {self.missing} missing, {self.failed} failed, "
            f"{self.busy} still being written, in {self.elapsed:.2f}s"
            + (" (interrupted)" if self.interrupted else "")
            + (f"; {self.held} deletion(s) held" if self.held else "")
        )
