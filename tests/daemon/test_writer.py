"""The row writer (daemon/writer.py) on its thread: upserts, moves, runs of deletes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.daemon.stages import Count, Outage, Stats
from imgwatch.daemon.writer import Gone, GoneDir, Op, Rename, RenameDir, Upsert, Writer
from imgwatch.db.store import ImageStore
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import check_image_dir
from imgwatch.model import ImageRecord, Status
from imgwatch.pipeline import deletions
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, HoldState
from tests.daemon.helpers import record_of, settings_for
from tests.daemonproc import wait_for
from tests.imagefiles import write_image
from tests.reconcile.test_deletions import hold_row, rows
from tests.rows import all_rows


class Writing:
    """A Writer over a real store, built as the daemon builds it, and what it told."""

    def __init__(
        self, store: ImageStore, image_dir: Path, db: URL, *, run_quiet: float = 0.1, **more: str
    ) -> None:
        settings = settings_for(image_dir, db, **more)
        self.root = check_image_dir(image_dir)
        self.store = store
        self.told: list[list[ImageRecord]] = []  # on_rows, call by call
        self.rows_when_told: list[int] = []
        self.released: list[str] = []
        self.purged: list[GoneRow] = []
        self._lock = threading.Lock()
        purge = self.purged.extend if settings.on_delete == "purge" else None
        self.writer = Writer(
            root=self.root,
            store=store,
            stats=Stats(),
            batch_size=settings.batch_size,
            deletions=deletions(settings, store, self.root, purge=purge, hold=HoldState()),
            accept=ImageNameFilter(settings.extensions),
            on_rows=self._on_rows,
            release=self._release,
            outage=Outage(),
            run_quiet=run_quiet,
        )

    def _on_rows(self, records: list[ImageRecord]) -> None:
        self.rows_when_told.append(len(all_rows(self.store)))
        self.told.append(records)

    def _release(self, names: Iterable[str]) -> None:
        with self._lock:
            self.released.extend(names)

    def run(self, *ops: Op) -> None:
        """Queue ops before the thread starts: they are taken as one batch."""
        for op in ops:
            self.writer.put(op)
        self.writer.start()

    def stop(self) -> None:
        began = time.monotonic()
        assert self.writer.stop(began + 10)
        assert not self.writer.alive()


def statuses(store: ImageStore) -> dict[str, str]:
    return {r["file_name"]: r["status"] for r in all_rows(store)}


def ids(store: ImageStore) -> dict[str, int]:
    return {r["file_name"]: r["id"] for r in all_rows(store)}


def recorded(w: Writing, *names: str) -> None:
    """Files on disk and their rows, written by the writer itself."""
    for name in names:
        write_image(w.root / name)
    w.run(*(Upsert(record_of(w.root, n), n) for n in names))
    wait_for(lambda: len(w.told) == 1, 10, "the rows written")


def test_upserts_are_written_together_and_told_after_the_commit(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    w = Writing(store, image_dir, db_url)
    names = ["a.jpg", "sub/b.png", "c.jpg"]
    for name in names:
        write_image(image_dir / name)
    (image_dir / "notes.jpg").write_text("not an image")
    w.run(*(Upsert(record_of(image_dir, n), n) for n in [*names, "notes.jpg"]))
    wait_for(lambda: w.told, 10, "on_rows")
    try:
        (records,) = w.told  # one transaction, one call
        assert [r.file_name for r in records] == [*names, "notes.jpg"]
        assert w.rows_when_told == [4]  # the rows were there when it was told
        assert statuses(store) == {
            "a.jpg": Status.DONE,
            "sub/b.png": Status.DONE,
            "c.jpg": Status.DONE,
            "notes.jpg": Status.REJECTED,
        }
        # Claimed files are let go once their rows are committed.
        wait_for(lambda: len(w.released) == 4, 10, "the files released")
        assert sorted(w.released) == sorted([*names, "notes.jpg"])
        stats = w.writer.stats
        assert (stats[Count.RECORDED], stats[Count.REJECTED]) == (3, 1)
    finally:
        w.stop()


def test_moves_keep_their_rows_and_ops_queued_before_stop_are_applied(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    w = Writing(store, image_dir, db_url)
    recorded(w, "a.jpg", "album/b.jpg", "album/c.jpg")
    before = ids(store)
    (image_dir / "a.jpg").rename(image_dir / "x.jpg")
    (image_dir / "album").rename(image_dir / "2026")
    w.writer.put(Rename("a.jpg", "x.jpg"))
    w.writer.put(RenameDir("album/", "2026/"))
    w.stop()  # the stop marker comes after them: both are applied first
    after = ids(store)
    assert after == {
        "x.jpg": before["a.jpg"],
        "2026/b.jpg": before["album/b.jpg"],
        "2026/c.jpg": before["album/c.jpg"],
    }
    assert set(statuses(store).values()) == {Status.DONE}  # nothing read again, nothing lost


@pytest.mark.parametrize("policy", ["missing", "forget"])
def test_a_run_of_deletes_is_settled_once_quiet_and_spares_files_that_are_back(
    store: ImageStore, db_url: URL, image_dir: Path, policy: str
) -> None:
    w = Writing(store, image_dir, db_url, on_delete=policy)
    recorded(w, "gone.jpg", "back.jpg", "dir/one.jpg", "dir/two.jpg", "stays.jpg")
    (image_dir / "gone.jpg").unlink()
    (image_dir / "dir" / "one.jpg").unlink()
    (image_dir / "dir" / "two.jpg").unlink()
    (image_dir / "dir").rmdir()
    # back.jpg: deleted and written again (an editor's save) before the run settles.
    for op in (Gone("gone.jpg"), Gone("back.jpg"), GoneDir("dir/")):
        w.writer.put(op)
    try:
        expected = {
            "gone.jpg": Status.MISSING,
            "dir/one.jpg": Status.MISSING,
            "dir/two.jpg": Status.MISSING,
            "back.jpg": Status.DONE,
            "stays.jpg": Status.DONE,
        }
        if policy == "forget":
            expected = {k: v for k, v in expected.items() if v == Status.DONE}
        wait_for(lambda: statuses(store) == expected, 10, "the run settled")
        assert w.writer.stats[Count.MISSING] == 3
        assert w.writer.pending() == 0
    finally:
        w.stop()


def test_purges_go_to_the_upload_side_not_the_database(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    w = Writing(store, image_dir, db_url, on_delete="purge")
    recorded(w, "a.jpg", "b.jpg", "c.jpg")
    row_id = ids(store)["a.jpg"]
    (image_dir / "a.jpg").unlink()
    w.writer.put(Gone("a.jpg"))
    try:
        wait_for(lambda: w.purged, 10, "the purge handed on")
        assert w.purged == [GoneRow(row_id, "a.jpg")]
        assert statuses(store)["a.jpg"] == Status.DONE  # its media item goes first
    finally:
        w.stop()


def test_deletes_not_settled_at_stop_are_left_to_the_next_reconcile(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    w = Writing(store, image_dir, db_url, run_quiet=600.0)
    recorded(w, "a.jpg", "b.jpg")
    (image_dir / "a.jpg").unlink()
    w.writer.put(Gone("a.jpg"))  # gathered into a run that is not over at the stop
    w.stop()  # half a wipe must not be applied: the next start sees the whole tree
    assert statuses(store) == {"a.jpg": Status.DONE, "b.jpg": Status.DONE}


# --- the daemon's writer: deletes gathered into runs ----------------------------------


def writer_over(store: ImageStore, image_dir: Path, policy: str = "forget") -> Writer:
    deletions = Deletions(store, policy=policy, guard=DeleteGuard(0.5, 10), where=str(image_dir))
    return Writer(
        root=image_dir,
        store=store,
        stats=Stats(),
        batch_size=100,
        deletions=deletions,
        accept=ImageNameFilter([".jpg"]),
        on_rows=lambda _records: None,
    )


def files(store: ImageStore, image_dir: Path, n: int) -> list[str]:
    names = [f"{i:02d}.jpg" for i in range(n)]
    for name in names:
        write_image(image_dir / name, 8, 8)
    rows(store, 0)
    store.upsert(
        [ImageRecord(file_name=n, title=None, description=None, status=Status.DONE) for n in names]
    )
    return names


def test_a_wipe_spread_over_runs_is_held(store: ImageStore, image_dir: Path) -> None:
    names = files(store, image_dir, 30)
    writer = writer_over(store, image_dir)
    for batch in (names[:10], names[10:20]):  # two runs, a little while apart
        for name in batch:
            (image_dir / name).unlink()
        writer._apply([Gone(n) for n in batch])
        writer._settle_run()
    # The first run (10 of 30) went; the second (20 of 30 with it) is held.
    assert len(statuses(store)) == 20
    assert hold_row(store) is not None


def test_a_run_that_empties_the_tree_is_held_however_small(
    store: ImageStore, image_dir: Path
) -> None:
    names = files(store, image_dir, 3)
    writer = writer_over(store, image_dir)
    for name in names:
        (image_dir / name).unlink()
    writer._apply([Gone(n) for n in names])
    writer._settle_run()
    assert len(statuses(store)) == 3
    assert "is empty but 3 row(s)" in hold_row(store).message


def test_a_file_moved_over_a_deleted_one_keeps_its_row(store: ImageStore, image_dir: Path) -> None:
    names = files(store, image_dir, 12)
    moved = {r["file_name"]: r["id"] for r in all_rows(store)}["01.jpg"]
    writer = writer_over(store, image_dir)
    # `rm 00.jpg; mv 01.jpg 00.jpg`, as events: the delete is still in the run when
    # the move comes.
    (image_dir / "00.jpg").unlink()
    (image_dir / "01.jpg").rename(image_dir / "00.jpg")
    writer._apply([Gone("00.jpg"), Rename("01.jpg", "00.jpg")])
    after = {r["file_name"]: r["id"] for r in all_rows(store)}
    assert after["00.jpg"] == moved  # the moved file's row, now under the name
    assert "01.jpg" not in after and len(after) == len(names) - 1
