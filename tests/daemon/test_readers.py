"""The file workers (daemon/readers.py): a settled path read and handed to the writer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.daemon.readers import BURST_MIN, QUEUED_PER_THREAD, FileWorkers
from imgwatch.daemon.stages import Outage, Stats
from imgwatch.daemon.writer import Gone, Op, Upsert, Writer
from imgwatch.db.store import ImageStore
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.files.walk import check_image_dir
from imgwatch.model import Status
from imgwatch.pipeline import deletions
from imgwatch.reconcile.readers import ProcessReaders
from tests.daemon.helpers import record_of, settings_for
from tests.daemonproc import wait_for
from tests.imagefiles import sha256_of, write_image
from tests.rows import all_rows, row_of
from tests.servers import MariaDB


class Reading:
    """File workers and their writer over a real store, built as the daemon builds
    them; the writer's queue is kept small so that a test can fill it."""

    def __init__(
        self,
        store: ImageStore,
        image_dir: Path,
        db: URL,
        *,
        uploads: bool,
        threads: int,
        readers: ProcessReaders | None = None,
    ) -> None:
        settings = settings_for(image_dir, db, batch_size="1")
        self.root = check_image_dir(image_dir)
        self.retouched: list[str] = []
        self.rewalked: list[str] = []
        self._lock = threading.Lock()
        outage = Outage()
        self.writer = Writer(
            root=self.root,
            store=store,
            stats=Stats(),
            batch_size=settings.batch_size,
            deletions=deletions(settings, store, self.root),
            accept=ImageNameFilter(settings.extensions),
            on_rows=lambda _records: None,
            release=lambda names: self.files.release(names),
            outage=outage,
        )
        self.files = FileWorkers(
            root=self.root,
            store=store,
            processor=FileProcessor(settings.default_description, settings.max_file_bytes),
            uploads=uploads,
            writer=self.writer,
            retouch=self._retouch,
            threads=threads,
            accept=ImageNameFilter(settings.extensions),
            rewalk=self._rewalk,
            outage=outage,
            readers=readers,
        )

    def _retouch(self, key: str) -> None:
        with self._lock:
            self.retouched.append(key)

    def _rewalk(self, key: str) -> None:
        with self._lock:
            self.rewalked.append(key)

    def handed(self) -> list[Op]:
        """What the writer (not started) was given, in order."""
        ops: list[Op] = []
        while not self.writer.inbox.empty():
            op = self.writer.inbox.get_nowait()
            assert op is not None
            ops.append(op)
        return ops


@pytest.fixture
def running(store: ImageStore, db_url: URL, image_dir: Path) -> Iterator[Reading]:
    r = Reading(store, image_dir, db_url, uploads=True, threads=2)
    r.writer.start()
    r.files.start()
    yield r
    deadline = time.monotonic() + 10
    assert r.files.stop(deadline) and r.writer.stop(deadline)


def test_settled_files_become_rows_and_are_let_go_once_committed(
    running: Reading, store: ImageStore, image_dir: Path
) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "sub" / "b.png")
    (image_dir / "notes.jpg").write_text("not an image")
    names = ["a.jpg", "sub/b.png", "notes.jpg"]
    assert all(running.files.submit(n) for n in names)
    wait_for(lambda: len(all_rows(store)) == 3, 10, "the rows")
    wait_for(lambda: not any(running.files.is_busy(n) for n in names), 10, "the claims let go")
    for name in ("a.jpg", "sub/b.png"):
        row = row_of(store, name)
        assert row is not None
        # To go to WordPress, read whole: the row holds the file's hash.
        assert (row["status"], row["sha256"]) == (Status.PENDING, sha256_of(image_dir / name))
    notes = row_of(store, "notes.jpg")
    assert notes is not None and notes["status"] == Status.REJECTED
    assert running.retouched == []


def test_a_claimed_path_is_not_queued_twice_and_a_full_queue_refuses(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)  # not started
    files = r.files
    assert files.submit("a.jpg")
    assert not files.submit("a.jpg")  # a worker has it already
    assert files.is_busy("a.jpg")
    assert files.claim("b.jpg")  # a reconcile reads it
    assert not files.submit("b.jpg")
    files.release(["b.jpg"])
    assert files.submit("b.jpg")
    room = files.room()
    assert room == QUEUED_PER_THREAD - 2
    for i in range(room):
        assert files.submit(f"{i}.jpg")
    assert files.room() == 0
    assert not files.submit("late.jpg")  # the debouncer keeps it and tries again
    assert not files.is_busy("late.jpg")


def test_process_hands_the_writer_what_the_path_means(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)  # nothing started
    write_image(image_dir / "new.jpg")
    write_image(image_dir / "same.jpg")
    store.upsert([record_of(image_dir, "same.jpg")])
    rows = store.lookup_many(["same.jpg"])
    assert r.files.process("gone.jpg", None) is False
    assert r.files.process("same.jpg", rows["same.jpg"]) is False  # not read again
    assert r.files.process("new.jpg", None) is True
    gone, upsert = r.handed()
    assert gone == Gone("gone.jpg")
    assert isinstance(upsert, Upsert) and upsert.key == "new.jpg"
    assert (upsert.record.status, upsert.record.sha256) == (
        Status.DONE,
        sha256_of(image_dir / "new.jpg"),
    )


