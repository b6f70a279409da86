"""The REST edge in process: the ASGI app from create_rest_app driven by httpx, plugins on the fake engine."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import pytest

from arcana.edge import plugin_http
from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from arcana.types import CallContext
from fakes import (
    REQUEST_ID_CASES,
    FakePlugin,
    Gate,
    Kernels,
    bearer,
    entered,
    manifest_toml,
    reply,
    route,
    spin,
    trap,
    write_plugin,
)

Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def echo(envelope: Any, _context: CallContext) -> Any:
    return {"body": envelope}


def serve(kernels: Kernels, handlers: Mapping[str, Any], routes: list[dict[str, Any]], **manifest: Any) -> FakePlugin:
    plugin = kernels.engine.define("app", FakePlugin(dict(handlers)))
    write_plugin(kernels.plugins, manifest_toml("app", routes=routes, **manifest))
    return plugin


def run(kernel: Kernel, scenario: Scenario) -> Any:
    """Load the kernel's plugins, then run ``scenario`` with a client on the REST app."""

    async def main() -> Any:
        await kernel.load_all()
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            return await scenario(client)

    return asyncio.run(main())


def request(kernel: Kernel, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, url, **kwargs)

    return run(kernel, scenario)


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert set(body) == {"code", "message", "request_id", "timestamp"}
    return response.status_code, body["code"]


