"""Routing (daemon/routing.py): rechecks on their own queue, never counted as lost
events; changes queued before a drop routed before the reset."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

import pytest

from imgwatch.config import load_settings
from imgwatch.daemon.app import Daemon
from imgwatch.daemon.watch import Change
from imgwatch.daemon.writer import RenameDir


def _daemon(tmp_path: Path, image_dir: Path, **settings: object) -> Daemon:
    """A daemon built, not started: its router is driven by hand."""
    db_url = f"sqlite:///{tmp_path / 'x.db'}"
    return Daemon(load_settings({"image_dir": image_dir, "db_url": db_url, **settings}))


def test_a_recheck_with_the_watchers_inbox_full_loses_nothing(
    tmp_path: Path, image_dir: Path
) -> None:
    d = _daemon(tmp_path, image_dir, queue_size=10)
    inbox = d.router.inbox
    for i in range(inbox.maxsize):  # a burst while the database is down
        inbox.put_nowait(Change("created", str(d.root / f"{i}.jpg")))
    assert inbox.full()
    d.router.recheck("again.jpg")  # as a worker does, from its thread
    assert not d.watcher.take_lost()  # the kernel lost nothing: no overflow, no reconcile
    d.router.take_changes()
    assert "again.jpg" in d.router.debouncer
    assert d.reconciles.asked() is None


def test_rechecks_come_from_any_thread_and_each_is_routed(tmp_path: Path, image_dir: Path) -> None:
    d = _daemon(tmp_path, image_dir)
    names = [f"{i}.jpg" for i in range(200)]

    def recheck_all(part: list[str]) -> None:
        for name in part:
            d.router.recheck(name)

    threads = [
        threading.Thread(target=recheck_all, args=(part,)) for part in (names[:100], names[100:])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    d.router.take_changes()
    assert all(n in d.router.debouncer for n in names)
    assert len(d.router.debouncer) == 200
    assert isinstance(d.router.rechecks, queue.SimpleQueue) and d.router.rechecks.empty()


def test_a_dropped_change_still_counts_as_lost(tmp_path: Path, image_dir: Path) -> None:
    d = _daemon(tmp_path, image_dir, queue_size=10)
    for i in range(11):  # one more than there is room for: dropped
        d.watcher.handler.put(Change("created", str(d.root / f"{i}.jpg")))
    assert d.watcher.take_lost()
    assert not d.watcher.take_lost()  # said once


def test_changes_queued_before_a_drop_are_routed_before_the_reset(
    tmp_path: Path, image_dir: Path
) -> None:
    d = _daemon(tmp_path, image_dir, max_wait=600)
    settings = d.settings
    path = str(d.root / "a.jpg")
    # A copy under way, then its close dropped because the queue was full.
    d.router.inbox.put(Change("created", path))
    d.router.inbox.put(Change("written", path))
    d.watcher.handler.lost.set()
    assert d.watcher.take_lost()
    d._after_lost_events()
    assert d.router.inbox.empty()
    deadline = d.router.debouncer.next_deadline()
    assert deadline is not None
    # Read after the quiet period, not after max_wait waiting for the dropped close.
    assert deadline - time.monotonic() <= settings.quiet_period + 0.1
    assert d.reconciles.asked() == "overflow"


def test_a_directory_that_arrives_is_walked_as_the_debouncer_has_room(
    tmp_path: Path, image_dir: Path
) -> None:
    names = {f"in/{i:02d}.jpg" for i in range(25)}
    for name in names:
        (image_dir / name).parent.mkdir(exist_ok=True)
        (image_dir / name).write_bytes(b"x")
    d = _daemon(tmp_path, image_dir, queue_size=10)
    d.router.route(Change("dir_created", str(d.root / "in")))
    fed: set[str] = set()
    while len(fed) < len(names):
        waiting = set(d.router.debouncer._pending)
        assert 0 < len(waiting) <= 10  # never more than the queue holds
        assert not waiting & fed  # each file once
        fed |= waiting
        for key in waiting:  # handed on, as the file workers take them
            d.router.debouncer.forget(key)
        d.router.take_changes()
    assert fed == names
    d.router.take_changes()
    assert len(d.router.debouncer) == 0


def test_a_directory_moved_in_from_outside_is_read_whole_not_walked_here(
    tmp_path: Path, image_dir: Path
) -> None:
    for name in ("card/a.jpg", "made/b.jpg", "back/c.jpg"):
        (image_dir / name).parent.mkdir()
        (image_dir / name).write_bytes(b"x")
    d = _daemon(tmp_path, image_dir)
    d.router.route(Change("dir_moved", "", str(d.root / "card")))
    assert len(d.router.debouncer) == 0  # no path of it here: the file workers have it
    assert d.files.queued() == 1 and d.files.is_busy("card/a.jpg")
    # One made in place may be being written into: its files go a path at a time.
    d.router.route(Change("dir_created", str(d.root / "made")))
    assert "made/b.jpg" in d.router.debouncer and d.files.queued() == 1
    # A worker that found rows under a directory's name hands it back, from its thread.
    threading.Thread(target=d.router.rewalk, args=("back",)).start()
    wait_for_walk = time.monotonic() + 10
    while "back/c.jpg" not in d.router.debouncer and time.monotonic() < wait_for_walk:
        d.router.take_changes()
    assert "back/c.jpg" in d.router.debouncer


def test_moves_out_of_a_directory_being_read_whole_wait_for_it(
    tmp_path: Path, image_dir: Path
) -> None:
    (image_dir / "card" / "sub").mkdir(parents=True)
    d = _daemon(tmp_path, image_dir)
    d.router.route(Change("dir_moved", "", str(d.root / "card")))
    (job,) = d.files._busy_dirs
    # A file renamed inside it: no row to rename yet; looked at once it is read.
    d.router.route(Change("moved", str(d.root / "card/a.jpg"), str(d.root / "card/b.jpg")))
    assert "card/a.jpg" in d.router.debouncer and "card/b.jpg" in d.router.debouncer
    assert d.writer.inbox.empty()
    # A directory inside it moved away: it stops, and the rest goes a path at a time.
    d.router.route(Change("dir_moved", str(d.root / "card/sub"), str(d.root / "sub")))
    assert job.left and job.walk_again
    assert d.writer.inbox.get_nowait() == RenameDir("card/sub/", "sub/")


def test_a_directory_moved_in_with_the_workers_full_is_walked_here(
    tmp_path: Path, image_dir: Path
) -> None:
    (image_dir / "card").mkdir()
    (image_dir / "card" / "a.jpg").write_bytes(b"x")
    d = _daemon(tmp_path, image_dir)
    while d.files.room():
        assert d.files.submit(f"{d.files.room()}.jpg")
    d.router.route(Change("dir_moved", "", str(d.root / "card")))
    assert "card/a.jpg" in d.router.debouncer


def test_the_daemon_starts_its_reading_processes_with_its_threads(
    tmp_path: Path, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # reading processes on any machine
    d = _daemon(tmp_path, image_dir, workers=2)
    readers = d.files.readers
    assert readers is not None and readers._pool is None  # none before it starts
    d.store.open()
    try:
        d._start_threads()
        assert readers._preparing is not None  # starting, in the background
        readers._preparing.join(30)
        assert readers._pool is not None
    finally:
        d._shutdown(True)
    assert readers._pool is None  # stopped with the file workers
