"""Where log lines go (logsetup.py): journald under systemd, else stderr with timestamps."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from imgwatch import logsetup

TIMESTAMPED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<rest>.*)")


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, its handlers and levels put back after the test."""
    root = logging.getLogger()
    watchdog = logging.getLogger("watchdog")
    handlers, level, watchdog_level = list(root.handlers), root.level, watchdog.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    watchdog.setLevel(watchdog_level)


@pytest.fixture
def stderr_file(tmp_path: Path) -> Iterator[IO[str]]:
    """A file for stderr, as systemd connects stderr to journald's stream."""
    with open(tmp_path / "stderr", "w") as stream:
        yield stream


def as_stderr(stream: IO[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # In the test itself: pytest sets its own sys.stderr again once setup is over.
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stream))


def journal_stream_of(stream: IO[str]) -> str:
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def line(handler: logging.Handler, level: int, message: str) -> str:
    record = logging.LogRecord("imgwatch.test", level, __file__, 1, message, None, None)
    return handler.format(record)


LOG_A_LINE = (
    "import logging; from imgwatch.logsetup import configure_logging; "
    "configure_logging({level!r}); log = logging.getLogger('imgwatch.x'); "
    "log.info('recorded %r', 'a.jpg'); log.debug('not shown'); "
    "logging.getLogger('watchdog').info('chatter')"
)


def test_outside_systemd_each_line_has_its_time_and_level_on_stderr() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOG_A_LINE.format(level="INFO")],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
    )
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    match = TIMESTAMPED.fullmatch(lines[0])
    assert match is not None and match["rest"] == "INFO recorded 'a.jpg'"


def test_a_stderr_redirected_away_from_the_journal_keeps_its_timestamps(
    tmp_path: Path,
) -> None:
    # A wrapper in the unit sent stderr elsewhere: JOURNAL_STREAM names another stream.
    other = tmp_path / "journal-stream"
    other.write_text("")
    st = other.stat()
    with open(tmp_path / "wrapped.log", "w") as stderr:
        subprocess.run(
            [sys.executable, "-c", LOG_A_LINE.format(level="INFO")],
            stderr=stderr,
            check=True,
            env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
        )
    (only,) = (tmp_path / "wrapped.log").read_text().splitlines()
    assert TIMESTAMPED.fullmatch(only) is not None


def test_under_systemd_records_go_to_journald_with_the_identifier(
    stderr_file: IO[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("systemd.journal")  # the optional extra imgwatch[systemd]
    as_stderr(stderr_file, monkeypatch)
    handler = logsetup.choose_handler()
    assert type(handler).__name__ == "JournalHandler"
    sent: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    # journald's socket stands in for the journal: what the handler would send it.
    def journal(*message: Any, **fields: Any) -> None:
        sent.append((message, fields))

    handler.send = journal  # type: ignore[attr-defined]
    handler.handle(
        logging.LogRecord("imgwatch.x", logging.WARNING, __file__, 1, "hi %s", ("you",), None)
    )
    (((message,), fields),) = sent
    assert message == "hi you"  # journald adds time and priority itself
    assert fields["SYSLOG_IDENTIFIER"] == "imgwatch"
    assert fields["PRIORITY"] == "4"  # warning
    assert stderr_file.tell() == 0


def test_under_systemd_without_the_journal_module_plain_lines_have_no_timestamp(
    stderr_file: IO[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_stderr(stderr_file, monkeypatch)
    # As if imgwatch[systemd] were not installed: the import fails.
    monkeypatch.setitem(sys.modules, "systemd.journal", None)
    assert logsetup.journal_handler() is None
    handler = logsetup.choose_handler()
    assert isinstance(handler, logging.StreamHandler) and handler.stream is stderr_file
    assert line(handler, logging.WARNING, "uploads paused") == "WARNING uploads paused"


def test_a_stream_without_a_file_is_not_the_journal() -> None:
    assert not logsetup.stderr_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_configuring_replaces_every_handler_with_one(
    root_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root_logging.addHandler(logging.NullHandler())
    logsetup.configure_logging("WARNING")
    logsetup.configure_logging("WARNING")  # again, as the command line does once settings load
    (handler,) = root_logging.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    assert root_logging.level == logging.WARNING
    match = TIMESTAMPED.fullmatch(line(handler, logging.ERROR, "database unreachable"))
    assert match is not None and match["rest"] == "ERROR database unreachable"


@pytest.mark.parametrize(
    ("level", "watchdog"),
    [("DEBUG", logging.WARNING), ("INFO", logging.WARNING), ("ERROR", logging.ERROR)],
)
def test_watchdog_says_only_warnings_whatever_imgwatch_s_level(
    root_logging: logging.Logger, level: str, watchdog: int
) -> None:
    logsetup.configure_logging(level)
    assert root_logging.level == logging.getLevelName(level)
    assert logging.getLogger("watchdog").level == watchdog


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
