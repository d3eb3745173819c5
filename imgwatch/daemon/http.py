"""The daemon's optional HTTP listener (IMGWATCH_METRICS_LISTEN, off by default).

    GET /metrics   Prometheus text format (daemon/metrics.py)
    GET /          {"status": "Server is running"} with 200 while healthy, as the
    GET /healthz   original service answered; 503 and the reason otherwise

Healthy means: the image directory is watched and the database answers (asked
at most every DB_CHECK_EVERY seconds, so that a load balancer polling often does
not become the database's busiest client).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from imgwatch.errors import ConfigError

log = logging.getLogger(__name__)

DB_CHECK_EVERY = 5.0
HEALTHY = {"status": "Server is running"}

# What is wrong, or None: given by the daemon.
Trouble = Callable[[], str | None]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up the daemon's exit
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # a client that connects and says nothing does not keep a thread

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the daemon's own log


class Listener:
    def __init__(self, host: str, port: int, registry: Any, trouble: Trouble) -> None:
        self.trouble = trouble
        self._metrics_app = make_wsgi_app(registry)
        try:
            self.server = make_server(
                host,
                port,
                self._app,
                server_class=_Server6 if ":" in host else _Server,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} (IMGWATCH_METRICS_LISTEN): {exc.strerror}"
            ) from None
        self.port = self.server.server_port
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="listener", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health checks on http://%s/", _shown(self.server))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path not in ("/", "/healthz"):
            return _json(start_response, "404 Not Found", {"error": "not found"})
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, "405 Method Not Allowed", {"error": "GET only"})
        try:
            problem = self.trouble()
        except Exception as exc:  # noqa: BLE001 - a health check answers, whatever broke
            problem = f"health check failed: {type(exc).__name__}"
        if problem is None:
            return _json(start_response, "200 OK", HEALTHY)
        return _json(
            start_response, "503 Service Unavailable", {"status": "unhealthy", "reason": problem}
        )


def _json(start_response: Callable[..., Any], status: str, body: dict[str, str]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


def _shown(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class DatabaseCheck:
    """Whether the database answers, asked at most every DB_CHECK_EVERY seconds."""

    def __init__(
        self, ping: Callable[[], str | None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ping = ping
        self.clock = clock
        self._lock = threading.Lock()
        self._asked = -DB_CHECK_EVERY
        self._answer: str | None = None

    def __call__(self) -> str | None:
        # One ping at a time; meanwhile (a database that hangs rather than refuses)
        # the others get the answer before it, rather than queueing behind it.
        if not self._lock.acquire(blocking=False):
            return self._answer
        try:
            now = self.clock()
            if now - self._asked >= DB_CHECK_EVERY:
                self._answer = self.ping()
                self._asked = self.clock()
            return self._answer
        finally:
            self._lock.release()
