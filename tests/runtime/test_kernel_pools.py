"""The kernel's pools as plugins grow: idle pools shrink on the kernel's sweep; a reload touches one plugin only."""

from __future__ import annotations

import asyncio
import json

import pytest

from arcana import kernel as kernel_module
from arcana.envelopes import HttpRequest
from arcana.kernel import Kernel
from fakes import FakePlugin, Gate, Kernels, async_wait_for, entered, manifest_toml, reply, route, write_plugin


def plugin_manifest(name: str, version: str = "1.0.0") -> str:
    return manifest_toml(name, version, routes=[route("GET", f"/{name}", "hi", public=True)])


async def get(kernel: Kernel, path: str) -> object:
    match = kernel.core.route_http("GET", path)
    assert match is not None, f"nothing serves {path}"
    response = await kernel.core.call_http(match, HttpRequest("GET", path, {}, {}, b"", "rid-pools"))
    assert response.status == 200
    return json.loads(response.body)


async def burst(kernel: Kernel, gate: Gate, path: str, n: int) -> None:
    """``n`` calls inside the guest at once (an instance each), then all return."""
    calls = [asyncio.create_task(get(kernel, path)) for _ in range(n)]
    try:
        await entered(gate, n)
    finally:
        gate.release()
    await asyncio.gather(*calls)


def test_the_kernel_sweep_shrinks_an_idle_pool_to_its_minimum_and_the_plugin_still_serves(
    kernels: Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_module, "SWEEP_MIN_S", 0.01)
    gate = Gate({"status": 200, "body": {"ok": True}})
    plugin = kernels.engine.define("idle", FakePlugin({"hi": gate}))
    write_plugin(kernels.plugins, plugin_manifest("idle"))
    kernel = kernels(EXECUTOR__IDLE_INSTANCE_TTL_S="0.2", EXECUTOR__MIN_IDLE_INSTANCES="1")

    async def scenario() -> None:
        await kernel.load_all()
        pool = kernel.registry.snapshot.plugins["idle"].pool
        await burst(kernel, gate, "/idle", 4)
        assert plugin.instances == 4  # the burst held four instances at once (the load's warm one among them)
        # Nobody calls any more: only the kernel's sweep can give the memory back.
        await async_wait_for(lambda: pool.idle == 1, 10, f"the idle pool kept {pool.idle} instances")
        assert await get(kernel, "/idle") == {"ok": True}
        assert plugin.instances == 4  # served by the instance kept warm

    asyncio.run(scenario())


def test_reloading_one_plugin_leaves_the_others_pool_and_instances_untouched(kernels: Kernels) -> None:
    kernels.engine.define("a", FakePlugin({"hi": reply({"body": "a1"})}))
    kernels.engine.define("a-v2", FakePlugin({"hi": reply({"body": "a2"})}))
    gate = Gate({"status": 200, "body": "b"})
    b_plugin = kernels.engine.define("b", FakePlugin({"hi": gate}))
    a_path = write_plugin(kernels.plugins, plugin_manifest("a"))
    write_plugin(kernels.plugins, plugin_manifest("b"))
    kernel = kernels()

    async def scenario() -> None:
        await kernel.load_all()
        b_before = kernel.registry.snapshot.plugins["b"]
        await burst(kernel, gate, "/b", 3)
        idle_before = list(b_before.pool._idle)
        assert len(idle_before) == 3
        made = b_plugin.instances
        # b serves throughout: a call is in b's guest while a is rebuilt and reloaded.
        held = Gate({"status": 200, "body": "b-held"})
        b_plugin.handlers["hi"] = held
        in_flight = asyncio.create_task(get(kernel, "/b"))
        await entered(held)
        write_plugin(kernels.plugins, plugin_manifest("a", "2.0.0"), file="a", key="a-v2")
        await kernel.sync([a_path])
        assert await get(kernel, "/a") == "a2"
        held.release()
        assert await in_flight == "b-held"
        b_after = kernel.registry.snapshot.plugins["b"]
        assert b_after is b_before and b_after.pool is b_before.pool
        assert b_after.pool.breaker is b_before.pool.breaker
        assert [i for i, _ in b_after.pool._idle] == [i for i, _ in idle_before]  # the same instance objects
        assert await get(kernel, "/b") == "b-held"
        assert b_plugin.instances == made  # nothing of b was rebuilt

    asyncio.run(scenario())
