"""A real HTTP server on 127.0.0.1, in a thread, for outbound-HTTP tests: it fails, stalls and redirects on command.

    with Upstream() as up:
        up.url("/ok")                 # 200 "hello"
        up.failing = True             # /flaky answers 503 until set back
        up.hits["/flaky"]             # requests seen per path

Paths: ``/ok``; ``/echo`` (method, headers and body back as JSON);
``/big?n=N`` (N bytes of "x"); ``/binary`` (bytes that are not UTF-8);
``/status?code=N``; ``/flaky`` (503 while ``failing`` or for the next
``fail_next`` requests, else 200); ``/loop`` (a redirect to itself);
``/stall`` (waits until the test ends, or ``release()``, before answering);
``/redirect?to=URL&code=302``.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        owner = self.server.owner
        with owner.lock:
            owner.hits[parts.path] += 1
            owner.methods.append((self.command, parts.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts.path == "/ok":
            self._answer(200, b"hello", {"Content-Type": "text/plain", "X-Upstream": "yes"})
        elif parts.path == "/echo":
            seen = {"method": self.command, "headers": dict(self.headers.items()), "body": body.decode("latin-1")}
            self._answer(200, json.dumps(seen).encode(), {"Content-Type": "application/json"})
        elif parts.path == "/big":
            self._answer(200, b"x" * int(query.get("n", "0")))
        elif parts.path == "/binary":
            self._answer(200, b"\xff\xfe\x00\x01")
        elif parts.path == "/status":
            self._answer(int(query.get("code", "200")), b"status")
        elif parts.path == "/flaky":
            with owner.lock:
                fail = owner.failing or owner.fail_next > 0
                owner.fail_next = max(0, owner.fail_next - 1)
            self._answer(503, b"down") if fail else self._answer(200, b"up")
        elif parts.path == "/loop":
            self._answer(302, b"", {"Location": "/loop"})
        elif parts.path == "/stall":
            owner.released.wait(30)
            self._answer(200, b"late")
        elif parts.path == "/redirect":
            self._answer(int(query.get("code", "302")), b"", {"Location": query.get("to", "/ok")})
        else:
            self._answer(404, b"no such path")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Upstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that hung up early (a truncated read, a timeout) is what the tests do on purpose


class Upstream:
    """Plain HTTP, or HTTPS with ``tls`` (a server-side context holding its certificate)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.methods: list[tuple[str, str]] = []
        self.failing = False
        self.fail_next = 0
        self.released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.scheme = "https" if tls is not None else "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
