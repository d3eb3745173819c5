"""Reconcile against SQLite and the real MariaDB, with real image files."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from imgwatch.db.store import ImageStore
from imgwatch.files import decide
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import FoundFile
from imgwatch.model import ImageRecord, ScanSummary, Status
from imgwatch.reconcile import reconciler as scanner_module
from imgwatch.reconcile.reconciler import Claims, Reconciler
from tests.imagefiles import listings, sha256_of, write_image
from tests.rows import all_rows, file_states, row_of


def reconciler(
    store: ImageStore, image_dir: Path, batch_size: int = 500, claims: Claims | None = None
) -> Reconciler:
    return Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ImageNameFilter((".jpg", ".jpeg", ".png", ".gif")),
        processor=FileProcessor("Image description"),
        batch_size=batch_size,
        claims=claims,
    )


def reconcile(store: ImageStore, image_dir: Path, batch_size: int = 500) -> ScanSummary:
    return reconciler(store, image_dir, batch_size).run()


def test_records_new_images_with_facts(store: ImageStore, image_dir: Path) -> None:
    jpg = write_image(image_dir / "a.jpg", 40, 30)
    write_image(image_dir / "nested" / "deeper" / "b.PNG", 5, 7)
    write_image(image_dir / "c.gif", 2, 3)
    summary = reconcile(store, image_dir)
    assert (summary.new, summary.changed, summary.rejected, summary.failed) == (3, 0, 0, 0)
    row = row_of(store, "a.jpg")
    assert row is not None
    assert row["status"] == Status.DONE
    assert row["sha256"] == sha256_of(jpg)
    assert row["size_bytes"] == jpg.stat().st_size
    assert row["mtime_ns"] == jpg.stat().st_mtime_ns
    assert (row["mime_type"], row["width"], row["height"]) == ("image/jpeg", 40, 30)
    assert (row["title"], row["description"]) == ("a.jpg", "Image description")
    nested = row_of(store, "nested/deeper/b.PNG")
    assert nested is not None
    assert (nested["title"], nested["mime_type"]) == ("b.PNG", "image/png")
    gif = row_of(store, "c.gif")
    assert gif is not None
    assert (gif["mime_type"], gif["width"], gif["height"]) == ("image/gif", 2, 3)


def test_skips_hidden_temp_and_other_extensions(store: ImageStore, image_dir: Path) -> None:
    write_image(image_dir / "keep.jpg")
    for name in [".hidden.jpg", "x.jpg.part", "y.tmp", "z.jpg.crdownload", "w.jpg~", ".#v.jpg"]:
        write_image(image_dir / name)
    write_image(image_dir / ".git" / "inside.jpg")
    write_image(image_dir / "notes.txt")
    write_image(image_dir / ".a.jpg.Xy12Ab")  # rsync's temp name
    reconcile(store, image_dir)
    assert list(file_states(store)) == ["keep.jpg"]


def test_unchanged_files_are_not_read_again(store: ImageStore, image_dir: Path) -> None:
    path = write_image(image_dir / "a.jpg", color="red")
    reconcile(store, image_dir)
    first = row_of(store, "a.jpg")
    assert first is not None
    # Same size and mtime, different bytes: only a re-read would notice.
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    summary = reconcile(store, image_dir)
    assert (summary.unchanged, summary.changed, summary.new) == (1, 0, 0)
    again = row_of(store, "a.jpg")
    assert again is not None
    assert again["sha256"] == first["sha256"] != sha256_of(path)


def test_changed_file_is_read_again(store: ImageStore, image_dir: Path) -> None:
    path = write_image(image_dir / "a.jpg", 10, 10)
    reconcile(store, image_dir)
    write_image(path, 20, 10, color="blue")
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 1_000_000))
    summary = reconcile(store, image_dir)
    assert (summary.changed, summary.new) == (1, 0)
    row = row_of(store, "a.jpg")
    assert row is not None
    assert (row["sha256"], row["width"]) == (sha256_of(path), 20)


def test_text_saved_as_jpg_is_rejected_with_reason(store: ImageStore, image_dir: Path) -> None:
    (image_dir / "page.jpg").write_text("<html><body>not an image</body></html>")
    (image_dir / "empty.png").write_bytes(b"")
    (image_dir / "junk.gif").write_bytes(b"\x00\x01\x02\x03" * 10)
    write_image(image_dir / "good.jpg")
    summary = reconcile(store, image_dir)
    assert (summary.new, summary.rejected) == (1, 3)
    reasons = {name: (row_of(store, name) or {}).get("last_error") for name in file_states(store)}
    assert "HTML" in str(reasons["page.jpg"])
    assert reasons["empty.png"] == "empty file"
    assert "unknown signature" in str(reasons["junk.gif"])
    assert store.counts_by_status() == {Status.DONE: 1, Status.REJECTED: 3}
    # A rejected file is not read again until it changes.
    assert reconcile(store, image_dir).unchanged == 4


def test_png_content_named_jpg_records_real_type(store: ImageStore, image_dir: Path) -> None:
    write_image(image_dir / "real.png")
    (image_dir / "real.png").rename(image_dir / "fake.jpg")
    reconcile(store, image_dir)
    row = row_of(store, "fake.jpg")
    assert row is not None
    assert (row["status"], row["mime_type"]) == (Status.DONE, "image/png")


def test_gone_files_become_missing_and_keep_their_row(store: ImageStore, image_dir: Path) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "sub" / "b.jpg")
    reconcile(store, image_dir)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE images SET wp_url='https://wp/b.jpg' WHERE file_name='sub/b.jpg'")
        )
    (image_dir / "sub" / "b.jpg").unlink()
    summary = reconcile(store, image_dir)
    assert summary.missing == 1
    row = row_of(store, "sub/b.jpg")
    assert row is not None
    assert (row["status"], row["wp_url"]) == (Status.MISSING, "https://wp/b.jpg")
    # Already missing: not counted again. Back on disk: recorded again.
    assert reconcile(store, image_dir).missing == 0
    write_image(image_dir / "sub" / "b.jpg")
    assert reconcile(store, image_dir).changed == 1
    assert (row_of(store, "sub/b.jpg") or {})["status"] == Status.DONE


def test_adopted_rows_are_reconciled_and_keep_their_text(
    store: ImageStore, image_dir: Path
) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO images (file_name, title, description, wp_url) VALUES "
                "('old.jpg', 'Old title', 'Old text', 'https://wp/old.jpg'), "
                "('gone.jpg', 'Gone', 'Image description', NULL)"
            )
        )
    path = write_image(image_dir / "old.jpg")
    summary = reconcile(store, image_dir)
    assert (summary.changed, summary.missing, summary.new) == (1, 1, 0)
    row = row_of(store, "old.jpg")
    assert row is not None
    assert (row["title"], row["description"], row["wp_url"]) == (
        "Old title",
        "Old text",
        "https://wp/old.jpg",
    )
    assert (row["status"], row["sha256"]) == (Status.DONE, sha256_of(path))
    assert (row_of(store, "gone.jpg") or {})["status"] == Status.MISSING


def test_many_files_in_small_batches(store: ImageStore, image_dir: Path) -> None:
    source = write_image(image_dir / "seed.jpg").read_bytes()
    for i in range(250):
        (image_dir / f"d{i % 7}" / f"{i:04d}.jpg").parent.mkdir(exist_ok=True)
        (image_dir / f"d{i % 7}" / f"{i:04d}.jpg").write_bytes(source)
    commits: list[object] = []

    def on_commit(conn: object) -> None:
        commits.append(conn)

    event.listen(store.engine, "commit", on_commit)
    summary = reconcile(store, image_dir, batch_size=40)
    event.remove(store.engine, "commit", on_commit)
    assert summary.new == 251
    # One transaction per batch, not one per file.
    assert len(commits) == math.ceil(251 / 40)
    assert store.counts_by_status() == {Status.DONE: 251}


def test_odd_names_are_recorded_exactly(store: ImageStore, image_dir: Path) -> None:
    names = ["with space.jpg", 'quote\'s "d".jpg', "100%.jpg", "caf\u00e9.jpg", "\U0001f600.png"]
    for name in names:
        write_image(image_dir / name)
    reconcile(store, image_dir)
    assert sorted(file_states(store)) == sorted(names)


def test_unstorable_names_get_a_rejected_row_under_a_stand_in_name(
    store: ImageStore, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_image(image_dir / "ok.jpg")
    long_dir = image_dir / ("d" * 200)
    write_image(long_dir / ("n" * 60 + ".jpg"))
    raw = os.fsencode(image_dir) + b"/bad\xff.jpg"
    with open(raw, "wb") as f:
        f.write(write_image(image_dir / "tmp.png").read_bytes())
    (image_dir / "tmp.png").unlink()
    summary = reconcile(store, image_dir)
    assert (summary.new, summary.rejected) == (1, 2)
    rows = {r["file_name"]: r for r in all_rows(store)}
    assert rows["ok.jpg"]["status"] == Status.DONE
    rejected = {n: r["last_error"] for n, r in rows.items() if r["status"] == Status.REJECTED}
    assert len(rejected) == 2
    bad = next(n for n in rejected if n.startswith("bad\\xff.jpg#"))  # readable, unique
    assert rejected[bad] == "file name is not valid UTF-8"
    long = next(n for n in rejected if n.startswith("ddd"))
    assert len(long) <= 255 and "longer than 255" in rejected[long]
    assert "not valid UTF-8" in caplog.text
    # Settled: the next reconcile neither re-rejects them nor marks them missing.
    again = reconcile(store, image_dir)
    assert (again.unchanged, again.rejected, again.missing) == (3, 0, 0)
    os.unlink(raw)
    assert reconcile(store, image_dir).missing == 1


def test_unreadable_directory_does_not_mark_its_files_missing(
    store: ImageStore, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(image_dir / "locked" / "a.jpg")
    write_image(image_dir / "open" / "b.jpg")
    write_image(image_dir / "open" / "stays.jpg")
    reconcile(store, image_dir)
    (image_dir / "open" / "b.jpg").unlink()
    listings(monkeypatch, refused=[str(image_dir.resolve() / "locked")])
    summary = reconcile(store, image_dir)
    assert summary.missing == 1
    assert (row_of(store, "locked/a.jpg") or {})["status"] == Status.DONE
    assert (row_of(store, "open/b.jpg") or {})["status"] == Status.MISSING


class FakeClaims:
    """Claims as the daemon's workers hold them."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)
        self.held: set[str] = set()
        self.released: list[str] = []

    def claim(self, file_name: str) -> bool:
        if file_name in self.taken or file_name in self.held:
            return False
        self.held.add(file_name)
        return True

    def release(self, file_names: Iterable[str]) -> None:
        for name in file_names:
            self.held.discard(name)
            self.released.append(name)


