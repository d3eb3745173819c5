"""Where log lines go: journald with structured fields under systemd, stderr otherwise.

systemd sets `$JOURNAL_STREAM` to the device:inode of the stream it connected to
stderr. Only when stderr still is that stream (not redirected by a wrapper) are
records sent to journald directly; plain lines then carry no timestamp, since
journald adds its own.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

IDENTIFIER = "imgwatch"


def stderr_is_journal(stream: IO[str] | None = None, env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    stream = sys.stderr if stream is None else stream
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def journal_handler() -> logging.Handler | None:
    try:
        from systemd.journal import JournalHandler  # optional extra: imgwatch[systemd]
    except ImportError:
        return None
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)
    return handler


def choose_handler() -> logging.Handler:
    if stderr_is_journal():
        handler = journal_handler()
        if handler is not None:
            handler.setFormatter(logging.Formatter("%(message)s"))
            return handler
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        return plain
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return plain


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(choose_handler())
    root.setLevel(level)
    # watchdog's own chatter is for its developers; its overflow warning is caught
    # by the daemon (see watcher.OverflowSignal), which logs its own line.
    logging.getLogger("watchdog").setLevel(max(logging.getLevelName(level), logging.WARNING))
