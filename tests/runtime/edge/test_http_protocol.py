"""The bounded HTTP protocol on a fake transport: every bound, however the bytes are split into reads.

The end-to-end attacks (a real `arcana serve`, real sockets, RSS) are in
tests/e2e/test_edge_bounds.py; here each rule is checked byte-exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from arcana.edge.http_protocol import BoundedHttpToolsProtocol, HttpLimits, bounded_protocol

LIMITS = HttpLimits(
    max_header_bytes=2048, max_url_bytes=512, max_header_count=10, header_timeout_s=0.2, body_timeout_s=0.3
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """Answers 200 with how many body bytes it read and how many headers it saw (/early: without reading)."""
    size, more = 0, scope["path"] != "/early"
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"body": size, "headers": len(scope["headers"])}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class Connection:
    """One protocol instance on a fake transport, inside a running loop."""

    def __init__(self, limits: HttpLimits = LIMITS, state: ServerState | None = None) -> None:
        cls = bounded_protocol(limits)
        config = uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=False, ws="none", http=cls)
        config.load()
        self.state = state or ServerState()
        self.protocol = cls(config=config, server_state=self.state, app_state={})
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)

    def feed(self, *reads: bytes) -> None:
        for data in reads:
            self.protocol.data_received(data)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    def responses(self) -> list[tuple[int, dict[str, Any]]]:
        """(status, JSON body) of every response written so far."""
        out = []
        for chunk in self.transport.written.split(b"HTTP/1.1 ")[1:]:
            head, _, body = chunk.partition(b"\r\n\r\n")
            out.append((int(head[:3]), json.loads(body)))
        return out

    def close(self) -> None:
        self.protocol.connection_lost(None)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def head(path: str = "/x", headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: t"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_head_within_the_bounds_is_served_even_one_byte_per_read() -> None:
    async def scenario() -> None:
        c = Connection()
        request = head(headers=[("x-a", "v" * 1500)], body=b"hello")
        c.feed(*(request[i : i + 1] for i in range(len(request))))
        await c.settle()
        assert c.responses() == [(200, {"body": 5, "headers": 3})]
        assert not c.transport.closed
        c.close()

    run(scenario)


def test_a_header_growing_past_the_bound_is_refused_before_its_end_arrives() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"GET /x HTTP/1.1\r\nx-big: ")
        for _ in range(10):  # 10 reads of 512 bytes: past 2048 on the 4th, the header never ends
            c.feed(b"a" * 512)
        await c.settle()
        [(status, body)] = c.responses()
        assert status == 431 and body["code"] == "PAYLOAD_TOO_LARGE"
        assert set(body) == {"code", "message", "request_id", "timestamp"} and "2048 bytes" in body["message"]
        assert c.transport.eof and b"connection: close" in c.transport.written
        c.close()

    run(scenario)


def test_a_whole_head_over_the_bound_in_one_read_is_refused() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(head(headers=[("x-a", "v" * 1100), ("x-b", "v" * 1100)]))
        await c.settle()
        assert [s for s, _ in c.responses()] == [431]

    run(scenario)


def test_more_header_fields_than_the_count_bound_are_refused() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(head(headers=[(f"x-{i}", "1") for i in range(8)]))  # 8 + host + content-length = 10: allowed
        await c.settle()
        c.feed(head(headers=[(f"x-{i}", "1") for i in range(9)]))
        await c.settle()
        [(ok, _), (status, body)] = c.responses()
        assert ok == 200 and status == 431 and "more than 10 header fields" in body["message"]

    run(scenario)


def test_a_request_target_over_its_bound_is_414() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(head(path="/" + "p" * 511))
        await c.settle()
        c.feed(b"GET /" + b"p" * 300, b"p" * 300)
        await c.settle()
        [(ok, _), (status, body)] = c.responses()
        assert ok == 200 and status == 414 and body["code"] == "PAYLOAD_TOO_LARGE"

    run(scenario)


def test_malformed_http_is_a_json_400_in_the_error_model() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"NOT HTTP AT ALL\r\n\r\n")
        [(status, body)] = c.responses()
        assert status == 400 and body["code"] == "VALIDATION_FAILED"
        assert set(body) == {"code", "message", "request_id", "timestamp"}
        assert b"content-type: application/json" in c.transport.written
        assert b"x-request-id: " + body["request_id"].encode() in c.transport.written

    run(scenario)


def test_body_bytes_in_the_same_read_as_a_head_do_not_count_as_head() -> None:
    async def scenario() -> None:
        c = Connection()
        body = b"b" * 50_000  # far over max_header_bytes, after a small head, in one read
        c.feed(head(body=body) + head(body=body))  # two pipelined requests
        await c.settle()
        c.feed(head(body=body)[:100], head(body=body)[100:])  # a body split across reads after the head
        await c.settle()
        assert [s for s, _ in c.responses()] == [200, 200, 200]

    run(scenario)


def test_what_a_refused_client_still_sends_is_dropped_unparsed() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"BAD\r\n\r\n")
        written = c.transport.written
        c.feed(head(), b"x" * 100_000)
        await c.settle()
        assert c.transport.written == written

    run(scenario)


def test_a_connection_beyond_the_cap_gets_503_and_is_closed_before_reading() -> None:
    async def scenario() -> None:
        state = ServerState()
        limits = HttpLimits(max_connections=2, header_timeout_s=5)
        first, second = Connection(limits, state), Connection(limits, state)
        third = Connection(limits, state)
        [(status, body)] = third.responses()
        assert status == 503 and body["code"] == "SERVICE_UNAVAILABLE"
        assert third.transport.closed and b"retry-after: 1" in third.transport.written
        assert len(state.connections) == 2
        first.close()
        fourth = Connection(limits, state)
        assert fourth.responses() == [] and not fourth.transport.closed
        for c in (second, third, fourth):
            c.close()
        assert not state.connections

    run(scenario)


def test_an_idle_connection_is_closed_silently_after_the_header_timeout() -> None:
    async def scenario() -> None:
        c = Connection()
        await asyncio.sleep(0.5)
        assert c.transport.closed and c.transport.written == b""

    run(scenario)


def test_a_half_sent_head_gets_408_after_the_header_timeout() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"GET /x HTTP/1.1\r\nhost: t\r\n")
        await asyncio.sleep(0.5)
        [(status, body)] = c.responses()
        assert status == 408 and body["code"] == "VALIDATION_FAILED" and "0.2 s" in body["message"]

    run(scenario)


def test_the_header_timeout_runs_again_from_the_end_of_each_response() -> None:
    async def scenario() -> None:
        c = Connection()
        for _ in range(3):  # each request well within the timeout: the connection lives past 3 timeouts' worth
            await asyncio.sleep(0.1)
            c.feed(head())
            await c.settle()
        assert [s for s, _ in c.responses()] == [200, 200, 200] and not c.transport.closed
        c.feed(b"GET /x HTTP/1.1\r\n")
        await asyncio.sleep(0.5)
        assert [s for s, _ in c.responses()] == [200, 200, 200, 408]

    run(scenario)


def test_a_body_not_complete_within_the_body_timeout_gets_408_and_the_app_sees_a_disconnect() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n", b"0123456789")
        await asyncio.sleep(0.15)
        c.feed(b"more")  # trickling resets no clock
        await asyncio.sleep(0.5)
        await c.settle()
        [(status, body)] = c.responses()  # the app's own answer after the disconnect is dropped
        assert status == 408 and "request body was not complete within 0.3 s" in body["message"]
        assert c.protocol.cycle.disconnected and c.transport.eof

    run(scenario)


def test_a_body_arriving_in_pieces_within_the_body_timeout_is_served() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 20\r\n\r\n")
        for _ in range(2):
            await asyncio.sleep(0.1)
            c.feed(b"0123456789")
        await c.settle()
        assert c.responses() == [(200, {"body": 20, "headers": 2})]
        await asyncio.sleep(0.4)  # then idle past the header timeout: closed without another answer
        assert c.transport.closed and len(c.responses()) == 1

    run(scenario)


def test_after_an_answer_given_before_the_body_ended_the_next_head_has_its_clock() -> None:
    async def scenario() -> None:
        c = Connection()
        c.feed(b"POST /early HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n")
        await c.settle()
        await asyncio.sleep(0.1)
        c.feed(b"0123456789")  # the body ends after the answer: the connection is idle from here
        assert c.responses() == [(200, {"body": 0, "headers": 2})]
        await asyncio.sleep(0.4)
        assert c.transport.closed and len(c.responses()) == 1

    run(scenario)


def test_each_configured_class_keeps_its_own_limits() -> None:
    small, large = bounded_protocol(HttpLimits(max_header_bytes=1024)), bounded_protocol(HttpLimits())
    assert small.limits.max_header_bytes == 1024 and large.limits.max_header_bytes == 32_768
    assert issubclass(small, BoundedHttpToolsProtocol) and BoundedHttpToolsProtocol.limits == HttpLimits()
