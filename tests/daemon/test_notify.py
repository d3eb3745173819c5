"""sd_notify: datagrams on a socket bound by the test, with and without systemd-python."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgwatch.daemon.notify import Notifier, PlainSender, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_messages_arrive(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("watching")
    n.status("3 queued")
    n.status("3 queued")  # unchanged: not sent again
    n.watchdog()
    n.stopping("bye")
    got = [sock.recv(4096).decode() for _ in range(4)]
    assert got == [
        "READY=1\nSTATUS=watching",
        "STATUS=3 queued",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=bye",
    ]


def test_abstract_namespace_socket() -> None:
    name = f"imgwatch-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert PlainSender("@" + name)("READY=1")
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    n.ready("x")  # no error, nothing to send to


def test_a_dead_socket_is_reported_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    for _ in range(3):
        n.watchdog()
    assert caplog.text.count("cannot notify systemd") == 1


def test_a_manager_that_stops_reading_never_blocks_the_daemon(
    listener: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    path, sock = listener  # bound, never read: its queue fills up
    n = Notifier({"NOTIFY_SOCKET": path})

    def flood() -> None:
        for i in range(3000):
            n.status(f"{i} queued")

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    sender.join(20)
    assert not sender.is_alive(), "a notification blocked"
    assert caplog.text.count("cannot notify systemd") == 1
    assert sock.recv(4096) == b"STATUS=0 queued"  # what fit was sent


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    )
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_interval({}) is None
