"""Plugin metrics on /metrics: pool gauges read from the registry on scrape, and loads, refusals, unloads."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from arcana.edge.metrics import exposition
from arcana.edge.pool_metrics import PoolGauges
from arcana.edge.rest import create_rest_app
from fakes import FakePlugin, Gate, Kernels, bearer, entered, manifest_toml, route, write_plugin
from metrics_text import label_values, samples, value

ADMIN = bearer("root", ["admin"])


def test_pool_gauges_show_a_call_in_flight_then_the_instance_kept_idle(kernels: Kernels) -> None:
    gate = Gate()
    kernels.engine.define("pooled", FakePlugin({"h": gate}))
    routes = [route("GET", "/api/pooled", "h", public=True)]
    write_plugin(kernels.plugins, manifest_toml("pooled", routes=routes, limits={"max_concurrency": 3}))
    kernel = kernels(EXECUTOR__MAX_THREADS_PER_PLUGIN="5")

    async def main() -> tuple[str, str]:
        await kernel.load_all()
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            held = asyncio.create_task(client.get("/api/pooled"))
            await entered(gate)
            during = (await client.get("/metrics", headers=ADMIN)).text
            gate.release()
            assert (await held).status_code == 200
            return during, (await client.get("/metrics", headers=ADMIN)).text

    during, after = (samples(text) for text in asyncio.run(main()))
    assert value(during, "arcana_plugin_calls_in_flight", plugin="pooled") == 1
    assert value(during, "arcana_plugin_threads_busy", plugin="pooled") == 1
    assert value(during, "arcana_plugin_instances_idle", plugin="pooled") == 0
    assert value(during, "arcana_plugin_concurrency_limit", plugin="pooled") == 3
    assert value(during, "arcana_plugin_threads_limit", plugin="pooled") == 5
    assert value(after, "arcana_plugin_calls_in_flight", plugin="pooled") == 0
    assert value(after, "arcana_plugin_threads_busy", plugin="pooled") == 0
    assert value(after, "arcana_plugin_instances_idle", plugin="pooled") == 1


def test_loads_refusals_and_unloads_are_counted_per_plugin(kernels: Kernels) -> None:
    kernels.engine.define("cycled", FakePlugin({}))
    path = write_plugin(kernels.plugins, manifest_toml("cycled", version="1.0.0"))
    kernel = kernels()
    before = samples(exposition().decode())

    async def main() -> None:
        await kernel.load_all()
        write_plugin(kernels.plugins, manifest_toml("cycled", version="1.1.0"))
        await kernel.sync([path])  # a reload
        bad = manifest_toml("cycled", version="1.2.0", routes=[route("GET", "/api/v1/auth/x", "h")])
        write_plugin(kernels.plugins, bad)  # a reserved path: refused, 1.1.0 keeps serving
        await kernel.sync([path])
        path.unlink()
        await kernel.sync([path])

    asyncio.run(main())
    after = samples(exposition().decode())
    for outcome, times in (("loaded", 2), ("failed", 1), ("unloaded", 1)):
        grown = value(after, "arcana_plugin_loads_total", plugin="cycled", outcome=outcome)
        assert grown - value(before, "arcana_plugin_loads_total", plugin="cycled", outcome=outcome) == times, outcome
    pools = CollectorRegistry(auto_describe=False)
    pools.register(PoolGauges(lambda: kernel.registry.snapshot))
    assert "cycled" not in label_values(
        samples(generate_latest(pools).decode()), "arcana_plugin_instances_idle", "plugin"
    )
