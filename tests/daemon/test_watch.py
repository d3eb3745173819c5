"""The watcher's pieces: event mapping, the handler that cannot die, fs detection, limits."""

from __future__ import annotations

import errno
import logging
import queue
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)
from watchdog.observers.inotify import InotifyObserver

from imgwatch.daemon.watch import (
    Change,
    ForwardingHandler,
    OverflowSignal,
    Watcher,
    filesystem_type,
    wants_polling,
)
from imgwatch.errors import ConfigError


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (FileCreatedEvent("/i/a.jpg"), Change("created", "/i/a.jpg")),
        (FileModifiedEvent("/i/a.jpg"), Change("written", "/i/a.jpg")),
        (FileClosedEvent("/i/a.jpg"), Change("closed", "/i/a.jpg")),
        (FileDeletedEvent("/i/a.jpg"), Change("deleted", "/i/a.jpg")),
        (FileMovedEvent("/i/a.jpg", "/i/b.jpg"), Change("moved", "/i/a.jpg", "/i/b.jpg")),
        (DirCreatedEvent("/i/d"), Change("dir_created", "/i/d")),
        (DirMovedEvent("/i/d", "/i/e"), Change("dir_moved", "/i/d", "/i/e")),
        (DirModifiedEvent("/i/d"), None),
        (FileOpenedEvent("/i/a.jpg"), None),
        (FileClosedNoWriteEvent("/i/a.jpg"), None),
    ],
)
def test_events_become_changes(event: FileSystemEvent, expected: Change | None) -> None:
    inbox: queue.Queue[Change] = queue.Queue()
    ForwardingHandler(inbox).dispatch(event)
    assert (inbox.get_nowait() if not inbox.empty() else None) == expected


def test_watchdogs_own_events_for_a_directorys_files_are_dropped() -> None:
    # watchdog walks a directory moved in (or moved) and makes an event per file; the
    # daemon walks it itself (routing: _scan_dir), so these would only repeat it.
    inbox: queue.Queue[Change] = queue.Queue()
    handler = ForwardingHandler(inbox)
    handler.dispatch(FileCreatedEvent("/i/d/a.jpg", is_synthetic=True))
    handler.dispatch(DirCreatedEvent("/i/d/e", is_synthetic=True))
    handler.dispatch(FileMovedEvent("/i/d/a.jpg", "/i/f/a.jpg", is_synthetic=True))
    assert inbox.empty()
    handler.dispatch(DirCreatedEvent("/i/d"))  # the kernel's own: the directory itself
    assert inbox.get_nowait() == Change("dir_created", "/i/d")


def test_bytes_paths_are_decoded_losslessly() -> None:
    inbox: queue.Queue[Change] = queue.Queue()
    ForwardingHandler(inbox).dispatch(FileCreatedEvent(b"/i/caf\xe9.jpg"))
    change = inbox.get_nowait()
    assert change.path.encode("utf-8", "surrogateescape") == b"/i/caf\xe9.jpg"


def test_the_handler_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenQueue(queue.Queue[Change]):
        def put_nowait(self, item: Change) -> None:
            raise RuntimeError("boom")

    ForwardingHandler(BrokenQueue()).dispatch(FileCreatedEvent("/i/a.jpg"))  # must not raise
    assert "internal error handling a file event" in caplog.text


def test_a_full_queue_drops_and_flags_instead_of_blocking() -> None:
    inbox: queue.Queue[Change] = queue.Queue(maxsize=2)
    handler = ForwardingHandler(inbox)
    for i in range(5):
        handler.dispatch(FileCreatedEvent(f"/i/{i}.jpg"))
    assert inbox.qsize() == 2
    assert handler.lost.is_set()


def test_watchdogs_overflow_warning_flags_lost_events() -> None:
    handler = ForwardingHandler(queue.Queue())
    signal = OverflowSignal(handler)
    logger = logging.getLogger("watchdog.observers.inotify_c")
    logger.addHandler(signal)
    try:
        logger.warning("Inotify queue overflowed; filesystem events were lost")
    finally:
        logger.removeHandler(signal)
    assert handler.lost.is_set()


