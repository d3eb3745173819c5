"""One file read: from a path on disk to the row that describes it."""

from __future__ import annotations

import datetime as dt
import logging
import posixpath

from imgwatch.files.inspect import FileUnstable, NotAnImage, inspect_image, is_transient_os_error
from imgwatch.files.metadata import SidecarError, TextFields, read_sidecar, sidecar_mtime
from imgwatch.model import FILE_NAME_MAX, ImageRecord, Status, utcnow
from imgwatch.textdigest import text_digest

log = logging.getLogger(__name__)

# How long a file that could not be read for a passing reason waits before the next try.
RETRY_AFTER = dt.timedelta(minutes=1)


class FileProcessor:
    """Turns a file into an ImageRecord: accepted, rejected, or to be retried."""

    def __init__(self, default_description: str, max_bytes: int | None = None) -> None:
        self.default_description = default_description
        self.max_bytes = max_bytes

    def process(
        self,
        file_name: str,
        path: str,
        size_bytes: int,
        mtime_ns: int,
        has_sidecar: bool = True,
    ) -> ImageRecord | None:
        """The row for this file, or None if the file vanished before it could be read.

        has_sidecar=False (the caller's walk saw no `<file>.json`) saves looking for
        one: most files have none.

        size_bytes and mtime_ns are what the caller saw; a rejected row keeps them
        so that the same bad file is not read again until it changes.
        """
        title = posixpath.basename(file_name)[:FILE_NAME_MAX]
        record = ImageRecord(
            file_name=file_name,
            title=title,
            description=self.default_description,
            status=Status.PENDING,
        )
        try:
            facts = inspect_image(path, self.max_bytes)
        except FileNotFoundError:
            log.debug("vanished before it could be read: %r", file_name)
            return None
        except NotAnImage as exc:
            record.size_bytes, record.mtime_ns = size_bytes, mtime_ns
            return self._reject(record, str(exc))
        except FileUnstable as exc:
            record.last_error = str(exc)
            log.info("still being written, will look again: %r", file_name)
            return _stamped(record)
        except PermissionError:
            # No size/mtime kept: chmod does not change mtime, so look again next scan.
            return self._reject(record, "unreadable: permission denied")
        except OSError as exc:
            reason = f"read error: {exc.strerror or exc}"
            if not is_transient_os_error(exc):
                record.size_bytes, record.mtime_ns = size_bytes, mtime_ns
                return self._reject(record, reason)
            record.status = Status.FAILED
            record.last_error = reason
            record.next_attempt_at = utcnow() + RETRY_AFTER
            log.warning("failed %r: %s", file_name, reason)
            return _stamped(record)
        self._describe(record, facts.text, path if has_sidecar else None)
        record.status = Status.DONE
        record.sha256 = facts.sha256
        record.size_bytes = facts.size_bytes
        record.mtime_ns = facts.mtime_ns
        record.mime_type = facts.mime_type
        record.width = facts.width
        record.height = facts.height
        log.info(
            "recorded %r (%s %dx%d, %d bytes)",
            file_name,
            facts.mime_type,
            facts.width,
            facts.height,
            facts.size_bytes,
        )
        return record

    @staticmethod
    def _describe(record: ImageRecord, embedded: TextFields, path: str | None) -> None:
        """Title, description, caption and alt text: the sidecar's (when path is
        given), then the image's own, then the defaults already in the record."""
        text = embedded
        sidecar = None
        if path is not None:
            try:
                sidecar = read_sidecar(path)
            except SidecarError as exc:
                # The image is fine; only the words beside it are not used (until the
                # sidecar changes: its mtime is kept like a good one's).
                log.warning("ignored the sidecar of %r: %s", record.file_name, exc)
                record.sidecar_mtime_ns = sidecar_mtime(path)
        if sidecar is not None:
            text = sidecar.fields.over(embedded)
            record.sidecar_fields = sidecar.fields.given()
            record.sidecar_mtime_ns = sidecar.mtime_ns
        record.title = text.title or record.title
        record.description = text.description or record.description
        record.caption = text.caption
        record.alt_text = text.alt_text
        _stamped(record)

    def reject(
        self, name: str, reason: str, size_bytes: int, mtime_ns: int, path_name: str
    ) -> ImageRecord:
        """A row for something found that is no image file at all: a FIFO, a link
        leading out, a name no row can hold (then `name` is a stand-in)."""
        record = ImageRecord(
            file_name=name,
            title=posixpath.basename(name)[:FILE_NAME_MAX],
            description=self.default_description,
            status=Status.REJECTED,
            size_bytes=size_bytes,
            mtime_ns=mtime_ns,
        )
        return self._reject(record, reason, path_name)

    @staticmethod
    def _reject(record: ImageRecord, reason: str, shown: str | None = None) -> ImageRecord:
        """Mark record rejected for reason, with its log line (under the path's own
        name when the row's is a stand-in)."""
        record.status = Status.REJECTED
        record.last_error = reason
        log.warning("rejected %r: %s", shown or record.file_name, reason)
        return _stamped(record)


def _stamped(record: ImageRecord) -> ImageRecord:
    """record, with the digest of the words it gives (the defaults, for a file not
    read): what the upsert compares the row with the next time (db/upsert.py)."""
    record.file_text_digest = text_digest(
        record.title, record.description, record.caption, record.alt_text
    )
    return record
