"""Rate limits in the request core and at both edges: who is counted, and what a refused caller gets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arcana.envelopes import HttpRequest
from arcana.errors import RateLimited, Unauthorized
from arcana.kernel import Kernel
from arcana.ratelimit import MemoryLimiter
from fakes import FakePlugin, Kernels, bearer, manifest_toml, reply, route, write_plugin
from runtime.edge.test_grpc_inprocess import call, free_port, greeter, kernel_on_a_free_port
from runtime.edge.test_grpc_inprocess import run as run_grpc
from runtime.edge.test_plugin_http_inprocess import run as run_rest
from runtime.edge.test_plugin_http_inprocess import serve
from runtime.test_core import app, grpc_call, http, started, token


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def on_clock(kernel: Kernel) -> Clock:
    """Give the kernel's core an in-process limiter on a clock the test moves."""
    clock = Clock()
    kernel.core.limiter = MemoryLimiter(1_000, clock)
    return clock


def limited_app(kernels: Kernels, **extra: Any) -> FakePlugin:
    return app(
        kernels, {"list": reply({"body": []})}, [route("GET", "/things", "list", rate_limit="2/minute", **extra)]
    )


def test_the_n_plus_first_call_of_a_principal_is_refused_before_the_plugin(kernels: Kernels) -> None:
    plugin = limited_app(kernels, roles=["user"])
    kernel = started(kernels)
    clock = on_clock(kernel)
    clock.now = 10.0
    assert [http(kernel, "GET", "/things", authorization=token()).status for _ in range(2)] == [200, 200]
    clock.now = 25.0
    with pytest.raises(RateLimited) as refused:
        http(kernel, "GET", "/things", authorization=token())
    assert refused.value.retry_after == 45 and refused.value.limit == 2
    assert len(plugin.calls) == 2  # the refused call never reached the plugin
    assert http(kernel, "GET", "/things", authorization=token(sub="u-2")).status == 200  # another principal
    clock.now = 70.0  # the first principal's window is over
    assert http(kernel, "GET", "/things", authorization=token()).status == 200


def test_an_unauthenticated_call_is_refused_before_it_counts(kernels: Kernels) -> None:
    plugin = limited_app(kernels, roles=["user"])
    kernel = started(kernels)
    on_clock(kernel)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            http(kernel, "GET", "/things")
    assert http(kernel, "GET", "/things", authorization=token()).status == 200
    assert len(plugin.calls) == 1


def test_anonymous_callers_of_a_public_route_are_counted_per_address(kernels: Kernels) -> None:
    limited_app(kernels, public=True)
    kernel = started(kernels)
    on_clock(kernel)
    match = kernel.core.route_http("GET", "/things")
    assert match is not None

    def from_address(client: str) -> int:
        req = HttpRequest("GET", "/things", {}, {}, b"", "rid", client=client)
        return asyncio.run(kernel.core.call_http(match, req)).status

    # Two each: 10.0.0.1, and one IPv6 /64 whatever its host part.
    assert [from_address(a) for a in ("10.0.0.1", "10.0.0.1", "2001:db8::1", "2001:db8::2")] == [200] * 4
    for client in ("10.0.0.1", "2001:db8::3"):
        with pytest.raises(RateLimited):
            from_address(client)
    assert from_address("10.0.0.2") == 200


def test_a_grpc_method_limit_counts_per_principal_in_the_core(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": reply({"message": {"count": 1}})}, rate_limit="1/hour", roles=["user"])
    kernel = started(kernels)
    on_clock(kernel)
    grpc_call(kernel, "/fake.v1.Greeter/Say", b"", token())
    with pytest.raises(RateLimited) as refused:
        grpc_call(kernel, "/fake.v1.Greeter/Say", b"", token())
    assert refused.value.retry_after == 3600
    grpc_call(kernel, "/fake.v1.Greeter/Say", b"", token(sub="u-2"))
    assert len(plugin.calls) == 2


# ---------------------------------------------------------------- what the edges answer


def test_rest_answers_429_with_retry_after_and_ratelimit_headers(kernels: Kernels) -> None:
    plugin = serve(kernels, {"list": reply({"body": []})}, [route("GET", "/things", "list", rate_limit="1/minute")])
    kernel = kernels()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get("/things", headers=bearer("u-1", ["user"])) for _ in range(2)]

    ok, refused = run_rest(kernel, scenario)
    assert ok.status_code == 200 and refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == "1" and refused.headers["ratelimit-remaining"] == "0"
    assert len(plugin.calls) == 1


def test_the_per_address_limit_refuses_before_routing_on_rest(kernels: Kernels) -> None:
    plugin = serve(kernels, {"list": reply({"body": []})}, [route("GET", "/things", "list", public=True)])
    kernel = kernels(SERVER__PER_ADDRESS_LIMIT="2/hour")

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        return [(await client.get(path)).status_code for path in ("/things", "/things", "/things", "/nowhere")]

    assert run_rest(kernel, scenario) == [200, 200, 429, 429]
    assert len(plugin.calls) == 2


