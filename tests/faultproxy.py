"""An HTTP proxy in front of the test WordPress that can be told to misbehave.

Modes, each what a real site or the server in front of it does on a bad day:
"pass" forwards; "drop" closes the connection without an answer; "slow" forwards,
then holds the answer past the client's read timeout (the upload may well have
landed); "error" answers 500 without forwarding (WordPress broken); "html200" a
maintenance or cache page (200, text/html); "html403" a firewall's page;
"json401" WordPress refusing the Application Password; "html404" no REST API at
that address; "redirect301" and "redirect302" to `redirect_to` (a moved site).
`refuse()` closes the listening socket (connection refused) until `accept()`.
`body_limit` makes it answer 413 to larger request bodies, as nginx's
client_max_body_size does.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy  # set on the subclass each proxy makes

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self, status: int, payload: bytes, content_type: str, **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self) -> None:
        proxy = self.proxy
        proxy.requests += 1
        proxy.seen.append((self.command, self.path, "Authorization" in self.headers))
        proxy.connections.add(self.connection)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        mode = proxy.mode
        if mode == "drop":
            self.close_connection = True
            self.connection.close()
            return
        canned = CANNED.get(mode)
        if canned is not None:
            self._answer(*canned)
        elif mode.startswith("redirect"):
            target = proxy.redirect_to + self.path
            self._answer(int(mode[-3:]), b"", "text/html", Location=target)
        elif proxy.body_limit is not None and length > proxy.body_limit:
            self._answer(413, PAGE_413, "text/html")
        else:
            self._forward(body, slow=mode == "slow")

    def _forward(self, body: bytes, *, slow: bool) -> None:
        status, headers, answer = self.proxy.forward(self.command, self.path, self.headers, body)
        if slow:
            time.sleep(self.proxy.slow_seconds)
        try:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass  # the client gave up waiting (slow mode): that is the point

    do_GET = do_POST = do_DELETE = do_PUT = _handle  # noqa: N815 - http.server names


class FaultProxy:
    def __init__(self, upstream: str, slow_seconds: float = 3.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.mode = "pass"
        self.slow_seconds = slow_seconds
        self.requests = 0
        self.redirect_to = ""
        self.body_limit: int | None = None
        # (method, path, whether an Authorization header came) of every request.
        self.seen: list[tuple[str, str, bool]] = []
        self.connections: set[socket.socket] = set()
        self._handler = type("Handler", (_Handler,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._serve()

    def _serve(self) -> None:
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(self) -> None:
        """Stop listening and cut the open connections: new ones are refused, as with
        a site that is down."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.connections.clear()

    def accept(self) -> None:
        """Listen again on the same port."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._serve()

    def forward(
        self, method: str, path: str, headers: object, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            out = {
                k: v
                for k, v in headers.items()  # type: ignore[attr-defined]
                if k.lower() not in HOP_BY_HOP | {"host"}
            }
            out["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(method, path, body=body, headers=out)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


PAGE_413 = b"<html><head><title>413 Request Entity Too Large</title></head></html>"
# What each canned mode answers: status, body, Content-Type.
CANNED: dict[str, tuple[int, bytes, str]] = {
    "error": (500, b'{"code":"internal_server_error","message":"broken"}', "application/json"),
    "html200": (
        200,
        b"<html><h1>Briefly unavailable for scheduled maintenance</h1></html>",
        "text/html",
    ),
    "html403": (
        403,
        b"<html><h1>403 Forbidden</h1>Request blocked by firewall</html>",
        "text/html",
    ),
    "json401": (
        401,
        b'{"code":"rest_not_logged_in","message":"You are not currently logged in.",'
        b'"data":{"status":401}}',
        "application/json; charset=UTF-8",
    ),
    "html404": (404, b"<html><h1>Not Found</h1></html>", "text/html"),
}