def test_a_stop_drops_what_was_not_read_and_waits_for_the_file_being_read(
    store: ImageStore, db_url: URL, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgwatch.daemon.readers")
    r = Reading(store, image_dir, db_url, uploads=False, threads=1)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(image_dir / name)
    while not r.writer.inbox.full():  # a writer far behind (a slow database)
        r.writer.put(Gone("elsewhere.jpg"))
    r.files.start()
    try:
        assert r.files.submit("a.jpg")
        # Read, and waiting for room at the writer.
        wait_for(lambda: r.files.stuck(0.0) == "a.jpg", 10, "a.jpg being read")
        assert r.files.submit("b.jpg") and r.files.submit("c.jpg")
        assert r.files.queued() == 2
        assert not r.files.stop(time.monotonic() + 0.2)  # a.jpg is not done yet
        assert "2 file(s) not yet read; they are picked up at the next start" in caplog.text
        assert r.files.queued() == 1  # only the stop marker is left
    finally:
        r.writer.start()  # room again: a.jpg goes on, then the worker ends
        deadline = time.monotonic() + 10
        wait_for(lambda: not r.files.alive(), 10, "the worker to end")
        assert r.writer.stop(deadline)
    assert r.files.stuck(0.0) is None
    assert {row["file_name"] for row in all_rows(store)} == {"a.jpg"}


def test_a_database_down_at_lookup_sends_the_paths_back_to_wait(
    image_dir: Path, own_mariadb: MariaDB
) -> None:
    db = own_mariadb.create_database()
    store = ImageStore(db)
    store.open()
    r = Reading(store, image_dir, db, uploads=False, threads=1)
    r.files.start()
    try:
        write_image(image_dir / "a.jpg")
        own_mariadb.halt()
        assert r.files.submit("a.jpg")
        wait_for(lambda: r.retouched == ["a.jpg"], 10, "the path sent back to the debouncer")
        wait_for(lambda: not r.files.is_busy("a.jpg"), 10, "its claim let go")
        assert r.files.outage.down
    finally:
        assert r.files.stop(time.monotonic() + 10)
        store.close()


def test_a_burst_is_read_in_the_reading_processes(
    store: ImageStore, db_url: URL, image_dir: Path
) -> None:
    readers = ProcessReaders(2, fork_server="INFO")
    r = Reading(store, image_dir, db_url, uploads=True, threads=2, readers=readers)
    names = [f"burst/{i:03d}.jpg" for i in range(3 * BURST_MIN)]
    for name in names:
        write_image(image_dir / name)
    (image_dir / "burst" / "notes.jpg").write_text("not an image")
    keys = [*names, "burst/notes.jpg", "burst/gone.jpg"]
    # Queued before the threads start: they take them as batches, as in a burst.
    assert all(r.files.submit(k) for k in keys)
    r.writer.start()
    r.files.start()
    try:
        wait_for(lambda: len(all_rows(store)) == len(names) + 1, 30, "the rows")
        wait_for(lambda: not any(r.files.is_busy(k) for k in keys), 10, "the claims let go")
        # Read in the processes (started on this first burst), which are still in use.
        assert readers._pool is not None and r.files.readers is readers
    finally:
        deadline = time.monotonic() + 10
        assert r.files.stop(deadline) and r.writer.stop(deadline)
    assert readers._pool is None  # stopped with the workers
    rows = {row["file_name"]: row for row in all_rows(store)}
    for name in names:
        assert rows[name]["status"] == Status.PENDING
        assert rows[name]["sha256"] == sha256_of(image_dir / name)
    assert rows["burst/notes.jpg"]["status"] == Status.REJECTED
    assert "burst/gone.jpg" not in rows
    # (That the processes' log lines reach the daemon's log is seen in the daemon's
    # own: tests/reliability/test_bursts.py.)


def test_a_reading_process_that_dies_leaves_the_burst_to_the_threads(
    store: ImageStore, db_url: URL, image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="imgwatch.daemon.readers")
    readers = ProcessReaders(2, fork_server="WARNING")
    r = Reading(store, image_dir, db_url, uploads=False, threads=1, readers=readers)
    first = [f"a/{i:03d}.jpg" for i in range(BURST_MIN)]
    then = [f"b/{i:03d}.jpg" for i in range(BURST_MIN)]
    for name in first + then:
        write_image(image_dir / name)
    r.writer.start()
    r.files.start()
    try:
        assert all(r.files.submit(k) for k in first)
        wait_for(lambda: len(all_rows(store)) == len(first), 30, "the first burst's rows")
        # The OOM killer, say: every reading process ends at once.
        pool = readers._pool
        assert pool is not None
        for process in list(pool._processes.values()):
            process.kill()
        assert all(r.files.submit(k) for k in then)
        wait_for(lambda: len(all_rows(store)) == len(first + then), 30, "the second's rows")
    finally:
        deadline = time.monotonic() + 10
        assert r.files.stop(deadline) and r.writer.stop(deadline)
    assert "a reading process died; reading files in threads from now on" in caplog.text
    assert r.files.readers is None
    done = {row["file_name"]: row["sha256"] for row in all_rows(store)}
    assert all(done[n] == sha256_of(image_dir / n) for n in then)
