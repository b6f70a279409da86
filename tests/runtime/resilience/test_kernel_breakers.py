"""Per-plugin breakers in a kernel (fake engine): the manifest's [breaker], its ceilings, reloads, views, events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arcana.edge.admin import plugins_json
from arcana.edge.errors import HTTP_STATUS
from arcana.edge.grpc_errors import grpc_status
from arcana.edge.grpc_kernel import plugins_message
from arcana.edge.metrics import exposition
from arcana.envelopes import HttpRequest
from arcana.errors import ArcanaError, CircuitOpen, ManifestInvalid, PluginFailed
from arcana.kernel import Kernel
from arcana.manifest import parse_manifest
from arcana.resilience import BreakerState
from arcana.resilience.metrics import breaker_registry
from arcana.types import CallContext
from fakes import FakePlugin, Kernels, manifest_toml, route, trap, wait_for, write_plugin


def picky(data: Any, _context: CallContext) -> Any:
    """Traps when the request body says so; answers otherwise."""
    if isinstance(data, dict) and data.get("body") == "trap":
        return trap()(data, _context)
    return {"body": "ok"}


def flaky(version: str = "1.0.0", breaker: str = "[breaker]\nfailure_threshold = 2\n") -> str:
    return manifest_toml("flaky", version, routes=[route("POST", "/flaky", "h", public=True)]) + "\n" + breaker


async def post(kernel: Kernel, body: bytes) -> int:
    match = kernel.core.route_http("POST", "/flaky")
    assert match is not None
    headers = {"content-type": "application/json"}
    response = await kernel.core.call_http(match, HttpRequest("POST", "/flaky", {}, headers, body, "rid"))
    return response.status


def call(kernel: Kernel, body: bytes) -> int:
    return asyncio.run(post(kernel, body))


def http_status(exc: ArcanaError) -> int:
    return HTTP_STATUS[exc.code]


def breaker_of(kernel: Kernel) -> str:
    (plugin,) = kernel.plugins_view().plugins
    return plugin.breaker


@pytest.fixture
def kernel(kernels: Kernels) -> Kernel:
    kernels.engine.define("flaky", FakePlugin({"h": picky}))
    write_plugin(kernels.plugins, flaky())
    kernel = kernels()
    asyncio.run(kernel.load_all())
    return kernel


def _trap(kernel: Kernel, times: int) -> None:
    for _ in range(times):
        with pytest.raises(PluginFailed):
            call(kernel, b'"trap"')


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ("failure_threshold = 3\nopen_for = 2\n", "breaker.open_for"),
        ('failure_threshold = "3"\n', "breaker.failure_threshold"),
        ("failure_threshold = 0\n", "breaker.failure_threshold"),
        ("half_open_probes = 1.5\n", "breaker.half_open_probes"),
        ('cool_down_s = "10s"\n', "breaker.cool_down_s"),
        ("cool_down_s = true\n", "breaker.cool_down_s"),
        ("cool_down_s = -1\n", "breaker.cool_down_s"),
        ("cool_down_s = nan\n", "breaker.cool_down_s"),
    ],
)
def test_a_breaker_table_with_an_unknown_key_or_a_bad_value_is_refused(table: str, where: str) -> None:
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(flaky(breaker="[breaker]\n" + table))
    assert where in [p.field for p in refused.value.problems]


def test_a_breaker_table_is_read_with_seconds_as_an_integer_or_a_float() -> None:
    settings = parse_manifest(flaky(breaker="[breaker]\ncool_down_s = 2\nhalf_open_probes = 3\n")).breaker
    assert (settings.failure_threshold, settings.cool_down_s, settings.half_open_probes) == (None, 2.0, 3)


@pytest.mark.parametrize(
    ("table", "setting"),
    [
        ("failure_threshold = 101\n", "resilience.max_failure_threshold"),
        ("cool_down_s = 601.0\n", "resilience.max_cool_down_s"),
        ("half_open_probes = 101\n", "resilience.max_failure_threshold"),
    ],
)
def test_a_breaker_above_the_operators_ceiling_is_refused_at_load_naming_the_setting(
    kernels: Kernels, table: str, setting: str
) -> None:
    kernels.engine.define("flaky", FakePlugin({"h": picky}))
    write_plugin(kernels.plugins, flaky(breaker="[breaker]\n" + table))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    (failure,) = kernel.plugins_view().failures
    text = " ".join(failure.errors)
    assert "above the operator's maximum" in text and setting in text
    assert kernel.plugin_count == 0


def test_the_ceilings_follow_the_config(kernels: Kernels) -> None:
    kernels.engine.define("flaky", FakePlugin({"h": picky}))
    write_plugin(kernels.plugins, flaky(breaker="[breaker]\nfailure_threshold = 150\n"))
    kernel = kernels(RESILIENCE__MAX_FAILURE_THRESHOLD="200")
    asyncio.run(kernel.load_all())
    assert kernel.plugin_count == 1


def test_the_manifests_threshold_opens_the_breaker_which_the_views_show_and_a_kernel_event_announces(
    kernel: Kernel,
) -> None:
    events: list[dict[str, Any]] = []
    kernel.bus.subscribe(events.append)
    assert call(kernel, b'"hi"') == 200
    assert breaker_of(kernel) == "closed"
    _trap(kernel, 2)  # the manifest's failure_threshold, not the operator's default 5
    assert breaker_of(kernel) == "open"
    with pytest.raises(CircuitOpen) as refused:
        call(kernel, b'"hi"')
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
    assert http_status(refused.value) == 503 and grpc_status(refused.value) is grpc.StatusCode.UNAVAILABLE

    opened = [e for e in events if e["topic"] == "breaker.opened"]
    assert [e["payload"] for e in opened] == [{"kind": "plugin", "name": "flaky", "old": "closed", "new": "open"}]
    assert opened[0]["source"] == "kernel"
    listing = plugins_json(kernel.plugins_view())["plugins"][0]
    assert listing["breaker"] == "open"
    assert plugins_message(kernel.plugins_view())["plugins"][0]["breaker"] == "open"


def test_breaker_states_are_an_enum_gauge_read_at_scrape_time(kernel: Kernel) -> None:
    registry = breaker_registry(kernel.resilience)

    def states() -> dict[str, float]:
        text = exposition(registry).decode()
        return {
            s.labels["state"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "arcana_breaker_state" and s.labels["name"] == "flaky"
        }

    assert states() == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    _trap(kernel, 2)
    assert states() == {"closed": 0.0, "open": 1.0, "half_open": 0.0}


def test_a_new_version_starts_with_a_closed_breaker_and_an_identical_build_keeps_the_open_one(
    kernel: Kernel, kernels: Kernels
) -> None:
    _trap(kernel, 2)
    path = write_plugin(kernels.plugins, flaky())  # the same bytes again: a no-op reload
    asyncio.run(kernel.sync([path]))
    assert breaker_of(kernel) == "open"

    write_plugin(kernels.plugins, flaky("1.0.1"))  # a fix deployed serves at once
    asyncio.run(kernel.sync([path]))
    assert breaker_of(kernel) == "closed"
    assert call(kernel, b'"hi"') == 200
    assert [b.name for b in kernel.resilience.plugins] == ["flaky"]


def test_an_unloaded_plugin_leaves_no_breaker_behind(kernel: Kernel, kernels: Kernels) -> None:
    path = next(Path(kernels.plugins).glob("*.wasm"))
    path.unlink()
    asyncio.run(kernel.sync([path]))
    assert len(kernel.resilience.plugins) == 0


def test_not_ready_while_the_database_breaker_is_open_and_a_good_ping_is_its_half_open_probe(
    kernels: Kernels,
) -> None:
    kernel = kernels(RESILIENCE__BACKEND_BREAKER__COOL_DOWN_S="0.05")
    asyncio.run(kernel.load_all())
    breaker = kernel.resilience.backend("database")
    for _ in range(breaker.policy.failure_threshold):
        breaker.admit().failure()
    state = asyncio.run(kernel.readiness())
    assert not state.ready and state.reason == "the database is unavailable" and state.retry_after_s == 1

    wait_for(lambda: breaker.state is BreakerState.HALF_OPEN, 5.0, "the breaker half-opens")
    assert asyncio.run(kernel.readiness()).ready
    assert breaker.state is BreakerState.CLOSED
