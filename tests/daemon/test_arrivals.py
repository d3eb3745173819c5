"""A directory moved in whole, read whole (daemon/arrivals.py, daemon/readers.py):
every file read once and recorded, its paths claimed while it is read, a directory
with rows under its name handed back to go a path at a time."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.daemon.arrivals import CHUNK, ArrivedDir, BusyDirs, read_ahead
from imgwatch.daemon.writer import Op, RenameDir, Upsert
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.decide import Outcome, ToRead
from imgwatch.files.walk import FoundFile
from imgwatch.model import Status
from imgwatch.reconcile.readers import ProcessReaders
from tests.daemon.helpers import record_of
from tests.daemon.test_readers import Reading
from tests.daemonproc import wait_for
from tests.imagefiles import sha256_of, write_image
from tests.rows import all_rows


def _card(image_dir: Path, files: int) -> set[str]:
    """A directory as a camera card lands: images in it and in a subdirectory, and
    what is no candidate (hidden, temporary, another extension)."""
    names = {f"card/{i:03d}.jpg" for i in range(files)} | {"card/sub/x.png"}
    for name in names:
        write_image(image_dir / name)
    (image_dir / "card" / "notes.jpg").write_text("not an image")
    for skipped in (".hidden.jpg", "half.jpg.part", "readme.txt"):
        (image_dir / "card" / skipped).write_bytes(b"x")
    return names


@pytest.mark.parametrize("processes", [0, 2], ids=["threads", "processes"])
def test_a_directory_moved_in_is_read_whole_each_file_once(
    store: ImageStore,
    db_url: URL,
    image_dir: Path,
    processes: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="imgwatch.daemon.readers")
    names = _card(image_dir, 2 * CHUNK + 5)  # more than a chunk per process
    readers = ProcessReaders(processes, fork_server="WARNING") if processes else None
    r = Reading(store, image_dir, db_url, uploads=True, threads=2, readers=readers)
    looked_up: list[str] = []
    lookup_many = store.lookup_many

    def lookup(keys: list[str]) -> object:
        looked_up.extend(keys)
        return lookup_many(keys)

    monkeypatch.setattr(store, "lookup_many", lookup)
    assert r.files.arrived("card")
    # Claimed from the moment it is queued: the debouncer and a reconcile wait.
    assert r.files.is_busy("card/000.jpg") and r.files.is_busy("card/sub/x.png")
    assert not r.files.claim("card/new.jpg") and not r.files.submit("card/000.jpg")
    assert not r.files.is_busy("cards/000.jpg") and not r.files.is_busy("card")
    r.writer.start()
    r.files.start()
    try:
        wait_for(lambda: len(all_rows(store)) == len(names) + 1, 60, "the rows")
        wait_for(lambda: not r.files.is_busy("card/000.jpg"), 10, "the claims let go")
    finally:
        deadline = time.monotonic() + 10
        assert r.files.stop(deadline) and r.writer.stop(deadline)
    rows = {row["file_name"]: row for row in all_rows(store)}
    assert set(rows) == names | {"card/notes.jpg"}
    for name in names:
        assert rows[name]["status"] == Status.PENDING
        assert rows[name]["sha256"] == sha256_of(image_dir / name)
    assert rows["card/notes.jpg"]["status"] == Status.REJECTED
    assert looked_up == []  # new: no row looked up, none read twice
    said = [r.getMessage() for r in caplog.records]
    assert "directory 'card' moved in: reading it whole" in said
    assert any(m.startswith(f"directory 'card' read: {len(names) + 1} file(s) in ") for m in said)
    assert r.rewalked == [] and r.retouched == []
    assert r.files.stuck(0.0) is None
    if readers is not None:
        assert r.files.readers is readers  # read in the processes, still there


def test_a_directory_with_rows_under_its_name_goes_a_path_at_a_time(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    # Moved out and back in: its rows (their uploads) must be found, path by path.
    write_image(image_dir / "card" / "a.jpg")
    write_image(image_dir / "card" / "b.jpg")
    store.upsert([record_of(image_dir, "card/a.jpg")])
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)
    r.writer.start()
    r.files.start()
    try:
        assert r.files.arrived("card")
        wait_for(lambda: r.rewalked == ["card"], 10, "the directory handed back")
        # Its claim is let go first: the router's walk hands its paths to workers.
        wait_for(lambda: not r.files.is_busy("card/b.jpg"), 10, "the claim let go")
    finally:
        deadline = time.monotonic() + 10
        assert r.files.stop(deadline) and r.writer.stop(deadline)
    assert {row["file_name"] for row in all_rows(store)} == {"card/a.jpg"}  # nothing read


def test_a_database_down_hands_the_directory_back(
    store: ImageStore, db_url: URL, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(image_dir / "card" / "a.jpg")
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)

    def down(_prefix: str) -> bool:
        raise DatabaseUnavailable("database unavailable (reading rows of a directory)")

    monkeypatch.setattr(store, "has_rows_under", down)
    r.files.start()
    try:
        assert r.files.arrived("card")
        wait_for(lambda: r.rewalked == ["card"], 10, "the directory handed back")
        assert r.files.outage.down  # said once, as any outage
    finally:
        assert r.files.stop(time.monotonic() + 10)


def test_a_stop_leaves_the_rest_of_a_directory_to_the_next_start(
    store: ImageStore, db_url: URL, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgwatch.daemon.readers")
    names = _card(image_dir, 8 * CHUNK)
    # In processes: chunks are out, read ahead, while the worker waits on the writer.
    readers = ProcessReaders(2, fork_server="WARNING")
    r = Reading(store, image_dir, db_url, uploads=False, threads=1, readers=readers)
    writing = threading.Event()

    def far_behind(_records: object) -> None:  # a writer far behind
        writing.wait(30)

    r.writer.on_rows = far_behind
    r.writer.start()
    r.files.start()
    try:
        assert r.files.arrived("card")
        wait_for(lambda: r.writer.inbox.full(), 30, "the writer's queue to fill")
        # Waiting for room at the writer (a database down for long, say) is not a
        # read that hangs: no health check takes it for one.
        assert r.files.stuck(0.0) is None
        stopped = threading.Thread(target=r.files.stop, args=(time.monotonic() + 30,))
        stopped.start()
        wait_for(lambda: r.files._stopping.is_set(), 10, "the stop")
        writing.set()
        stopped.join(30)
        assert not r.files.alive()
    finally:
        writing.set()
        assert r.writer.stop(time.monotonic() + 10)
    recorded = {row["file_name"] for row in all_rows(store)}
    assert 0 < len(recorded) < len(names)  # what was read is written, no more is read
    assert "stopping: the rest of directory 'card' is read at the next start" in caplog.text
    assert not r.files.is_busy("card/000.jpg")


@pytest.mark.parametrize(
    ("moved", "walked_again"),
    [("card/", []), ("card/sub/", ["card"])],
    ids=["the-directory", "one-inside-it"],
)
def test_a_move_while_a_directory_is_read_comes_after_all_it_handed_on(
    store: ImageStore,
    db_url: URL,
    image_dir: Path,
    moved: str,
    walked_again: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `mv /srv/images/card /srv/images/2026-trip` while card is read: a row written
    # after the move's own op would be left under the old name.
    names = _card(image_dir, 6 * CHUNK)
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)
    order: list[str] = []
    put = r.writer.put

    def recording(op: Op) -> None:
        order.append(op.key if isinstance(op, Upsert) else "the move")
        put(op)

    monkeypatch.setattr(r.writer, "put", recording)
    moving = threading.Event()

    def move() -> None:  # as the router does it, on its own thread
        r.files.leaving(moved)
        r.writer.put(RenameDir(moved, "elsewhere/"))

    def move_after_first_rows(_records: object) -> None:
        if not moving.is_set():
            moving.set()
            threading.Thread(target=move).start()

    r.writer.on_rows = move_after_first_rows
    r.writer.start()
    r.files.start()
    try:
        assert r.files.arrived("card")
        wait_for(lambda: "the move" in order and not list(r.files._busy_dirs), 30, "the move")
    finally:
        deadline = time.monotonic() + 10
        assert r.files.stop(deadline) and r.writer.stop(deadline)
    upserts_after = order[order.index("the move") + 1 :]
    assert upserts_after == []
    assert 0 < len(order) - 1 < len(names)  # the rest was not read
    assert r.rewalked == walked_again
    assert not r.files.is_busy("card/000.jpg")


def test_a_path_a_worker_took_meanwhile_is_left_to_it(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    names = _card(image_dir, 3)
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)  # not started
    # Written again after it arrived: its event's worker has it when the directory's
    # outcomes come back; that worker reads it again (with its row), not this one.
    assert r.files.claim("card/001.jpg")
    r.files._read_whole(ArrivedDir("card"))
    handed = {op.key for op in r.handed() if isinstance(op, Upsert)}
    assert handed == (names | {"card/notes.jpg"}) - {"card/001.jpg"}
    assert r.files.is_busy("card/001.jpg")  # still that worker's


def test_a_full_queue_refuses_a_directory_and_lets_its_claim_go(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)  # not started
    while r.files.room():
        assert r.files.submit(f"{r.files.room()}.jpg")
    assert not r.files.arrived("card")  # then the router walks it itself
    assert not r.files.is_busy("card/a.jpg")


def test_a_reading_process_that_dies_mid_directory_leaves_the_rest_to_the_thread(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    names = _card(image_dir, 6 * CHUNK)
    readers = ProcessReaders(2, fork_server="WARNING")
    r = Reading(store, image_dir, db_url, uploads=False, threads=1, readers=readers)
    killed = threading.Event()

    def kill_after_first(records: object) -> None:
        pool = readers._pool
        if not killed.is_set() and pool is not None:
            killed.set()
            # The writer far behind, the processes have sent what was asked of them
            # and wait: killed in the middle of sending outcomes, a process leaves
            # half a message that the executor waits on for good (there the health
            # check's stuck read restarts the daemon).
            time.sleep(0.5)
            for process in list(pool._processes.values()):
                process.kill()

    r.writer.on_rows = kill_after_first
    r.writer.start()
    r.files.start()
    try:
        assert r.files.arrived("card")
        wait_for(lambda: len(all_rows(store)) == len(names) + 1, 60, "every row")
    finally:
        deadline = time.monotonic() + 10
        assert r.files.stop(deadline) and r.writer.stop(deadline)
    assert killed.is_set() and r.files.readers is None
    assert {row["file_name"] for row in all_rows(store)} == names | {"card/notes.jpg"}


# --- the pieces -------------------------------------------------------------------


def test_busy_directories_cover_the_paths_under_them_only() -> None:
    busy = BusyDirs()
    assert list(busy) == []
    first, second = ArrivedDir("a/b"), ArrivedDir("a/b")  # two readings of it
    busy.add(first)
    busy.add(second)
    assert list(busy) == [first, second]
    assert busy.covers("a/b/c.jpg") and busy.covers("a/b/c/d.jpg")
    assert not busy.covers("a/b.jpg") and not busy.covers("a/bc/d.jpg")
    assert not busy.covers("a/c.jpg") and not busy.covers("b/c.jpg")
    busy.discard(first)
    assert busy.covers("a/b/c.jpg")  # the other reading still has it
    busy.discard(second)
    assert list(busy) == [] and not busy.covers("a/b/c.jpg")


def test_read_ahead_keeps_a_bounded_number_of_chunks_out_in_order() -> None:
    found = (FoundFile(f"d/{i:04d}.jpg", f"/x/d/{i:04d}.jpg", 1, 1) for i in range(5 * CHUNK + 1))
    sent: list[list[ToRead]] = []

    def read(chunk: list[ToRead]) -> Future[list[Outcome]]:
        sent.append(chunk)
        future: Future[list[Outcome]] = Future()
        future.set_result([f.file_name for f, _ in chunk])
        return future

    seen: list[str] = []
    for chunk, future in read_ahead(found, read, 3, lambda: False):
        assert len(sent) - len(seen) // CHUNK <= 3  # never more than 3 out
        assert all(row is None for _, row in chunk)  # new files: no row
        seen.extend(str(outcome) for outcome in future.result())
    assert seen == [f"d/{i:04d}.jpg" for i in range(5 * CHUNK + 1)]
    assert [len(c) for c in sent] == [CHUNK] * 5 + [1]


def test_read_ahead_takes_no_more_once_stopped() -> None:
    found = (FoundFile(f"{i}.jpg", f"/x/{i}.jpg", 1, 1) for i in range(10 * CHUNK))
    stop = threading.Event()

    def read(chunk: list[ToRead]) -> Future[list[Outcome]]:
        future: Future[list[Outcome]] = Future()
        future.set_result([])
        return future

    taken = 0
    for _chunk, _future in read_ahead(found, read, 2, stop.is_set):
        taken += 1
        stop.set()
    assert taken == 2  # the chunks already out, none more
