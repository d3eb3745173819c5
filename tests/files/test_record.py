"""One file read (files/record.py): real image files to the rows that describe them."""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
from pathlib import Path

import pytest

from imgwatch.files.inspect import FileUnstable
from imgwatch.files.record import FileProcessor
from imgwatch.model import FILE_NAME_MAX, ImageRecord, Status, utcnow
from imgwatch.textdigest import text_digest
from tests.imagefiles import sha256_of, write_image, write_tagged_jpeg, xmp_packet

PROCESSOR = FileProcessor("Image description")


def process(
    path: Path, name: str | None = None, processor: FileProcessor = PROCESSOR, **kw: bool
) -> ImageRecord | None:
    """The row for path, as a walk that just saw it would ask for it."""
    st = os.lstat(path)
    return processor.process(name or path.name, str(path), st.st_size, st.st_mtime_ns, **kw)


def words(record: ImageRecord) -> tuple[str | None, ...]:
    return (record.title, record.description, record.caption, record.alt_text)


def test_an_image_is_recorded_with_its_facts(image_dir: Path) -> None:
    path = write_image(image_dir / "sub" / "photo.png", 40, 30)
    record = process(path, "sub/photo.png")
    assert record is not None
    st = path.stat()
    assert (record.file_name, record.status, record.last_error) == (
        "sub/photo.png",
        Status.DONE,
        None,
    )
    assert (record.sha256, record.size_bytes, record.mtime_ns) == (
        sha256_of(path),
        st.st_size,
        st.st_mtime_ns,
    )
    assert (record.mime_type, record.width, record.height) == ("image/png", 40, 30)
    # The name without its directory, and the default words.
    assert words(record) == ("photo.png", "Image description", None, None)
    assert record.file_text_digest == text_digest(*words(record))
    assert record.next_attempt_at is None and record.sidecar_fields == ()


def test_the_words_in_the_image_come_before_the_defaults(image_dir: Path) -> None:
    path = write_tagged_jpeg(image_dir / "a.jpg", xmp=xmp_packet("Sunset", None, "Orange sky"))
    record = process(path, processor=FileProcessor("Default words"))
    assert record is not None
    assert words(record) == ("Sunset", "Default words", None, "Orange sky")
    assert record.file_text_digest == text_digest("Sunset", "Default words", None, "Orange sky")


def test_a_sidecar_is_looked_for_only_when_the_walk_saw_one(image_dir: Path) -> None:
    path = write_tagged_jpeg(image_dir / "a.jpg", xmp=xmp_packet("From the image"))
    sidecar = image_dir / "a.jpg.json"
    sidecar.write_text(json.dumps({"title": "From the sidecar"}))
    unseen = process(path, has_sidecar=False)
    assert unseen is not None
    assert (unseen.title, unseen.sidecar_fields, unseen.sidecar_mtime_ns) == (
        "From the image",
        (),
        None,
    )
    seen = process(path)
    assert seen is not None
    assert (seen.title, seen.sidecar_fields) == ("From the sidecar", ("title",))
    assert seen.sidecar_mtime_ns == sidecar.stat().st_mtime_ns
    assert seen.file_text_digest == text_digest(*words(seen))


def test_a_bad_sidecar_keeps_its_mtime_so_it_is_not_read_again_unchanged(
    image_dir: Path,
) -> None:
    path = write_image(image_dir / "a.jpg")
    sidecar = image_dir / "a.jpg.json"
    sidecar.write_text("{not json")
    record = process(path)
    assert record is not None
    assert (record.status, record.title, record.sidecar_fields) == (Status.DONE, "a.jpg", ())
    assert record.sidecar_mtime_ns == sidecar.stat().st_mtime_ns