def test_grpc_answers_resource_exhausted(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": reply({"message": {"count": 1}})}, rate_limit="1/minute", public=True)
    kernel = kernel_on_a_free_port(kernels)

    async def scenario(channel: grpc.aio.Channel) -> list[tuple[grpc.StatusCode, Any, Any]]:
        return [await call(channel, "/fake.v1.Greeter/Say", b"") for _ in range(2)]

    (ok, _, _), (refused, details, _) = run_grpc(kernel, scenario)
    assert ok == grpc.StatusCode.OK and refused == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(details).startswith("RATE_LIMITED:")
    assert len(plugin.calls) == 1


def test_the_per_address_limit_applies_on_grpc(kernels: Kernels) -> None:
    greeter(kernels, {"say": reply({"message": {"count": 1}})}, public=True)
    kernel = kernels(SERVER__HOST="127.0.0.1", SERVER__GRPC_PORT=str(free_port()), SERVER__PER_ADDRESS_LIMIT="1/day")

    async def scenario(channel: grpc.aio.Channel) -> list[grpc.StatusCode]:
        return [(await call(channel, "/fake.v1.Greeter/Say", b""))[0] for _ in range(2)]

    assert run_grpc(kernel, scenario) == [grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED]


FREE = route("GET", "/free", "list", public=True)


def test_every_answer_of_a_limited_route_carries_the_ratelimit_fields_and_others_none(kernels: Kernels) -> None:
    serve(
        kernels,
        {"list": reply({"body": []})},
        [
            route("GET", "/things", "list", rate_limit="3/minute", public=True),
            route("GET", "/free", "list", public=True),
        ],
    )
    kernel = kernels()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(path) for path in ("/things", "/things", "/free")]

    first, second, free = run_rest(kernel, scenario)
    assert (first.status_code, second.status_code, free.status_code) == (200, 200, 200)
    assert [first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]] == ["3", "2"]
    assert second.headers["ratelimit-remaining"] == "1"
    assert 1 <= int(second.headers["ratelimit-reset"]) <= 60
    assert not any(name.startswith("ratelimit") for name in free.headers)


def test_a_raw_route_under_a_limit_carries_the_fields_too(kernels: Kernels) -> None:
    plugin = kernels.engine.define("app", FakePlugin({"raw": reply(b"bytes")}))
    write_plugin(
        kernels.plugins,
        manifest_toml("app", routes=[route("POST", "/raw", "raw", abi="raw", public=True, rate_limit="5/hour")]),
    )
    response = run_rest(kernels(), lambda client: client.post("/raw", content=b"x"))
    assert response.status_code == 200 and response.content == b"bytes"
    assert (response.headers["ratelimit-limit"], response.headers["ratelimit-remaining"]) == ("5", "4")
    assert len(plugin.calls) == 1


def test_refusals_are_counted_by_scope_on_the_metrics_page(kernels: Kernels) -> None:
    serve(kernels, {"list": reply({"body": []})}, [route("GET", "/things", "list", rate_limit="1/minute", public=True)])
    kernel = kernels(SERVER__METRICS_PUBLIC="true")

    async def scenario(client: httpx.AsyncClient) -> tuple[float, list[int], float]:
        before = _rejections((await client.get("/metrics")).text, "route")
        statuses = [(await client.get("/things")).status_code for _ in range(3)]
        return before, statuses, _rejections((await client.get("/metrics")).text, "route")

    before, statuses, after = run_rest(kernel, scenario)
    assert statuses == [200, 429, 429] and after - before == 2


def _rejections(page: str, scope: str) -> float:
    """arcana_rate_limited_total{scope} from a scraped page, parsed as Prometheus does; 0 when absent."""
    for family in text_string_to_metric_families(page):
        if family.name == "arcana_rate_limited":
            labels = [set(s.labels) for s in family.samples if s.name == "arcana_rate_limited_total"]
            assert all(found == {"scope"} for found in labels)  # low cardinality: no principal, no address
            return sum(s.value for s in family.samples if s.name.endswith("_total") and s.labels["scope"] == scope)
    return 0.0


def test_a_limiter_whose_redis_is_down_refuses_limited_calls_with_503(kernels: Kernels) -> None:
    plugin = serve(
        kernels,
        {"list": reply({"body": []})},
        [
            route("GET", "/things", "list", rate_limit="100/minute", public=True),
            route("GET", "/free", "list", public=True),
        ],
    )
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    kernel = kernels(SERVER__RATE_LIMIT_BACKEND="redis", SERVER__RATE_LIMIT_REDIS_URL=f"redis://127.0.0.1:{closed}/0")

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(path) for path in ("/things", "/free")]

    limited, free = run_rest(kernel, scenario)
    assert limited.status_code == 503 and limited.json()["code"] == "SERVICE_UNAVAILABLE"
    assert limited.headers["retry-after"] == "1"
    assert free.status_code == 200  # a route without a limit does not need Redis
    assert len(plugin.calls) == 1
