"""Throwaway servers for the test suite: a real MariaDB in a temp dir on loopback."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pymysql
from sqlalchemy.engine import URL

# Characters that break naive URL building: @ : / % ? # & = quotes, space and backslash.
HOSTILE_PASSWORD = "p@ss:w/rd%40?#&= 'q\"\\x"

# Every password the test servers hand out: whatever imgwatch prints is checked
# against these (tests/daemonproc.py), in every test that runs the daemon.
SECRETS: set[str] = {HOSTILE_PASSWORD}


class ServerUnavailable(Exception):
    """The server binaries are missing or it would not start."""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """count distinct free ports, bound all at once: one at a time, the kernel may
    hand out a port just closed again (a Galera node once got its SST port equal to
    its group port)."""
    sockets: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            ports.append(port)
        return ports
    finally:
        for s in sockets:
            s.close()


def _find(binary: str) -> str:
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if found is None:
        raise ServerUnavailable(f"{binary} not found (Debian package mariadb-server)")
    return found


class MariaDB:
    """A private mariadbd: own datadir, own socket, a random loopback port."""

    # Whom mariadbd runs as when the suite runs as root (it will not be root unasked).
    run_as = "root"

    def __init__(self, base: Path, *, durable: bool = False, buffer_pool: str = "64M") -> None:
        self.base = base
        # durable: MariaDB's default of flushing the log at every commit, as in
        # production (benchmarks); the tests trade that for speed.
        self.durable = durable
        # InnoDB's cache: small for the tests' many servers; a benchmark of a table of
        # a million rows gives it what a production server would, room for the table.
        self.buffer_pool = buffer_pool
        self.datadir = base / "data"
        self.socket = base / "mariadb.sock"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._counter = 0

    def start(self) -> None:
        self._mariadbd = _find("mariadbd")
        self.base.mkdir(parents=True, exist_ok=True)
        self.install()
        if not self.port:  # a node of a cluster has its ports already
            self.port = free_port()
        self._launch()

    def _user(self) -> list[str]:
        return [f"--user={self.run_as}"] if os.geteuid() == 0 else []

    def install(self) -> None:
        """A new datadir with the system tables; root has no password."""
        result = subprocess.run(
            [
                _find("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._user(),
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServerUnavailable("mariadb-install-db failed: " + result.stderr.decode()[-2000:])

    def options(self) -> list[str]:
        """mariadbd's command line after the program (--no-defaults first, as it must be)."""
        return [
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadbd.pid'}",
            "--skip-log-bin",
            f"--innodb-buffer-pool-size={self.buffer_pool}",
            # Tests need no durability across a power cut; this makes commits cheap.
            f"--innodb-flush-log-at-trx-commit={1 if self.durable else 2}",
            "--character-set-server=utf8mb4",
            *self._user(),
        ]

    def _launch(self) -> None:
        log = open(self.base / "mariadbd.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            [self._mariadbd, *self.options()], stdout=log, stderr=subprocess.STDOUT
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

    def halt(self) -> None:
        """Stop the server, keeping its data and port (the database is 'down')."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def resume(self) -> None:
        """Start the halted server again on the same port with the same data."""
        self._launch()

    def freeze(self) -> None:
        """Hang the server (SIGSTOP): connections stay open, nothing is answered, as
        with a frozen VM or a network that drops packets."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


WP_CONFIG = """<?php
define('DB_NAME', {db_name});
define('DB_USER', {db_user});
define('DB_PASSWORD', {db_password});
define('DB_HOST', {db_host});
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
$table_prefix = 'wp_';
define('WP_HOME', {home});
define('WP_SITEURL', {home});
define('WP_CONTENT_DIR', __DIR__ . '/wp-content');
define('WP_CONTENT_URL', {home} . '/wp-content');
define('WP_ENVIRONMENT_TYPE', 'local');
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_DEBUG', false);
define('FS_METHOD', 'direct');
{salts}
if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');
require_once ABSPATH . 'wp-settings.php';
"""

WP_INSTALL = """<?php
$_SERVER['HTTP_HOST'] = {host};
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
define('WP_INSTALLING', true);
function wp_new_blog_notification() {{}}
require_once __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
wp_install('imgwatch test', 'admin', 'admin@example.invalid', true, '', wp_generate_password(24));
update_option('permalink_structure', '/%postname%/');
$out = array();
foreach (array('uploader' => 'author', 'reader' => 'subscriber') as $login => $role) {{
    $id = wp_create_user($login, wp_generate_password(24), $login . '@example.invalid');
    (new WP_User($id))->set_role($role);
    list($pw, $item) = WP_Application_Passwords::create_new_application_password(
        $id, array('name' => 'imgwatch'));
    $out[$login] = $pw;
}}
echo json_encode($out);
"""

# Test-only behaviour of the throwaway site, in a must-use plugin.
WP_TEST_PLUGIN = """<?php
// A site that does not allow BMP uploads: WordPress answers 500 rest_upload_sideload_error.
add_filter('upload_mimes', function ($mimes) { unset($mimes['bmp']); return $mimes; });
// PHP dying during sub-size generation, once per attachment, for files named die-in-subsizes*:
// WordPress answers 500 with X-WP-Upload-Attachment-ID and the upload must be finished
// through the post-process endpoint.
add_filter('intermediate_image_sizes_advanced', function ($sizes, $meta, $id) {
    $file = basename((string) get_attached_file($id));
    if (strpos($file, 'die-in-subsizes') === 0 && !get_post_meta($id, '_died_once', true)) {
        update_post_meta($id, '_died_once', 1);
        http_response_code(500);
        echo 'simulated fatal error during sub-sizes';
        exit;
    }
    return $sizes;
}, 10, 3);
"""


def _php(value: str) -> str:
    """A PHP single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class WordPress:
    """A throwaway WordPress: Debian's copy in a temp dir, on the test MariaDB, `php -S`."""

    def __init__(self, base: Path, db: MariaDB) -> None:
        self.base = base
        self.root = base / "site"
        self.db = db
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.passwords: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def media_endpoint(self) -> str:
        return f"{self.url}/wp-json/wp/v2/media"

    def start(self) -> None:
        php = shutil.which("php")
        source = Path("/usr/share/wordpress")
        if php is None or not (source / "wp-settings.php").exists():
            raise ServerUnavailable("php or WordPress missing (Debian wordpress php-cli)")
        self.base.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, self.root, symlinks=False, ignore=shutil.ignore_patterns(".ht*"))
        (self.root / "wp-content" / "uploads").mkdir(parents=True, exist_ok=True)
        (self.root / "wp-content" / "mu-plugins").mkdir(exist_ok=True)
        (self.root / "wp-content" / "mu-plugins" / "imgwatch-test.php").write_text(WP_TEST_PLUGIN)
        self.port = free_port()
        db_url = self.db.create_database(password="wp-db-" + os.urandom(6).hex())
        salts = "\n".join(
            f"define('{k}', '{os.urandom(24).hex()}');"
            for k in [
                "AUTH_KEY",
                "SECURE_AUTH_KEY",
                "LOGGED_IN_KEY",
                "NONCE_KEY",
                "AUTH_SALT",
                "SECURE_AUTH_SALT",
                "LOGGED_IN_SALT",
                "NONCE_SALT",
            ]
        )
        (self.root / "wp-config.php").write_text(
            WP_CONFIG.format(
                db_name=_php(str(db_url.database)),
                db_user=_php(str(db_url.username)),
                db_password=_php(str(db_url.password)),
                db_host=_php(f"127.0.0.1:{self.db.port}"),
                home=_php(self.url),
                salts=salts,
            )
        )
        (self.root / "imgwatch-install.php").write_text(
            WP_INSTALL.format(host=_php(f"127.0.0.1:{self.port}"))
        )
        result = subprocess.run(
            [php, "imgwatch-install.php"],
            cwd=self.root,
            capture_output=True,
            timeout=300,
            check=False,
        )
        (self.root / "imgwatch-install.php").unlink()
        out = result.stdout.decode(errors="replace")
        try:
            self.passwords = json.loads(out[out.index("{") :])
            SECRETS.update(self.passwords.values())
        except ValueError:
            raise ServerUnavailable(
                f"WordPress install failed: {out[-1500:]} {result.stderr.decode()[-1500:]}"
            ) from None
        self.serve()

    def serve(self) -> None:
        """Start (or restart) `php -S` on the same port."""
        php = shutil.which("php") or "php"
        log = open(self.base / "php-server.log", "ab")  # noqa: SIM115 - lives with the server
        self.process = subprocess.Popen(
            [
                php,
                "-d",
                "post_max_size=256M",
                "-d",
                "memory_limit=512M",
                "-S",
                f"127.0.0.1:{self.port}",
                "-t",
                str(self.root),
            ],
            cwd=self.root,
            env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"},
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: the forked workers must stop with it.
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable("php -S exited: " + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise ServerUnavailable("php -S did not listen in time")

    def halt(self) -> None:
        """Stop serving (WordPress is 'down'); serve() brings it back."""
        if self.process is not None:
            # The workers are children of the main php process; end the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._wait_port_closed()
        self.process = None

    def _wait_port_closed(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.05)
            except OSError:
                return

    def log_tail(self) -> str:
        path = self.base / "php-server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def api(self, route: str, **params: str) -> Any:
        """GET a REST route as the uploader; returns (json, headers)."""
        query = urlencode({"rest_route": route, **params})
        auth = base64.b64encode(f"uploader:{self.passwords['uploader']}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/?{query}", headers={"Authorization": f"Basic {auth}"}
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read()), dict(resp.headers)

    def media_count(self) -> int:
        _, headers = self.api("/wp/v2/media", per_page="1", context="edit")
        return int(headers["X-WP-Total"])

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.base, ignore_errors=True)
