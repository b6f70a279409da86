"""uvicorn's httptools protocol with the bounds it lacks, its refusals in the JSON error model.

uvicorn (httptools) limits neither the size nor the number of request
headers, has no timeout for reading a request head, and no cap on open
connections; its answer to malformed HTTP is plain text. This subclass adds,
from ``server.*`` of the config:

- ``max_header_bytes``: request line and headers together -> 431;
  ``max_url_bytes``: the request target -> 414; ``max_header_count`` -> 431.
  httptools gathers a header in memory before handing it over, so besides
  counting what it hands over, every read that ends inside a head counts
  whole: a head being sent without end is refused within one read (uvloop
  reads at most 256 KiB) of the bound, however it is split.
- ``header_timeout_s``: from the connection, or from the end of the previous
  response, until the request head is complete; then 408 when part of a
  head came, else a plain close. ``body_timeout_s``: from the end of the head
  until the whole body has come; then 408 (the app waiting for the body sees
  a disconnect). Without these a client sending a byte now and then holds
  its connection, and so, many such clients, all of max_connections.
- ``max_connections``: a connection beyond it is answered 503 and closed at
  once, before anything is read (a client that already sent its request may
  see the reset rather than the answer).
- malformed HTTP -> 400 VALIDATION_FAILED instead of uvicorn's plain text.

These answers are written here, by the HTTP layer, in the body of the error
model (``code``, ``message``, ``request_id``, ``timestamp``). Their statuses
are HTTP's own (408, 414, 431 are not in the code table of
``arcana.edge.errors``): 414 and 431 carry PAYLOAD_TOO_LARGE, 400 and 408
VALIDATION_FAILED, 503 SERVICE_UNAVAILABLE. After a refusal the connection
is half-closed and what the client still sends is read and dropped for at
most ``LINGER_S``, so that a client still writing its head reads the answer
instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from arcana.config import ServerConfig
from arcana.core import request_id
from arcana.edge.errors import error_body
from arcana.errors import ErrorCode

logger = logging.getLogger("arcana.http")
# How long a refused connection is still read (and the data dropped) before it is closed.
LINGER_S = 2.0
# At most one "connection limit reached" warning per this many seconds, however many are refused.
CAP_WARNING_EVERY_S = 60.0


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32_768
    max_url_bytes: int = 8_192
    max_header_count: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1_000

    @classmethod
    def of(cls, server: ServerConfig) -> HttpLimits:
        return cls(
            server.max_header_bytes,
            server.max_url_bytes,
            server.max_header_count,
            server.header_timeout_s,
            server.body_timeout_s,
            server.max_connections,
        )


@dataclass(frozen=True)
class Refusal:
    """An answer the HTTP layer writes itself, then closes the connection."""

    status: int
    code: ErrorCode
    message: str
    retry_after: int | None = None

    def render(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        rid = request_id("")
        body = error_body(self.code, self.message, rid)
        headers = [
            *default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()),
            (b"connection", b"close"),
        ]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return STATUS_LINE[self.status] + head + b"\r\n" + body


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal itself is on the protocol."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, bounded. Use ``bounded_protocol(limits)`` to get the class to serve."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    _last_cap_warning: ClassVar[float] = -CAP_WARNING_EVERY_S
    _refused_since_warning: ClassVar[int] = 0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time by which the pending head (or body) must be complete
        self._linger_timer: asyncio.TimerHandle | None = None
        self._refusal: Refusal | None = None  # set once refused: what comes after is dropped
        # The head of the request being read: has a byte of it come, is it complete, its size so far.
        self._head_begun = False
        self._head_done = False
        self._heads_completed = 0
        self._head_read_bytes = 0  # whole reads that began and ended inside this head
        self._head_seen_bytes = 0  # request target and header fields as httptools handed them over
        self._header_count = 0

    # Connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        if len(self.connections) >= self.limits.max_connections:
            self._refuse_over_capacity(transport)
            return
        super().connection_made(transport)
        self._set_deadline(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # lingering after a refusal: drop what the client still sends
        self._unset_keepalive_if_required()
        inside_head = not self._head_done
        heads = self._heads_completed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket here (ws="none"): the request is served as plain HTTP, as uvicorn does
        except httptools.HttpParserError as exc:
            self._refuse(self._refusal or Refusal(400, ErrorCode.VALIDATION_FAILED, f"malformed HTTP request: {exc}"))
            return
        if inside_head and heads == self._heads_completed:
            # The whole read belongs to one unfinished head (the parser holds it in memory).
            self._head_read_bytes += len(data)
            if self._head_read_bytes > self.limits.max_header_bytes:
                self._refuse(self._head_too_large())

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._set_deadline(self.limits.header_timeout_s)  # the next head's clock starts now

    # Parser callbacks (httptools calls them from inside feed_data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        self._head_seen_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            self._stop(
                Refusal(
                    414,
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"the request target is longer than {self.limits.max_url_bytes} bytes",
                )
            )
        self._head_seen_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_seen_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_seen_bytes > self.limits.max_header_bytes:
            self._stop(self._head_too_large())
        if self._header_count > self.limits.max_header_count:
            self._stop(
                Refusal(
                    431,
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"the request has more than {self.limits.max_header_count} header fields",
                )
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._heads_completed += 1
        self._head_read_bytes = 0
        self._set_deadline(self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_begun = self._head_done = False
        if self.cycle.response_complete:  # answered before its body ended: the next head's clock starts now
            self._set_deadline(self.limits.header_timeout_s)
        else:
            self._deadline = None  # the app has the request; on_response_complete starts the next clock

    # Refusals

    def _head_too_large(self) -> Refusal:
        return Refusal(
            431,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the request headers are larger than {self.limits.max_header_bytes} bytes",
        )

    def _stop(self, refusal: Refusal) -> None:
        self._refusal = refusal
        raise _Refused(refusal.message)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` (unless a response is being written) and close, reading for a moment first."""
        self._refusal = refusal
        self._drop_timer()
        self._unset_keepalive_if_required()
        # Debug only: an attacker decides how many of these there are.
        logger.debug("HTTP request refused", extra={"status": refusal.status, "reason": refusal.message})
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            self.transport.close()  # the app may be answering: another answer would corrupt it
            return
        self.transport.write(refusal.render(self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _refuse_over_capacity(self, transport: asyncio.Transport) -> None:
        """Beyond max_connections: answer 503 and close before reading anything, so the socket is freed now."""
        self.transport = transport
        self._refusal = Refusal(
            503, ErrorCode.SERVICE_UNAVAILABLE, "the server has too many open connections; retry shortly", retry_after=1
        )
        transport.write(self._refusal.render(self.server_state.default_headers))
        transport.close()
        cls = BoundedHttpToolsProtocol
        cls._refused_since_warning += 1
        now = time.monotonic()
        if now - cls._last_cap_warning >= CAP_WARNING_EVERY_S:
            logger.warning(
                "HTTP connection limit reached: refusing new connections",
                extra={"max_connections": self.limits.max_connections, "refused": cls._refused_since_warning},
            )
            cls._last_cap_warning, cls._refused_since_warning = now, 0

    # The head and body timers: one timer per connection, moved lazily. A busy keep-alive
    # connection sets a deadline per request (cheap) and its timer fires about once per timeout
    # to re-arm, rather than a timer being made and cancelled for every request.

    def _set_deadline(self, seconds: float) -> None:
        self._deadline = self.loop.time() + seconds
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._timer_fired)

    def _drop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timer_fired(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.transport.is_closing():
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._timer_fired)
            return
        self._deadline = None
        if self._head_done:
            self._body_timed_out()
        else:
            self._head_timed_out()

    def _head_timed_out(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined response is still being made: close after it
        elif self._head_begun:
            seconds = f"{self.limits.header_timeout_s:g}"
            self._refuse(
                Refusal(408, ErrorCode.VALIDATION_FAILED, f"the request head was not complete within {seconds} s")
            )
        else:
            self.transport.close()  # idle: nothing to answer

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if self.pipeline:  # a queued request waits for the one before it, not for its client
            self._set_deadline(self.limits.body_timeout_s)
        elif cycle.response_started:
            self.transport.close()  # answered (or answering) already: nothing more to say
        else:
            # The app waiting for the body now gets http.disconnect, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            seconds = f"{self.limits.body_timeout_s:g}"
            self._refuse(
                Refusal(408, ErrorCode.VALIDATION_FAILED, f"the request body was not complete within {seconds} s")
            )


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``: uvicorn builds it with its own arguments."""

    class ArcanaHttpProtocol(BoundedHttpToolsProtocol):
        pass

    ArcanaHttpProtocol.limits = limits
    return ArcanaHttpProtocol
