"""Throwaway servers for the test suite: a real MariaDB in a temp dir on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pymysql
from sqlalchemy.engine import URL

# Characters that break naive URL building: @ : / % ? # & = quotes, space and backslash.
HOSTILE_PASSWORD = "p@ss:w/rd%40?#&= 'q\"\\x"


class ServerUnavailable(Exception):
    """The server binaries are missing or it would not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _find(binary: str) -> str:
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if found is None:
        raise ServerUnavailable(f"{binary} not found (Debian package mariadb-server)")
    return found


class MariaDB:
    """A private mariadbd: own datadir, own socket, a random loopback port."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.socket = base / "mariadb.sock"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._counter = 0

    def start(self) -> None:
        install_db = _find("mariadb-install-db")
        mariadbd = _find("mariadbd")
        user = ["--user=root"] if os.geteuid() == 0 else []
        self.base.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user,
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServerUnavailable("mariadb-install-db failed: " + result.stderr.decode()[-2000:])
        self.port = free_port()
        log = open(self.base / "mariadbd.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mariadbd.pid'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                # Tests need no durability across a power cut; this makes commits cheap.
                "--innodb-flush-log-at-trx-commit=2",
                "--character-set-server=utf8mb4",
                *user,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerUnavailable("mariadbd exited: " + self.log_tail())
            # Probe with a plain socket first: a failed pymysql connect leaks its socket.
            if self._socket_accepts():
                self.admin().close()
                return
            time.sleep(0.2)
        raise ServerUnavailable("mariadbd did not answer in time: " + self.log_tail())

    def _socket_accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
            return True

    def log_tail(self) -> str:
        path = self.base / "mariadbd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def admin(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def create_database(self, password: str = HOSTILE_PASSWORD) -> URL:
        """A fresh database and a user that may use only it; returns its URL."""
        self._counter += 1
        name = f"imgwatch_t{self._counter}"
        user = f"u{self._counter}"
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
                cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
                cur.execute(f"GRANT ALL ON {name}.* TO '{user}'@'127.0.0.1'")
        finally:
            conn.close()
        return URL.create(
            "mysql+pymysql",
            username=user,
            password=password,
            host="127.0.0.1",
            port=self.port,
            database=name,
            query={"charset": "utf8mb4"},
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)