def test_a_reconcile_leaves_claimed_files_to_their_holder(
    store: ImageStore, image_dir: Path
) -> None:
    write_image(image_dir / "mine.jpg")
    write_image(image_dir / "theirs.jpg")
    store.upsert(
        [ImageRecord(file_name="theirs.jpg", title="t", description="d", status=Status.DONE)]
    )
    claims = FakeClaims({"theirs.jpg"})
    summary = reconciler(store, image_dir, claims=claims).run()
    rows = {r["file_name"]: r for r in all_rows(store)}
    assert rows["mine.jpg"]["status"] == Status.DONE
    assert rows["theirs.jpg"]["status"] == Status.DONE  # not read, and not marked missing
    assert rows["theirs.jpg"]["sha256"] is None
    assert summary.new == 1 and summary.missing == 0
    assert claims.held == set() and claims.released == ["mine.jpg"]


def test_a_reconcile_rereads_the_row_before_reading_a_file(
    store: ImageStore, image_dir: Path
) -> None:
    # Recorded by a worker after the reconcile loaded its rows: not read a second time.
    path = write_image(image_dir / "late.jpg")
    st = path.stat()
    rec = reconciler(store, image_dir)
    known_at_start = file_states(store)
    store.upsert(
        [
            ImageRecord(
                file_name="late.jpg",
                title="late.jpg",
                description="d",
                status=Status.DONE,
                sha256="f" * 64,
                size_bytes=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
        ]
    )
    # The rows as they were before the worker wrote: late.jpg has none.
    store.file_state_pages = lambda page=None, names=(None, None): iter(  # type: ignore[method-assign]
        [sorted(known_at_start.values())]
    )
    rec.claims = FakeClaims(set())
    summary = rec.run()
    assert summary.unchanged == 1 and summary.new == 0
    assert row_of(store, "late.jpg")["sha256"] == "f" * 64  # type: ignore[index]


def test_an_empty_image_directory_marks_nothing_missing(
    store: ImageStore, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What an unmounted share looks like: the mount point is there, and empty.
    for name in ("a.jpg", "b/c.jpg"):
        write_image(image_dir / name)
    reconcile(store, image_dir)
    for name in ("a.jpg", "b/c.jpg"):
        (image_dir / name).unlink()
    summary = reconcile(store, image_dir)
    assert (summary.missing, summary.held) == (0, 2)
    assert {r["status"] for r in all_rows(store)} == {Status.DONE}
    assert "is empty but 2 row(s) say files were there" in caplog.text
    # One file back (remounted, or only some were deleted): the rest go missing.
    write_image(image_dir / "new.jpg")
    assert reconcile(store, image_dir).missing == 2


@pytest.mark.parametrize("with_claims", [False, True])
def test_each_file_is_read_once_across_many_batches(
    store: ImageStore, image_dir: Path, monkeypatch: pytest.MonkeyPatch, with_claims: bool
) -> None:
    names = [f"f{i:02d}.png" for i in range(11)]
    for name in names:
        write_image(image_dir / name)
    reads: list[str] = []
    real = decide.examine

    def counting(found: FoundFile, *args: Any) -> object:
        reads.append(found.file_name)
        return real(found, *args)

    monkeypatch.setattr(scanner_module, "examine", counting)
    claims = FakeClaims(set()) if with_claims else None
    summary = reconciler(store, image_dir, batch_size=3, claims=claims).run()
    assert sorted(reads) == names
    assert summary.new == 11 and summary.unchanged == 0
    assert sorted(r["file_name"] for r in all_rows(store)) == names
    if claims is not None:
        assert claims.held == set() and sorted(claims.released) == names
