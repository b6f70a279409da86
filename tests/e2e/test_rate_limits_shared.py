"""Two real server processes share one rate-limit budget through Redis on 127.0.0.1:6379.

Each run uses a key prefix of its own (``server.rate_limit_key_prefix``), so
runs never share a budget and the keys are deleted afterwards. Without Redis
the tests skip loudly, or fail under CI=true (tests/database_fixtures.py).
"""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import redis

from conftest import ROOT
from database_fixtures import REDIS_URL
from e2e.server import ArcanaServer

# The hello plugin under a sidecar manifest: its route and its gRPC twin each limited.
LIMITED_HELLO = """[plugin]
name = "hello"
version = "1.0.0"
[limits]
timeout_ms = 1000
[[route]]
method = "GET"
path = "/api/v1/hello/{name}"
handler = "hello"
public = true
rate_limit = "4/minute"
[[grpc]]
method = "greeter.v1.Greeter/SayHello"
handler = "hello"
public = true
rate_limit = "2/minute"
"""
HELLO_REQUEST = b"\x0a\x03Ada"  # greeter.v1.HelloRequest{name: "Ada"} on the wire


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """This test's own budget in the shared Redis; its keys are deleted afterwards."""
    name = f"arcana-test:e2e-ratelimit:{uuid.uuid4().hex}:"
    yield name
    keys = list(redis_client.scan_iter(match=name + "*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def two_servers(tmp_path: Path, prefix: str, start_server: Callable[..., ArcanaServer]) -> tuple[ArcanaServer, ...]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    (folder / "hello.toml").write_text(LIMITED_HELLO)
    config = {
        "server": {"rate_limit_backend": "redis", "rate_limit_redis_url": REDIS_URL, "rate_limit_key_prefix": prefix}
    }
    return start_server(folder, config), start_server(folder, config)


def test_a_route_limit_is_one_budget_across_two_processes(two_servers: tuple[ArcanaServer, ...]) -> None:
    one, two = two_servers
    answers = [httpx.get(f"{server.url}/api/v1/hello/Ada") for server in (one, two, one, two)]
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    # Every answer of the limited route says what is left of the one shared budget.
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["3", "2", "1", "0"]
    assert {r.headers["ratelimit-limit"] for r in answers} == {"4"}
    for server in (one, two):  # the fifth call is refused wherever it lands
        refused = httpx.get(f"{server.url}/api/v1/hello/Ada")
        assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMITED", refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-remaining"] == "0"


def test_a_grpc_method_limit_is_one_budget_across_two_processes(two_servers: tuple[ArcanaServer, ...]) -> None:
    def say(server: ArcanaServer) -> grpc.StatusCode:
        with grpc.insecure_channel(server.grpc_address) as channel:
            unary = channel.unary_unary("/greeter.v1.Greeter/SayHello")
            try:
                unary(HELLO_REQUEST, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "RATE_LIMITED" in str(exc.details())
                return exc.code()  # type: ignore[no-any-return]
            return grpc.StatusCode.OK

    one, two = two_servers
    assert [say(s) for s in (one, two, one, two)] == [grpc.StatusCode.OK] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2


def test_a_limited_route_is_refused_with_503_while_the_limits_redis_is_down(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    (folder / "hello.toml").write_text(LIMITED_HELLO)
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = {"server": {"rate_limit_backend": "redis", "rate_limit_redis_url": f"redis://127.0.0.1:{closed}/0"}}
    server = start_server(folder, config)
    for _ in range(2):
        r = httpx.get(f"{server.url}/api/v1/hello/Ada")
        assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE", r.text
        assert r.headers["retry-after"] == "1"
    assert httpx.post(f"{server.url}/api/v1/echo", json={"unlimited": True}).status_code == 200
    assert server.logs().count("failing closed") == 1  # one warning per outage, not one per call
