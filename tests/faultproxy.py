"""An HTTP proxy in front of the test WordPress that can be told to misbehave.

Modes: "pass" forwards; "drop" closes the connection without an answer (the
site is unreachable); "slow" forwards, then holds the answer past the client's
read timeout (the upload may well have landed); "error" answers 500 without
forwarding (WordPress broken).
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class FaultProxy:
    def __init__(self, upstream: str, slow_seconds: float = 3.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.mode = "pass"
        self.slow_seconds = slow_seconds
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "error":
                    payload = b'{"code":"internal_server_error","message":"broken"}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, answer = proxy.forward(self.command, self.path, self.headers, body)
                if mode == "slow":
                    time.sleep(proxy.slow_seconds)
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

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
