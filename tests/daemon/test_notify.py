"""sd_notify: datagrams on a socket bound by the test, with and without systemd-python."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgwatch import logsetup
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


def test_journald_only_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert logsetup.stderr_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logsetup.stderr_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:1"})
        assert not logsetup.stderr_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
        assert not logsetup.stderr_is_journal(stream, {})


def test_handler_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logsetup, "stderr_is_journal", lambda: False)
    plain = logsetup.choose_handler()
    assert isinstance(plain, logging.StreamHandler) and plain.stream is sys.stderr
    monkeypatch.setattr(logsetup, "stderr_is_journal", lambda: True)
    journal = logsetup.choose_handler()
    systemd_python = logsetup.journal_handler() is not None
    assert isinstance(journal, logging.StreamHandler) != systemd_python
    if systemd_python:
        assert type(journal).__name__ == "JournalHandler"
