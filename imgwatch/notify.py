"""Telling systemd how the daemon is doing: the sd_notify protocol.

The protocol is one datagram of `KEY=value` lines on the AF_UNIX socket named in
`$NOTIFY_SOCKET`. systemd-python's `daemon.notify` is used when it is installed;
otherwise the few lines below speak it directly. Without `$NOTIFY_SOCKET` (not
under systemd, or not `Type=notify`) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Sender = Callable[[str], bool]


def _systemd_sender() -> Sender | None:
    try:
        from systemd import daemon  # optional extra: imgwatch[systemd]
    except ImportError:
        return None
    notify: Sender = daemon.notify
    return notify


class PlainSender:
    """sd_notify in pure Python, for machines without systemd-python."""

    def __init__(self, address: str) -> None:
        # A leading '@' names a socket in the abstract namespace (a leading NUL byte).
        self.address = "\0" + address[1:] if address.startswith("@") else address

    def __call__(self, message: str) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(self.address)
            sock.sendall(message.encode("utf-8"))
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

    def __init__(
        self, env: Mapping[str, str] | None = None, *, prefer_systemd_python: bool = True
    ) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET")
        self.watchdog_interval = watchdog_interval(env)
        self._send: Sender | None = None
        if address:
            systemd_notify = _systemd_sender() if prefer_systemd_python else None
            self._send = systemd_notify or PlainSender(address)
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
            # A restarted or misconfigured manager must not take the daemon down with it.
            if not self._failed_once:
                log.warning("cannot notify systemd: %s", exc.strerror or exc)
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