def test_the_plugin_receives_the_envelope_the_edge_parsed(kernels: Kernels) -> None:
    serve(kernels, {"echo": echo}, [route("POST", "/api/things/{id}", "echo", roles=["user"])])
    response = request(
        kernels(),
        "POST",
        "/api/things/a%20b?tag=x&tag=y&empty=",
        json={"n": 1},
        headers={**bearer("u-9", ["user"]), "X-Request-Id": "rid-edge-1", "traceparent": "tp-1", "X-Multi": "a"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "rid-edge-1"
    envelope = response.json()
    headers = envelope.pop("headers")
    assert "authorization" not in headers
    assert (headers["x-multi"], headers["content-type"]) == ("a", "application/json")
    assert envelope == {
        "kind": "http",
        "method": "POST",
        "path": "/api/things/a b",
        "route": "/api/things/{id}",
        "params": {"id": "a b"},
        "query": {"tag": ["x", "y"], "empty": [""]},
        "principal": {"sub": "u-9", "roles": ["user"]},
        "request_id": "rid-edge-1",
        "traceparent": "tp-1",
        "body": {"n": 1},
    }


def test_401_and_403_are_answered_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = serve(kernels, {"h": reply({})}, [route("GET", "/p", "h", roles=["admin"])])

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.get("/p"),
            await client.get("/p", headers={"authorization": "Bearer junk"}),
            await client.get("/p", headers=bearer("u", ["user"])),
        ]

    anonymous, forged, user = run(kernels(), scenario)
    assert error_of(anonymous) == (401, "UNAUTHORIZED") and anonymous.headers["www-authenticate"] == "Bearer"
    assert error_of(forged) == (401, "UNAUTHORIZED")
    assert error_of(user) == (403, "FORBIDDEN") and "www-authenticate" not in user.headers
    assert plugin.calls == []


def test_a_method_the_path_does_not_serve_is_405_with_allow(kernels: Kernels) -> None:
    plugin = serve(kernels, {"h": reply({})}, [route("GET", "/m", "h"), route("PUT", "/m", "h")])
    response = request(kernels(), "POST", "/m", content=b"x")
    assert error_of(response) == (405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, PUT"
    assert plugin.calls == []


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(kernels: Kernels) -> None:
    plugin = serve(kernels, {"echo": echo}, [route("POST", "/b", "echo", public=True)])
    kernel = kernels(SERVER__MAX_BODY_BYTES="64")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 10

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/b", content=b"x" * 65),
            await client.post("/b", content=chunks()),  # no content-length: counted as it arrives
            await client.post("/b", content=b"x" * 64, headers={"content-type": "text/plain"}),
        ]

    declared, streamed, fits = run(kernel, scenario)
    assert error_of(declared) == (413, "PAYLOAD_TOO_LARGE")
    assert "content-length" not in streamed.request.headers
    assert error_of(streamed) == (413, "PAYLOAD_TOO_LARGE")
    assert fits.status_code == 200 and len(plugin.calls) == 1


@pytest.mark.parametrize(("given", "kept"), REQUEST_ID_CASES)
def test_the_request_id_rule_on_plugin_routes_and_errors(kernels: Kernels, given: str, kept: bool) -> None:
    plugin = serve(kernels, {"echo": echo}, [route("GET", "/ok", "echo", public=True), route("GET", "/no", "echo")])

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = {"x-request-id": given.encode("latin-1")}  # as the bytes a client may send
        return [await client.get("/ok", headers=headers), await client.get("/no", headers=headers)]

    ok, refused = run(kernels(), scenario)
    rid = ok.headers["x-request-id"]
    assert (rid == given) is kept
    assert ok.json()["request_id"] == rid == plugin.calls[0].context.request_id
    assert (refused.headers["x-request-id"] == given) is kept
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_junk_from_the_plugin_is_500_plugin_failed_without_details(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    serve(kernels, {"h": reply(b'{"status": 200, "secret_field": "leak"}')}, [route("GET", "/j", "h", public=True)])
    with caplog.at_level(logging.WARNING):
        response = request(kernels(), "GET", "/j")
    assert error_of(response) == (500, "PLUGIN_FAILED")
    assert response.json()["message"] == "plugin 'app' returned a malformed response"
    assert "secret_field" not in response.text
    assert any("secret_field" in r.getMessage() for r in caplog.records)  # the operator sees the reason


def test_an_exception_inside_the_kernel_is_500_internal_with_the_trace_only_in_the_log(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_e: Any, _c: CallContext) -> Any:
        raise KeyError("kernel-internal-detail")

    serve(kernels, {"h": broken}, [route("GET", "/k", "h", public=True)])
    with caplog.at_level(logging.ERROR):
        response = request(kernels(), "GET", "/k", headers={"x-request-id": "rid-k"})
    assert error_of(response) == (500, "INTERNAL")
    assert response.json()["message"] == "internal error"
    assert "kernel-internal-detail" not in response.text and "Traceback" not in response.text
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "kernel-internal-detail" in str(record.exc_info[1]) and record.request_id == "rid-k"  # type: ignore[attr-defined]


def test_a_failure_while_parsing_the_request_is_500_internal_too(
    kernels: Kernels, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = serve(kernels, {"echo": echo}, [route("GET", "/q", "echo", public=True)])

    def broken_parse(*_args: Any, **_kwargs: Any) -> Any:
        raise UnicodeError("parser-internal-detail")

    monkeypatch.setattr(plugin_http, "parse_qs", broken_parse)
    with caplog.at_level(logging.ERROR):
        response = request(kernels(), "GET", "/q?x=1")
    assert error_of(response) == (500, "INTERNAL") and "parser-internal-detail" not in response.text
    assert any(r.exc_info and "parser-internal-detail" in str(r.exc_info[1]) for r in caplog.records)
    assert plugin.calls == []


def test_a_trap_is_500_and_the_next_request_runs_on_a_fresh_instance(kernels: Kernels) -> None:
    def traps_on_demand(envelope: Any, context: CallContext) -> Any:
        return trap()(envelope, context) if envelope["query"].get("trap") else {"body": "fine"}

    plugin = serve(kernels, {"h": traps_on_demand}, [route("GET", "/t", "h", public=True)])

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get("/t"), await client.get("/t?trap=1"), await client.get("/t")]

    before, trapped, after = run(kernels(), scenario)
    assert before.status_code == after.status_code == 200
    assert error_of(trapped) == (500, "PLUGIN_FAILED") and "unreachable" not in trapped.text
    first, second, third = (c.instance for c in plugin.calls)
    assert first == second != third


def test_a_plugin_past_its_time_limit_is_504(kernels: Kernels) -> None:
    serve(kernels, {"loop": spin()}, [route("GET", "/slow", "loop", public=True)], limits={"timeout_ms": 20})
    response = request(kernels(), "GET", "/slow")
    assert error_of(response) == (504, "PLUGIN_TIMEOUT")


def test_a_plugin_at_its_concurrency_limit_is_503(kernels: Kernels) -> None:
    gate = Gate()
    limits = {"timeout_ms": 50, "max_concurrency": 1}
    serve(kernels, {"g": gate}, [route("GET", "/g", "g", public=True)], limits=limits)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        first = asyncio.create_task(client.get("/g"))
        try:
            await entered(gate)
            second = await client.get("/g")
        finally:
            gate.release()
        return await first, second

    first, second = run(kernels(), scenario)
    assert first.status_code == 200
    assert error_of(second) == (503, "SERVICE_UNAVAILABLE")


def test_a_plugins_own_error_is_answered_with_its_status(kernels: Kernels) -> None:
    serve(
        kernels,
        {"h": reply({"error": {"code": "UNAUTHORIZED", "message": "sign in to the plugin"}})},
        [route("GET", "/own", "h", public=True)],
    )
    response = request(kernels(), "GET", "/own")
    assert error_of(response) == (401, "UNAUTHORIZED")
    assert response.json()["message"] == "sign in to the plugin"
    assert response.headers["www-authenticate"] == "Bearer"


def test_paths_no_plugin_serves_fall_through_to_the_kernel_app(kernels: Kernels) -> None:
    serve(kernels, {"h": reply({})}, [route("GET", "/p", "h", public=True)])

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get("/nowhere", headers={"x-request-id": "rid-404"}), await client.get("/health")]

    missing, health = run(kernels(), scenario)
    assert error_of(missing) == (404, "NOT_FOUND") and missing.headers["x-request-id"] == "rid-404"
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_the_admin_listing_needs_an_admin_and_shows_plugins_and_failures(kernels: Kernels) -> None:
    serve(kernels, {"h": reply({})}, [route("GET", "/p", "h", public=True)])
    write_plugin(kernels.plugins, manifest_toml("broken", "not-semver"), file="broken")

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.get("/api/v1/admin/plugins"),
            await client.get("/api/v1/admin/plugins", headers=bearer("u", ["user"])),
            await client.get("/api/v1/admin/plugins", headers=bearer("root", ["admin"])),
        ]

    anonymous, user, admin = run(kernels(), scenario)
    assert error_of(anonymous) == (401, "UNAUTHORIZED") and error_of(user) == (403, "FORBIDDEN")
    listing = admin.json()
    assert [p["name"] for p in listing["plugins"]] == ["app"]
    assert [(f["name"], f["still_serving"]) for f in listing["failures"]] == [("broken", False)]


