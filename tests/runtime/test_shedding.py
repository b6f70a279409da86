"""The process's in-flight limit (arcana.shedding): past server.max_in_flight, refused at once, never queued."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from arcana.config import load_config
from arcana.envelopes import HttpRequest
from arcana.errors import ConfigError, PluginFailed, ServiceUnavailable
from arcana.kernel import Kernel
from fakes import Gate, Kernels, entered, reply, route, trap
from runtime.edge.test_grpc_inprocess import greeter
from runtime.edge.test_plugin_http_inprocess import run as run_rest
from runtime.edge.test_plugin_http_inprocess import serve
from runtime.test_core import app, started


def shed_count() -> float:
    return REGISTRY.get_sample_value("arcana_shed_total", {"reason": "in_flight"}) or 0.0


async def get(kernel: Kernel, path: str) -> Any:
    match = kernel.core.route_http("GET", path)
    assert match is not None
    return await kernel.core.call_http(match, HttpRequest("GET", path, {}, {}, b"", "rid"))


async def say(kernel: Kernel) -> bytes:
    target = kernel.core.rpc_target("/fake.v1.Greeter/Say")
    assert target is not None
    return await kernel.core.call_grpc(target, b"", {}, "rid-g", "")


def test_past_max_in_flight_rest_and_grpc_calls_together_are_refused_at_once(kernels: Kernels) -> None:
    slow, slow_rpc = Gate(), Gate({"message": {"count": 1}})
    app(kernels, {"slow": slow}, [route("GET", "/slow", "slow", public=True)])
    greeter(kernels, {"say": slow_rpc}, public=True)
    kernel = kernels(SERVER__MAX_IN_FLIGHT="2")
    asyncio.run(kernel.load_all())
    before = shed_count()

    async def main() -> None:
        held = [asyncio.create_task(get(kernel, "/slow")), asyncio.create_task(say(kernel))]
        await entered(slow)
        await entered(slow_rpc)
        assert kernel.core.in_flight.count == 2
        with pytest.raises(ServiceUnavailable, match="too many requests in flight") as refused:
            await get(kernel, "/slow")
        assert refused.value.retry_after == 1
        with pytest.raises(ServiceUnavailable):
            await say(kernel)
        assert slow.most_inside == 1 and slow_rpc.most_inside == 1  # the refused calls never reached a plugin
        slow.release()
        slow_rpc.release()
        await asyncio.gather(*held)
        assert kernel.core.in_flight.count == 0
        assert (await get(kernel, "/slow")).status == 200  # room again

    asyncio.run(main())
    assert shed_count() - before == 2


def test_a_failed_call_gives_its_place_back(kernels: Kernels) -> None:
    app(kernels, {"boom": trap()}, [route("GET", "/boom", "boom", public=True)])
    kernel = kernels(SERVER__MAX_IN_FLIGHT="1")
    asyncio.run(kernel.load_all())

    async def main() -> None:
        for _ in range(3):  # each a plugin failure, never the shedder's 503
            with pytest.raises(PluginFailed):
                await get(kernel, "/boom")
        assert kernel.core.in_flight.count == 0

    asyncio.run(main())


def test_rest_answers_503_with_retry_after_and_health_still_answers(kernels: Kernels) -> None:
    gate = Gate()
    serve(
        kernels,
        {"slow": gate, "fast": reply({"body": {"ok": True}})},
        [
            route("GET", "/slow", "slow", public=True),
            route("GET", "/fast", "fast", public=True),
        ],
    )
    kernel = kernels(SERVER__MAX_IN_FLIGHT="1")

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, int, int]:
        held = asyncio.create_task(client.get("/slow"))
        await entered(gate)
        refused, health = await client.get("/fast"), await client.get("/health")
        gate.release()
        first = await held
        return refused, health, first.status_code, (await client.get("/fast")).status_code

    refused, health, first, after = run_rest(kernel, scenario)
    assert refused.status_code == 503 and refused.json()["code"] == "SERVICE_UNAVAILABLE"
    assert refused.headers["retry-after"] == "1"
    assert health.status_code == 200  # the kernel's own routes are not shed
    assert (first, after) == (200, 200)


def test_max_in_flight_has_a_safe_default_and_a_floor_of_one(kernels: Kernels) -> None:
    assert load_config(None, environ={}).server.max_in_flight == 1024
    assert started(kernels).core.in_flight.limit == 1024
    with pytest.raises(ConfigError, match="max_in_flight' must be at least 1"):
        load_config(None, environ={"ARCANA_SERVER__MAX_IN_FLIGHT": "0"})
