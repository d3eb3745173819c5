"""A rescan reading files in forked processes: same rows, and no fork beside threads."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from imgwatch.db.store import ImageStore
from imgwatch.db.upsert import PreparedRows
from imgwatch.errors import DatabaseUnavailable
from imgwatch.files.decide import Outcome, ToRead
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.model import ImageRecord, Status
from imgwatch.reconcile.readers import ProcessReaders, reader_processes
from imgwatch.reconcile.reconciler import Reconciler
from tests.imagefiles import sha256_of, write_image
from tests.rows import all_rows

ROOT = Path(__file__).resolve().parent.parent.parent


class CountingReaders(ProcessReaders):
    """The real processes, with a count of what was handed to them."""

    def __init__(self, processes: int) -> None:
        super().__init__(processes)
        self.files_sent = 0

    def submit(
        self, files: list[ToRead], processor: FileProcessor, uploads: bool
    ) -> list[Future[list[Outcome]]]:
        self.files_sent += len(files)
        return super().submit(files, processor, uploads)


@pytest.fixture
def readers() -> Iterator[CountingReaders]:
    with CountingReaders(2) as r:
        yield r


def reconciler(store: ImageStore, image_dir: Path, readers: ProcessReaders) -> Reconciler:
    return Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ImageNameFilter((".jpg", ".png", ".gif")),
        processor=FileProcessor("Image description"),
        batch_size=64,
        readers=readers,
    )


def test_files_read_in_processes_get_the_same_rows(
    store: ImageStore, image_dir: Path, readers: CountingReaders
) -> None:
    good = [
        write_image(image_dir / f"d{i % 3}" / f"{i:03d}.{('jpg', 'png', 'gif')[i % 3]}", 9, 7)
        for i in range(150)
    ]
    (image_dir / "text.jpg").write_text("not an image")
    cut = write_image(image_dir / "cut.png", 60, 60)
    cut.write_bytes(cut.read_bytes()[:-40])
    # A rescan forks only while it is the process's one thread.
    assert threading.active_count() == 1, f"threads left running: {threading.enumerate()}"
    summary = reconciler(store, image_dir, readers).run()
    assert (summary.new, summary.rejected, summary.failed) == (150, 2, 0)
    assert readers.files_sent >= 128  # two full batches went to the processes
    rows = {r["file_name"]: r for r in all_rows(store)}
    assert len(rows) == 152
    for path in good:
        row = rows[str(path.relative_to(image_dir))]
        assert (row["status"], row["sha256"], row["width"], row["height"]) == (
            Status.DONE,
            sha256_of(path),
            9,
            7,
        )
    assert rows["text.jpg"]["status"] == Status.REJECTED
    assert "looks like text" in rows["text.jpg"]["last_error"]
    assert "truncated PNG" in rows["cut.png"]["last_error"]
    # A second rescan reads nothing: the rows written from the processes' facts match.
    again = reconciler(store, image_dir, readers).run()
    assert (again.unchanged, again.new, again.changed) == (152, 0, 0)


def test_no_fork_while_another_thread_runs(
    store: ImageStore, image_dir: Path, readers: CountingReaders
) -> None:
    for i in range(100):
        write_image(image_dir / f"{i:03d}.png", 5, 5)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        summary = reconciler(store, image_dir, readers).run()
    finally:
        stop.set()
        other.join()
    assert summary.new == 100
    assert readers.files_sent == 0  # read in this process instead


def test_reading_processes_follow_the_workers_setting_up_to_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert reader_processes(4) == 2
    assert reader_processes(1) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert reader_processes(4) == 1


def test_a_failed_write_stops_the_rescan_and_leaves_no_thread(
    store: ImageStore, image_dir: Path, readers: CountingReaders, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(200):
        write_image(image_dir / f"{i:03d}.png", 5, 5)
    real = store.write_prepared
    calls = []

    def write_prepared(prepared: PreparedRows) -> None:
        calls.append(len(prepared.records))
        if len(calls) == 2:
            raise DatabaseUnavailable("database x: writing rows failed: gone away")
        real(prepared)

    monkeypatch.setattr(store, "write_prepared", write_prepared)
    with pytest.raises(DatabaseUnavailable, match="gone away"):
        reconciler(store, image_dir, readers).run()
    assert not [t for t in threading.enumerate() if t.name.startswith("rescan-writer")]
    assert store.counts_by_status() == {Status.DONE: calls[0]}  # what was committed stays


class DyingProcessor(FileProcessor):
    """Kills the reading process that gets `die.png`, as the OOM killer would."""

    def process(
        self,
        file_name: str,
        path: str,
        size_bytes: int,
        mtime_ns: int,
        has_sidecar: bool = True,
    ) -> ImageRecord | None:
        if file_name == "die.png" and multiprocessing.parent_process() is not None:
            os._exit(137)
        return super().process(file_name, path, size_bytes, mtime_ns, has_sidecar)


def test_a_reading_process_that_dies_leaves_its_files_to_the_rescan(
    store: ImageStore, image_dir: Path, readers: CountingReaders, caplog: pytest.LogCaptureFixture
) -> None:
    # Three full batches of 64: every file goes to the processes.
    names = {f"{i:03d}.png" for i in range(191)} | {"die.png"}
    for name in names:
        write_image(image_dir / name, 5, 5)
    rec = reconciler(store, image_dir, readers)
    rec.processor = DyingProcessor("Image description")
    summary = rec.run()
    assert summary.new == len(names)
    assert store.counts_by_status() == {Status.DONE: len(names)}
    assert caplog.text.count("a reading process died; reading the rest in this process") == 1


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def test_the_daemons_readers_are_started_ahead_and_stopped_after() -> None:
    readers = ProcessReaders(2, fork_server="INFO")
    try:
        readers.prepare()  # returns at once; the processes start in the background
        readers.prepare()  # once
        assert readers._preparing is not None
        readers._preparing.join(30)
        pool = readers._pool
        assert pool is not None
        processes = list((pool._processes or {}).values())
        assert len(processes) == 2 and all(p.is_alive() for p in processes)
        assert readers.call(os.getpid).result(10) in {p.pid for p in processes}
    finally:
        readers.close()
    for process in processes:
        process.join(10)
        assert not process.is_alive()
    readers.prepare()  # closed: not started again
    assert readers._pool is None


def test_a_close_while_the_readers_start_leaves_none_running() -> None:
    before = _children()
    readers = ProcessReaders(2, fork_server="INFO")
    readers.prepare()
    readers.close()  # at once: waits for the start, then stops what it started
    assert readers._pool is None
    for process in multiprocessing.active_children():
        if process.pid not in before:
            process.join(10)
    assert _children() <= before


def test_a_rescans_readers_are_not_started_ahead() -> None:
    readers = ProcessReaders(2)  # forked from the rescan itself, while it has one thread
    readers.prepare()
    assert readers._preparing is None and readers._pool is None


OWNER = """
import os, sys, time
from imgwatch.reconcile.readers import ProcessReaders
readers = ProcessReaders(2, fork_server="INFO")
readers.prepare()
readers._preparing.join(30)
pids = {readers.call(os.getpid).result(10) for _ in range(20)}
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(600)
"""


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_readers_end_when_the_daemon_is_killed_outright() -> None:
    # A daemon killed with SIGKILL tells its reading processes nothing: they, and
    # the fork server that waits for them, must not be left behind.
    with subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as owner:
        try:
            assert owner.stdout is not None
            readers = [int(pid) for pid in owner.stdout.readline().split()]
            assert len(readers) == 2
            server = {_parent(pid) for pid in readers}
            assert len(server) == 1 and all(_alive(pid) for pid in readers)
        finally:
            owner.kill()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in [*readers, *server]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in [*readers, *server] if _alive(pid)]