def test_filesystem_type_from_the_longest_mount_point(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "rootfs / ext4 rw 0 0\n"
        "server:/export /mnt/photos nfs4 rw 0 0\n"
        "sshfs#x /mnt/photos/remote fuse.sshfs rw 0 0\n"
        "x /mnt/with\\040space cifs rw 0 0\n"
    )
    assert filesystem_type(Path("/mnt/photos/2026"), str(mounts)) == "nfs4"
    assert filesystem_type(Path("/mnt/photos/remote/a"), str(mounts)) == "fuse.sshfs"
    assert filesystem_type(Path("/mnt/photosx"), str(mounts)) == "ext4"
    assert filesystem_type(Path("/mnt/with space/a"), str(mounts)) == "cifs"


def test_polling_is_chosen_for_network_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wants_polling("polling", tmp_path)
    assert not wants_polling("inotify", tmp_path)
    monkeypatch.setattr("imgwatch.daemon.watch.filesystem_type", lambda _p: "nfs4")
    assert wants_polling("auto", tmp_path)
    monkeypatch.setattr("imgwatch.daemon.watch.filesystem_type", lambda _p: "fuse.sshfs")
    assert wants_polling("auto", tmp_path)
    monkeypatch.setattr("imgwatch.daemon.watch.filesystem_type", lambda _p: "ext4")
    assert not wants_polling("auto", tmp_path)


@pytest.mark.parametrize(
    ("code", "sysctl"),
    [(errno.ENOSPC, "fs.inotify.max_user_watches"), (errno.EMFILE, "max_user_instances")],
)
def test_inotify_limits_are_configuration_errors_naming_the_sysctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, sysctl: str
) -> None:
    # The kernel limit cannot be lowered from an unprivileged test; the error watchdog
    # raises when it is reached is reproduced instead.
    def start(_self: InotifyObserver) -> None:
        raise OSError(code, "inotify limit reached")

    monkeypatch.setattr(InotifyObserver, "start", start)
    watcher = Watcher(tmp_path, queue.Queue(), polling=False, poll_interval=1)
    with pytest.raises(ConfigError, match=sysctl):
        watcher.start()


def test_a_real_watcher_reports_and_restarts(tmp_path: Path) -> None:
    inbox: queue.Queue[Change] = queue.Queue()
    watcher = Watcher(tmp_path, inbox, polling=False, poll_interval=1)
    watcher.start()
    try:
        assert watcher.alive()
        (tmp_path / "a.jpg").write_bytes(b"x")
        kinds = set()
        while "closed" not in kinds:
            kinds.add(inbox.get(timeout=5).kind)
        assert {"created", "closed"} <= kinds
        watcher.stop()
        assert not watcher.alive()
        watcher.start()
        assert watcher.alive()
    finally:
        watcher.stop()


def test_reading_files_makes_no_events(tmp_path: Path) -> None:
    # The daemon reads every file it records: were opens watched, each read would
    # come back as events to route.
    (tmp_path / "old.jpg").write_bytes(b"x" * 100)
    inbox: queue.Queue[Change] = queue.Queue()
    watcher = Watcher(tmp_path, inbox, polling=False, poll_interval=1)
    watcher.start()
    try:
        for _ in range(20):
            (tmp_path / "old.jpg").read_bytes()
        (tmp_path / "new.jpg").write_bytes(b"y")
        seen: list[Change] = []
        while not seen or seen[-1] != Change("closed", str(tmp_path / "new.jpg")):
            seen.append(inbox.get(timeout=5))
    finally:
        watcher.stop()
    assert all(c.path.endswith("new.jpg") for c in seen), seen


def test_moves_across_the_tree_edge_say_which_side_they_came_from(tmp_path: Path) -> None:
    # A directory moved in from outside is known to be complete (it is read whole,
    # daemon/arrivals.py), unlike one made in place, which files are then written into.
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    tree.mkdir()
    (outside / "card").mkdir(parents=True)
    (outside / "card" / "a.jpg").write_bytes(b"x")
    (tree / "old.jpg").write_bytes(b"y")
    inbox: queue.Queue[Change] = queue.Queue()
    watcher = Watcher(tree, inbox, polling=False, poll_interval=1)
    watcher.start()
    try:
        (outside / "card").rename(tree / "card")
        (tree / "made").mkdir()
        (tree / "old.jpg").rename(outside / "old.jpg")
        seen: list[Change] = []
        while len(seen) < 3:
            seen.append(inbox.get(timeout=5))
    finally:
        watcher.stop()
    assert seen == [
        Change("dir_moved", "", str(tree / "card")),
        Change("dir_created", str(tree / "made")),
        Change("moved", str(tree / "old.jpg"), ""),
    ]