def test_an_exception_inside_a_kernel_route_is_500_internal_without_its_text(
    kernels: Kernels, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = kernels()

    def broken() -> Any:
        raise RuntimeError("admin-internal-detail")

    monkeypatch.setattr(kernel, "plugins_view", broken)
    with caplog.at_level(logging.ERROR):
        response = request(kernel, "GET", "/api/v1/admin/plugins", headers=bearer("root", ["admin"]))
    assert error_of(response) == (500, "INTERNAL") and "admin-internal-detail" not in response.text
    assert any(r.exc_info and "admin-internal-detail" in str(r.exc_info[1]) for r in caplog.records)


def test_a_raw_route_answers_with_its_declared_content_type(kernels: Kernels) -> None:
    serve(
        kernels,
        {"raw": lambda data, _c: b"<" + data + b">"},
        [route("POST", "/raw", "raw", public=True, abi="raw", content_type="text/html")],
    )
    response = request(kernels(), "POST", "/raw", content=b"\x00hi")
    assert (response.status_code, response.content) == (200, b"<\x00hi>")
    assert response.headers["content-type"] == "text/html"
    assert json.loads(response.headers.get("content-length", "0")) == 5


@pytest.mark.parametrize("status", [204, 304])
def test_a_204_or_304_is_sent_without_a_body_or_content_length(kernels: Kernels, status: int) -> None:
    output = {"status": status, "body": {"ignored": True}, "headers": {"Content-Type": "text/plain", "X-Kept": "y"}}
    serve(kernels, {"h": reply(output)}, [route("GET", "/nothing", "h", public=True)])
    response = request(kernels(), "GET", "/nothing")
    assert (response.status_code, response.content) == (status, b"")
    assert "content-length" not in response.headers and "content-type" not in response.headers
    assert response.headers["x-kept"] == "y"
