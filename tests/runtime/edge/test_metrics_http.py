"""REST request metrics (arcana.edge.http_metrics): by route template, never by raw path, read from /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from arcana.edge.http_metrics import kernel_template
from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from fakes import FakePlugin, Kernels, bearer, manifest_toml, reply, route, trap, write_plugin
from metrics_text import Series, label_values, samples, value

Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]
ADMIN = bearer("root", ["admin"])


def serve(kernels: Kernels, name: str, handlers: dict[str, Any], routes: list[dict[str, Any]]) -> Kernel:
    kernels.engine.define(name, FakePlugin(handlers))
    write_plugin(kernels.plugins, manifest_toml(name, routes=routes))
    return kernels()


def scraped_around(kernel: Kernel, scenario: Scenario) -> tuple[dict[Series, float], dict[Series, float]]:
    """/metrics before and after ``scenario`` (the counters are process-wide: tests compare the two)."""

    async def main() -> tuple[dict[Series, float], dict[Series, float]]:
        await kernel.load_all()
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            before = samples((await client.get("/metrics", headers=ADMIN)).text)
            await scenario(client)
            return before, samples((await client.get("/metrics", headers=ADMIN)).text)

    return asyncio.run(main())


def grew(before: dict[Series, float], after: dict[Series, float], name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_plugin_route_is_counted_under_its_template_never_the_raw_path(kernels: Kernels) -> None:
    kernel = serve(
        kernels,
        "notes",
        {"get": reply({"body": {"ok": True}})},
        [route("GET", "/api/v1/notes/{id}", "get", public=True)],
    )

    async def scenario(client: httpx.AsyncClient) -> None:
        for note in ("a", "b", "c"):
            assert (await client.get(f"/api/v1/notes/{note}")).status_code == 200

    before, after = scraped_around(kernel, scenario)
    labels = {"method": "GET", "route": "/api/v1/notes/{id}", "plugin": "notes"}
    assert grew(before, after, "arcana_http_requests_total", status="200", **labels) == 3
    assert grew(before, after, "arcana_http_request_duration_seconds_count", **labels) == 3
    routes = label_values(after, "arcana_http_requests_total", "route")
    assert not {"/api/v1/notes/a", "/api/v1/notes/b"} & routes


def test_unmatched_paths_share_one_series_however_many_a_scanner_tries(kernels: Kernels) -> None:
    kernel = serve(kernels, "app", {"h": reply({})}, [route("GET", "/api/h", "h", public=True)])

    async def scenario(client: httpx.AsyncClient) -> None:
        for i in range(50):
            assert (await client.get(f"/wp-admin/{i}.php")).status_code == 404
        assert (await client.get("/api/v1/auth/nothing-here")).status_code == 404  # kernel space, no rule

    before, after = scraped_around(kernel, scenario)
    unmatched = {"method": "GET", "route": "<unmatched>", "plugin": ""}
    assert grew(before, after, "arcana_http_requests_total", status="404", **unmatched) == 51
    assert not any("wp-admin" in r for r in label_values(after, "arcana_http_requests_total", "route"))


def test_kernel_routes_carry_their_template_and_an_empty_plugin(kernels: Kernels) -> None:
    kernel = kernels()

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/api/v1/admin/users/u-missing", headers=ADMIN)).status_code == 404
        assert (await client.get("/api/v1/admin/plugins")).status_code == 401

    before, after = scraped_around(kernel, scenario)
    for route_, status in (
        ("/health", "200"),
        ("/api/v1/admin/users/{user_id}", "404"),
        ("/api/v1/admin/plugins", "401"),
        ("/metrics", "200"),  # the first scrape, seen by the second
    ):
        labels = {"method": "GET", "route": route_, "status": status, "plugin": ""}
        assert grew(before, after, "arcana_http_requests_total", **labels) >= 1, route_


def test_a_method_token_outside_the_standard_ones_is_other(kernels: Kernels) -> None:
    kernel = serve(kernels, "app", {"h": reply({})}, [route("GET", "/api/h", "h", public=True)])

    async def scenario(client: httpx.AsyncClient) -> None:
        await client.request("BREW", "/api/h")
        await client.request("X-SCAN-1", "/api/h")

    before, after = scraped_around(kernel, scenario)
    assert (
        grew(before, after, "arcana_http_requests_total", method="OTHER", route="<unmatched>", status="405", plugin="")
        == 2
    )
    assert not {"BREW", "X-SCAN-1"} & label_values(after, "arcana_http_requests_total", "method")


def test_a_trapping_plugin_is_a_500_and_a_trap_in_the_plugin_call_outcomes(kernels: Kernels) -> None:
    kernel = serve(kernels, "trapper", {"boom": trap()}, [route("POST", "/api/boom", "boom", public=True)])

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/boom", json={})).status_code == 500

    before, after = scraped_around(kernel, scenario)
    http = {"method": "POST", "route": "/api/boom", "status": "500", "plugin": "trapper"}
    assert grew(before, after, "arcana_http_requests_total", **http) == 1
    assert grew(before, after, "arcana_plugin_calls_total", plugin="trapper", outcome="trap") == 1
    assert grew(before, after, "arcana_plugin_calls_total", plugin="trapper", outcome="error") == 0


def test_werkzeug_rules_read_as_plugin_templates() -> None:
    assert kernel_template("/api/v1/admin/users/<user_id>") == "/api/v1/admin/users/{user_id}"
    assert kernel_template("/a/<int:n>/b/<path:rest>") == "/a/{n}/b/{rest}"
    assert kernel_template("/health") == "/health"
