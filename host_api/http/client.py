"""One HTTP exchange with a vetted address: connect, send, read a bounded answer, by a hard deadline.

The connection goes to the address the capability checked, never to the
name again; the name travels only as the Host header and, for https, as
the TLS server name, which is also what the certificate is verified
against. Every socket wait is bounded by the time left, and a timer shuts
the socket down at the deadline, so a server that trickles its answer a
byte at a time cannot hold a plugin call past it. Nothing is decompressed
(the kernel asks for ``identity``), so the body bound is the bytes read.

Failures come out as one of the exceptions below, which the capability
turns into the public error model and its retry and breaker decisions.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from arcana_host.http.requests import Url

CHUNK = 65_536


class ExchangeFailed(Exception):
    """No usable answer; ``host`` names the server in messages."""


class ConnectFailed(ExchangeFailed):
    """No connection to any of the addresses (refused, unreachable, TLS handshake): nothing was sent."""


class Dropped(ExchangeFailed):
    """Connected and sent, but the connection ended before a status line came back."""


class TimedOut(ExchangeFailed):
    """The deadline passed first."""


class BadResponse(ExchangeFailed):
    """The server answered with something that is not HTTP/1.x."""


class HeadersTooLarge(ExchangeFailed):
    def __init__(self, size: int) -> None:
        super().__init__(f"response headers of {size} bytes")
        self.size = size


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    truncated: bool

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a fetch must be done, on ``time.monotonic()``, and whether the plugin call's deadline set it."""

    at: float
    by_call: bool

    def left(self) -> float:
        return _left(self.at)


def deadline_of(timeout_ms: int, call_deadline: float) -> Deadline:
    """``timeout_ms`` from now, or the call's deadline (0: none) when that comes first."""
    own = time.monotonic() + timeout_ms / 1000
    if call_deadline and call_deadline < own:
        return Deadline(call_deadline, True)
    return Deadline(own, False)


@dataclass(frozen=True, slots=True)
class Limits:
    max_response_bytes: int
    max_header_bytes: int


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to ``address`` that still says ``host`` in its Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to ``address``, verifying the certificate for ``host`` (SNI and hostname check)."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimedOut("no time left")
    return left


def _connect(url: Url, addresses: Sequence[str], deadline: float, tls: ssl.SSLContext) -> http.client.HTTPConnection:
    """The first address that accepts, in order; ConnectFailed naming the last reason when none does."""
    reason = "no address"
    for address in addresses:
        left = _left(deadline)
        conn: http.client.HTTPConnection = (
            _PinnedHTTPS(url.host, url.port, address, left, tls)
            if url.scheme == "https"
            else _PinnedHTTP(url.host, url.port, address, left)
        )
        try:
            conn.connect()
            return conn
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise ConnectFailed(f"its TLS certificate did not verify: {exc.verify_message}") from None
        except TimeoutError:
            conn.close()
            raise TimedOut("connecting") from None
        except OSError as exc:
            conn.close()
            reason = exc.strerror or type(exc).__name__
    raise ConnectFailed(reason)


def _cut(sock: socket.socket | None) -> None:
    """At the deadline: end the connection under any blocked read (the TLS layer's own shutdown is skipped)."""
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def exchange(
    url: Url,
    addresses: Sequence[str],
    method: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
    deadline: float,
    limits: Limits,
    tls: ssl.SSLContext,
) -> Response:
    conn = _connect(url, addresses, deadline, tls)
    guard = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (conn.sock,))
    guard.daemon = True
    guard.start()
    try:
        return _converse(conn, url, method, headers, body, limits)
    except TimeoutError:
        raise TimedOut("waiting for the answer") from None
    except (OSError, http.client.HTTPException) as exc:
        if not guard.is_alive() or time.monotonic() >= deadline:
            raise TimedOut("waiting for the answer") from None
        if isinstance(exc, (http.client.RemoteDisconnected, ConnectionError)):
            raise Dropped(str(exc) or type(exc).__name__) from None
        raise BadResponse(str(exc)[:200] or type(exc).__name__) from None
    finally:
        guard.cancel()
        conn.close()


def _converse(
    conn: http.client.HTTPConnection,
    url: Url,
    method: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
    limits: Limits,
) -> Response:
    conn.putrequest(method, url.target, skip_accept_encoding=True)
    conn.putheader("Accept-Encoding", "identity")
    for name, value in headers:
        conn.putheader(name, value)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(len(body or b"")))
    conn.endheaders(body)
    answer = conn.getresponse()
    received = tuple(answer.getheaders())
    size = sum(len(k) + len(v) + 4 for k, v in received)
    if size > limits.max_header_bytes:
        raise HeadersTooLarge(size)
    content, truncated = _read_body(answer, method, limits.max_response_bytes)
    return Response(answer.status, received, content, truncated)


def _read_body(answer: http.client.HTTPResponse, method: str, limit: int) -> tuple[bytes, bool]:
    if method == "HEAD":
        return b"", False
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = answer.read(min(CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True