def test_a_long_row_name_gives_a_title_the_column_takes(image_dir: Path) -> None:
    path = write_image(image_dir / "a.jpg")
    name = "d/" + "n" * 300 + ".jpg"  # a stand-in name may be longer than a file's
    record = process(path, name)
    assert record is not None
    assert record.title == ("n" * 300)[:FILE_NAME_MAX]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<html><body>a page</body></html>", "not an image: content looks like HTML/XML text"),
        (b"plain words", "not an image: content looks like text"),
        (b"", "empty file"),
    ],
)
def test_a_file_that_is_no_image_is_rejected_with_the_reason(
    image_dir: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    path = image_dir / "fake.jpg"
    path.write_bytes(content)
    record = process(path)
    assert record is not None
    st = path.stat()
    assert (record.status, record.last_error) == (Status.REJECTED, reason)
    # Kept as the walk saw them: the same bad file is not read again until it changes.
    assert (record.size_bytes, record.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert (record.sha256, record.mime_type, record.width) == (None, None, None)
    assert words(record) == ("fake.jpg", "Image description", None, None)
    assert record.file_text_digest == text_digest(*words(record))
    assert f"rejected 'fake.jpg': {reason}" in caplog.text


def test_a_file_over_the_size_limit_is_rejected(image_dir: Path) -> None:
    path = write_image(image_dir / "big.png", 400, 400)  # random pixels: about 480 KiB
    record = process(path, processor=FileProcessor("d", max_bytes=2**18))
    assert record is not None
    assert record.status == Status.REJECTED
    assert "over the 0.25 MiB limit (IMGWATCH_MAX_FILE_MB)" in str(record.last_error)
    within = process(path, processor=FileProcessor("d", max_bytes=2**20))
    assert within is not None and within.status == Status.DONE


def test_a_fifo_named_as_an_image_is_rejected_without_blocking(image_dir: Path) -> None:
    os.mkfifo(image_dir / "pipe.jpg")
    record = process(image_dir / "pipe.jpg")
    assert record is not None
    assert (record.status, record.last_error) == (Status.REJECTED, "not a regular file")


def test_a_file_that_vanished_gives_no_row(image_dir: Path) -> None:
    path = write_image(image_dir / "gone.jpg")
    st = path.stat()
    path.unlink()
    assert PROCESSOR.process("gone.jpg", str(path), st.st_size, st.st_mtime_ns) is None


@pytest.mark.parametrize("kind", ["loop", "too long"])
def test_a_path_the_system_cannot_open_for_good_is_rejected(image_dir: Path, kind: str) -> None:
    if kind == "loop":
        path = image_dir / "self.jpg"
        path.symlink_to(path)
        reason = "read error: Too many levels of symbolic links"
    else:
        path = image_dir / ("n" * 300 + ".jpg")
        reason = "read error: File name too long"
    record = PROCESSOR.process(path.name, str(path), 12, 34)
    assert record is not None
    assert (record.status, record.last_error) == (Status.REJECTED, reason)
    assert (record.size_bytes, record.mtime_ns) == (12, 34)


# --- failures a test cannot make on demand, raised where the read happens ----------------


def failing_read(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def inspect_image(path: str, max_bytes: int | None = None) -> object:
        raise error

    monkeypatch.setattr("imgwatch.files.record.inspect_image", inspect_image)


def test_a_disk_error_fails_the_read_for_a_minute(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(image_dir / "a.jpg")
    failing_read(monkeypatch, OSError(errno.EIO, "Input/output error"))
    before = utcnow()
    record = process(path)
    assert record is not None
    assert (record.status, record.last_error) == (Status.FAILED, "read error: Input/output error")
    assert record.next_attempt_at is not None
    minute = dt.timedelta(minutes=1)
    assert before + minute <= record.next_attempt_at <= utcnow() + minute
    assert (record.size_bytes, record.sha256) == (None, None)  # not read: read again


def test_a_file_that_cannot_be_read_for_its_permissions_is_rejected_until_looked_at_again(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(image_dir / "a.jpg")
    failing_read(monkeypatch, PermissionError(errno.EACCES, "Permission denied"))
    record = process(path)
    assert record is not None
    assert (record.status, record.last_error) == (Status.REJECTED, "unreadable: permission denied")
    # chmod leaves the mtime alone: without size and mtime it is read at the next scan.
    assert (record.size_bytes, record.mtime_ns) == (None, None)


def test_a_file_still_being_written_stays_pending(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = write_image(image_dir / "a.jpg")
    failing_read(monkeypatch, FileUnstable("file changed while it was being read"))
    record = process(path)
    assert record is not None
    assert (record.status, record.last_error) == (
        Status.PENDING,
        "file changed while it was being read",
    )
    assert (record.sha256, record.size_bytes, record.next_attempt_at) == (None, None, None)
    assert record.file_text_digest == text_digest(*words(record))
    assert "still being written, will look again: 'a.jpg'" in caplog.text


def test_something_found_that_is_no_file_gets_a_rejected_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = FileProcessor("Default").reject(
        "bad\\xff.jpg#0123456789abcdef", "file name is not valid UTF-8", 5, 6, "bad\udcff.jpg"
    )
    assert (record.file_name, record.title, record.description) == (
        "bad\\xff.jpg#0123456789abcdef",
        "bad\\xff.jpg#0123456789abcdef",
        "Default",
    )
    assert (record.status, record.last_error) == (Status.REJECTED, "file name is not valid UTF-8")
    assert (record.size_bytes, record.mtime_ns) == (5, 6)
    assert record.file_text_digest == text_digest(*words(record))
    # Logged under the path's own name, not the stand-in.
    assert "rejected 'bad\\udcff.jpg': file name is not valid UTF-8" in caplog.text
