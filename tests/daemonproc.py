"""The daemon as a real process, with a fake systemd notify socket to listen on."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from imgwatch.model import Status
from tests.rows import all_rows
from tests.runner import mysql_env
from tests.servers import SECRETS, WordPress
from tests.wordpress.test_uploader import wp_env

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until predicate() is truthy; its value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class DaemonProcess:
    """`python -m imgwatch` with NOTIFY_SOCKET bound here; stderr goes to a log file."""

    def __init__(
        self, workdir: Path, env: dict[str, str], *args: str, wrapper: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        sock_path = workdir / f"notify-{time.monotonic_ns()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        # Read all along, as systemd does: the daemon drops what cannot be queued.
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_all_along, daemon=True)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMGWATCH_")}
        full_env.update({"NOTIFY_SOCKET": str(sock_path), "IMGWATCH_QUIET_PERIOD": "0.3"})
        full_env.update(env)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "imgwatch", *args],
            env=full_env,
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader.start()

    # --- what it says ---------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def wait_log(self, pattern: str, timeout: float = 30.0) -> None:
        wait_for(lambda: re.search(pattern, self.log()), timeout, f"log line {pattern!r}")

    def _read_all_along(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            with self._lock:
                self.messages.append(data.decode())

    def _read_notifications(self) -> None:
        """Let what was sent so far arrive (the reader thread takes it in)."""
        time.sleep(0.01)

    def all_messages(self) -> list[str]:
        self._read_notifications()
        with self._lock:
            return list(self.messages)

    def notified(self, line: str) -> bool:
        return any(line in message.splitlines() for message in self.all_messages())

    def wait_notified(self, line: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited ({self.process.returncode}):\n{self.log()}")
            return self.notified(line)

        wait_for(seen, timeout, f"notification {line!r}")

    def wait_started(self) -> None:
        """READY=1 and the startup reconcile finished."""
        self.wait_notified("READY=1")
        self.check_process_title()
        self.wait_log(r"startup reconcile: ")

    # --- stopping -------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        finally:
            self.close()
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        if self.sock.fileno() != -1:
            self._read_notifications()  # what it said on the way out
            self.sock.close()
            self._reader.join()
        assert_no_secrets(self.log() + "\n".join(self.messages), f"daemon log {self.log_path}")

    def check_process_title(self) -> None:
        """What `ps` shows of the running daemon carries no password."""
        cmdline = Path(f"/proc/{self.process.pid}/cmdline").read_bytes().decode(errors="replace")
        assert_no_secrets(cmdline, "the command line")

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assert_no_secrets(text: str, where: str) -> None:
    """No test password, plain or URL-encoded, in text."""
    for secret in SECRETS:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            assert form not in text, f"a password appears in {where}"


def rows_by_name(db: URL) -> dict[str, dict[str, Any]]:
    store = ImageStore(db)
    try:
        return {row["file_name"]: row for row in all_rows(store)}
    finally:
        store.close()


def wait_rows(
    db: URL, check: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Rows once check(rows) holds."""
    latest: dict[str, dict[str, Any]] = {}

    def ready() -> bool:
        nonlocal latest
        try:
            latest = rows_by_name(db)
        except Exception:  # noqa: BLE001 - the table may not exist yet
            return False
        return check(latest)

    try:
        wait_for(ready, timeout, "rows")
    except AssertionError:
        raise AssertionError(f"rows never matched; last seen: {sorted(latest)}") from None
    assert_no_secrets(repr(latest), "the images table")  # last_error above all
    return latest


# --- starting one, as the tests do ------------------------------------------------------


def db_env(url: URL) -> dict[str, str]:
    if url.get_backend_name() == "sqlite":
        return {"IMGWATCH_DB_URL": url.render_as_string(hide_password=False)}
    return mysql_env(url)  # the original service's discrete settings


def daemon_env(image_dir: Path, db: URL, **settings: str) -> dict[str, str]:
    """The environment a daemon is started with: IMGWATCH_* for the dir, db and settings."""
    env = {"IMGWATCH_IMAGE_DIR": str(image_dir), **db_env(db)}
    env.update({f"IMGWATCH_{k.upper()}": v for k, v in settings.items()})
    return env


def start(tmp_path: Path, image_dir: Path, db: URL, **settings: str) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path / "run", daemon_env(image_dir, db, **settings))
    daemon.wait_started()
    return daemon


def all_done(names: set[str]) -> Callable[[dict[str, dict[str, Any]]], bool]:
    """A wait_rows check: every one of names has a `done` row."""
    return lambda rows: names <= {n for n, r in rows.items() if r["status"] == Status.DONE}


def wp_settings(site: WordPress) -> dict[str, str]:
    return {k.removeprefix("IMGWATCH_").lower(): v for k, v in wp_env(site).items()}
