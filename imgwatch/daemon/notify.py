"""Telling systemd how the daemon is doing: the sd_notify protocol.

The protocol is one datagram of `KEY=value` lines on the AF_UNIX socket named in
`$NOTIFY_SOCKET`; the few lines below speak it. Without `$NOTIFY_SOCKET` (not
under systemd, or not `Type=notify`) every call is a no-op.

Not systemd-python's `daemon.notify`: libsystemd's sd_notify sends in blocking
mode, so a manager that stops reading (its queue full) would stall the daemon's
main loop, and with it the shutdown. A status line is worth less than that: here
it is sent without waiting, and dropped when it cannot go.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Sender = Callable[[str], bool]


class PlainSender:
    """sd_notify in pure Python, never blocking: OSError (EAGAIN) when the queue is full."""

    def __init__(self, address: str) -> None:
        # A leading '@' names a socket in the abstract namespace (a leading NUL byte).
        self.address = "\0" + address[1:] if address.startswith("@") else address

    def __call__(self, message: str) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(self.address)
            sock.send(message.encode("utf-8"), socket.MSG_DONTWAIT)
        return True


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None if not asked for."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """READY/STATUS/WATCHDOG/STOPPING for systemd; never raises."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET")
        self.watchdog_interval = watchdog_interval(env)
        self._send: Sender | None = None
        if address:
            self._send = PlainSender(address)
        self._last_status = ""
        self._failed_once = False

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, message: str) -> None:
        if self._send is None:
            return
        try:
            self._send(message)
        except OSError as exc:
            # A restarted, busy or misconfigured manager must not take the daemon down
            # with it; a full queue (EAGAIN) drops this message only.
            if not self._failed_once:
                log.warning("cannot notify systemd (messages dropped): %s", exc.strerror or exc)
                self._failed_once = True

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """STATUS= line, sent only when it changed."""
        status = status.replace("\n", " ")
        if status != self._last_status:
            self._last_status = status
            self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.notify(f"STOPPING=1\nSTATUS={status}")
