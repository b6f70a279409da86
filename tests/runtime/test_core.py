"""The request core in process: what a plugin receives, who gets in, and how every failure is answered."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest

from arcana.core import request_id
from arcana.descriptors import DescriptorSet
from arcana.envelopes import HttpRequest, HttpResponse
from arcana.errors import (
    ArcanaError,
    ErrorCode,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    PluginFailed,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)
from arcana.kernel import Kernel
from arcana.types import CallContext
from fakes import (
    REQUEST_ID_CASES,
    FakePlugin,
    Kernels,
    greeter_descriptors,
    host,
    manifest_toml,
    mint,
    reply,
    route,
    write_plugin,
)

GREETER = DescriptorSet.parse(greeter_descriptors())


def echo(envelope: Any, _context: CallContext) -> Any:
    return {"status": 201, "headers": {"X-Seen": "yes"}, "body": {"got": envelope}}


def app(kernels: Kernels, handlers: Mapping[str, Any], routes: list[dict[str, Any]], **manifest: Any) -> FakePlugin:
    """Serve one plugin 'app' with these handlers and routes from a started kernel's folder."""
    plugin = kernels.engine.define("app", FakePlugin(dict(handlers), **manifest.pop("fake", {})))
    write_plugin(kernels.plugins, manifest_toml("app", routes=routes, **manifest))
    return plugin


def started(kernels: Kernels) -> Kernel:
    kernel = kernels()
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == (), kernel.plugins_view().failures
    return kernel


def http(
    kernel: Kernel,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    query: Mapping[str, list[str]] | None = None,
    authorization: str = "",
    rid: str = "rid-1",
    traceparent: str = "",
) -> HttpResponse:
    match = kernel.core.route_http(method, path)
    assert match is not None, f"no route for {method} {path}"
    req = HttpRequest(method, path, dict(query or {}), dict(headers or {}), body, rid, traceparent, authorization)
    return asyncio.run(kernel.core.call_http(match, req))


def token(roles: tuple[str, ...] = ("user",), sub: str = "u-1") -> str:
    return f"Bearer {mint(sub, roles)}"


# ---------------------------------------------------------------- what the plugin receives


def test_a_json_route_receives_the_whole_envelope_and_its_answer_is_served(kernels: Kernels) -> None:
    plugin = app(kernels, {"echo": echo}, [route("POST", "/things/{id}", "echo", roles=["user"])])
    kernel = started(kernels)
    response = http(
        kernel,
        "POST",
        "/things/42",
        headers={"content-type": "application/json", "x-extra": "1"},
        body=b'{"a": [1, 2]}',
        query={"q": ["x", "y"]},
        authorization=token(("user",), "u-7"),
        rid="rid-envelope",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert (response.status, response.headers["x-seen"]) == (201, "yes")
    assert response.headers["content-type"] == "application/json"
    envelope = json.loads(response.body)["got"]
    assert envelope == {
        "kind": "http",
        "method": "POST",
        "path": "/things/42",
        "route": "/things/{id}",
        "params": {"id": "42"},
        "query": {"q": ["x", "y"]},
        "headers": {"content-type": "application/json", "x-extra": "1"},
        "principal": {"sub": "u-7", "roles": ["user"]},
        "request_id": "rid-envelope",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "body": {"a": [1, 2]},
    }
    (call,) = plugin.calls
    assert (call.context.plugin, call.context.version, call.context.request_id) == ("app", "1.0.0", "rid-envelope")
    assert call.context.principal == {"sub": "u-7", "roles": ["user"]}


def test_a_body_that_is_not_json_travels_as_base64(kernels: Kernels) -> None:
    app(kernels, {"echo": echo}, [route("PUT", "/blob", "echo", public=True)])
    kernel = started(kernels)
    response = http(kernel, "PUT", "/blob", headers={"content-type": "image/png"}, body=b"\x89PNG\x00")
    envelope = json.loads(response.body)["got"]
    assert "body" not in envelope and base64.b64decode(envelope["body_base64"]) == b"\x89PNG\x00"


def test_invalid_json_under_a_json_content_type_is_refused_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = app(kernels, {"echo": echo}, [route("POST", "/j", "echo", public=True)])
    kernel = started(kernels)
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        http(kernel, "POST", "/j", headers={"content-type": "application/json"}, body=b"{nope")
    assert plugin.calls == []


def test_a_raw_route_passes_bytes_both_ways_with_its_content_type(kernels: Kernels) -> None:
    plugin = app(
        kernels,
        {"raw": lambda data, _c: data[::-1]},
        [route("POST", "/raw", "raw", public=True, abi="raw", content_type="text/plain")],
    )
    kernel = started(kernels)
    response = http(kernel, "POST", "/raw", body=b"\x00\xffabc")
    assert (response.status, response.body, response.headers) == (200, b"cba\xff\x00", {"content-type": "text/plain"})
    assert plugin.calls[0].data == b"\x00\xffabc"


def test_a_call_context_carries_a_deadline_from_the_plugins_time_limit(kernels: Kernels) -> None:
    plugin = app(kernels, {"h": reply({})}, [route("GET", "/h", "h", public=True)], limits={"timeout_ms": 1500})
    kernel = started(kernels)
    before = time.monotonic()
    http(kernel, "GET", "/h")
    deadline = plugin.calls[0].context.deadline
    # Host functions see the limit less the answer reserve (executor.answer_reserve_ms), so the plugin can reply.
    reserve = kernel.config.executor.answer_reserve_ms / 1000
    assert before + 1.5 - reserve <= deadline <= time.monotonic() + 1.5 - reserve


# ---------------------------------------------------------------- what the plugin answers


def test_an_error_the_plugin_returns_keeps_its_code_and_message(kernels: Kernels) -> None:
    app(kernels, {"h": reply({"error": {"code": "CONFLICT", "message": "already taken"}})}, [route("GET", "/h", "h")])
    kernel = started(kernels)
    with pytest.raises(ArcanaError) as caught:
        http(kernel, "GET", "/h", authorization=token())
    assert (caught.value.code, caught.value.message) == (ErrorCode.CONFLICT, "already taken")


JUNK = {
    "not JSON": b"\x00\x01 not json",
    "a JSON array": b"[1, 2]",
    "a status out of range": b'{"status": 99}',
    "a boolean status": b'{"status": true}',
    "an unknown field": b'{"status": 200, "cookies": []}',
    "headers that are not strings": b'{"headers": {"x": 1}}',
    "bad base64": b'{"body_base64": "***"}',
    "an unknown error code": b'{"error": {"code": "TEAPOT", "message": "no"}}',
}


@pytest.mark.parametrize("junk", sorted(JUNK))
def test_junk_from_the_plugin_is_plugin_failed_with_the_reason_only_in_the_log(
    kernels: Kernels, caplog: pytest.LogCaptureFixture, junk: str
) -> None:
    app(kernels, {"h": reply(JUNK[junk])}, [route("GET", "/h", "h", public=True)])
    kernel = started(kernels)
    with caplog.at_level(logging.WARNING, "arcana.core"), pytest.raises(PluginFailed) as caught:
        http(kernel, "GET", "/h", rid="rid-junk")
    assert caught.value.message == "plugin 'app' returned a malformed response"
    (record,) = [r for r in caplog.records if r.name == "arcana.core"]
    assert record.getMessage() == f"plugin output refused: {caught.value.detail}"
    assert (record.plugin, record.request_id) == ("app", "rid-junk")  # type: ignore[attr-defined]


def test_an_exception_inside_the_kernel_is_internal_with_the_trace_only_in_the_log(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_e: Any, _c: CallContext) -> Any:
        raise RuntimeError("secret detail from inside")

    app(kernels, {"h": broken}, [route("GET", "/h", "h", public=True)])
    kernel = started(kernels)
    with caplog.at_level(logging.ERROR, "arcana.core"), pytest.raises(InternalError) as caught:
        http(kernel, "GET", "/h", rid="rid-bug")
    assert caught.value.message == "internal error" and "secret" not in str(caught.value)
    (record,) = [r for r in caplog.records if r.name == "arcana.core"]
    assert record.exc_info is not None and "secret detail from inside" in str(record.exc_info[1])
    assert (record.request_id, record.plugin) == ("rid-bug", "app")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- who gets in


def test_a_protected_route_refuses_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = app(kernels, {"h": reply({})}, [route("GET", "/admin-only", "h", roles=["admin"])])
    kernel = started(kernels)
    with pytest.raises(Unauthorized, match="authentication required"):
        http(kernel, "GET", "/admin-only")
    with pytest.raises(Forbidden, match="admin"):
        http(kernel, "GET", "/admin-only", authorization=token(("user",)))
    with pytest.raises(Unauthorized):
        http(kernel, "GET", "/admin-only", authorization=f"Bearer {mint('u', ['admin'], secret='x' * 40)}")
    with pytest.raises(TokenExpired):
        http(kernel, "GET", "/admin-only", authorization=f"Bearer {mint('u', ['admin'], ttl=-60)}")
    with pytest.raises(Unauthorized, match="Bearer"):
        http(kernel, "GET", "/admin-only", authorization="Basic dTpw")
    assert plugin.calls == []
    http(kernel, "GET", "/admin-only", authorization=token(("admin",)))
    assert len(plugin.calls) == 1


def test_a_route_without_roles_admits_any_authenticated_caller(kernels: Kernels) -> None:
    app(kernels, {"h": reply({})}, [route("GET", "/mine", "h")])
    kernel = started(kernels)
    with pytest.raises(Unauthorized):
        http(kernel, "GET", "/mine")
    assert http(kernel, "GET", "/mine", authorization=token(())).status == 200


def test_a_public_route_runs_without_a_principal_but_still_refuses_a_bad_token(kernels: Kernels) -> None:
    plugin = app(kernels, {"echo": echo}, [route("GET", "/open", "echo", public=True)])
    kernel = started(kernels)
    assert json.loads(http(kernel, "GET", "/open").body)["got"]["principal"] is None
    got = json.loads(http(kernel, "GET", "/open", authorization=token(("user",), "u-2")).body)["got"]
    assert got["principal"] == {"sub": "u-2", "roles": ["user"]}
    with pytest.raises(Unauthorized):
        http(kernel, "GET", "/open", authorization="Bearer not-a-jwt")
    assert len(plugin.calls) == 2


# ---------------------------------------------------------------- routing and request ids


def test_routing_answers_none_for_an_unknown_path_and_405_with_the_allowed_methods(kernels: Kernels) -> None:
    app(kernels, {"h": reply({})}, [route("GET", "/r", "h"), route("DELETE", "/r", "h")])
    kernel = started(kernels)
    assert kernel.core.route_http("GET", "/nothing-here") is None
    with pytest.raises(MethodNotAllowed) as caught:
        kernel.core.route_http("POST", "/r")
    assert caught.value.allowed == frozenset({"GET", "DELETE"})


@pytest.mark.parametrize(("given", "kept"), REQUEST_ID_CASES)
def test_a_request_id_is_kept_when_it_is_a_sane_token_and_replaced_otherwise(given: str, kept: bool) -> None:
    chosen = request_id(given)
    assert (chosen == given) is kept
    if not kept:
        assert len(chosen) == 32 and chosen.isalnum()


# ---------------------------------------------------------------- gRPC through the core


def greeter(kernels: Kernels, handlers: Mapping[str, Any], entries: list[dict[str, Any]]) -> FakePlugin:
    plugin = kernels.engine.define("greeter", FakePlugin(dict(handlers)))
    path = write_plugin(kernels.plugins, manifest_toml("greeter", grpc=entries))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())
    return plugin


def grpc_call(kernel: Kernel, method: str, data: bytes, authorization: str = "", **metadata: str) -> bytes:
    target = kernel.core.rpc_target(method)
    assert target is not None, f"no gRPC method {method}"
    return asyncio.run(kernel.core.call_grpc(target, data, dict(metadata), "rid-g", authorization))


def count_letters(envelope: Any, _context: CallContext) -> Any:
    return {"message": {"count": len(envelope["message"].get("name", ""))}}


def test_a_grpc_call_is_transcoded_to_an_envelope_and_back(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": count_letters}, [{"method": "fake.v1.Greeter/Say", "handler": "say"}])
    kernel = started(kernels)
    named, counted = GREETER.method("fake.v1.Greeter/Say").input_type, GREETER.method("fake.v1.Greeter/Say").output_type
    wire = grpc_call(kernel, "/fake.v1.Greeter/Say", named(name="hello").SerializeToString(), token(), traceparent="tp")
    assert counted.FromString(wire).count == 5
    assert plugin.calls[0].input == {
        "kind": "grpc",
        "method": "fake.v1.Greeter/Say",
        "message": {"name": "hello"},
        "metadata": {"traceparent": "tp"},
        "principal": {"sub": "u-1", "roles": ["user"]},
        "request_id": "rid-g",
        "traceparent": "tp",
    }


def test_undecodable_grpc_bytes_are_invalid_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": count_letters}, [{"method": "fake.v1.Greeter/Say", "handler": "say"}])
    kernel = started(kernels)
    with pytest.raises(ValidationFailed, match=r"not a valid fake\.v1\.Named"):
        grpc_call(kernel, "/fake.v1.Greeter/Say", b"\xff\xff\xff", token())
    assert plugin.calls == []


def test_a_grpc_reply_that_does_not_fit_its_type_is_plugin_failed(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    say = [{"method": "fake.v1.Greeter/Say", "handler": "say"}]
    greeter(kernels, {"say": reply({"message": {"count": "many"}})}, say)
    kernel = started(kernels)
    with caplog.at_level(logging.WARNING, "arcana.core"), pytest.raises(PluginFailed, match="malformed response"):
        grpc_call(kernel, "/fake.v1.Greeter/Say", b"", token())
    assert any("fake.v1.Counted" in r.getMessage() for r in caplog.records)


def test_a_raw_grpc_method_passes_wire_bytes_through(kernels: Kernels) -> None:
    greeter(
        kernels,
        {"raw": lambda data, _c: b"\x08\x07"},
        [{"method": "fake.v1.Greeter/Count", "handler": "raw", "abi": "raw", "public": True}],
    )
    kernel = started(kernels)
    assert grpc_call(kernel, "/fake.v1.Greeter/Count", b"\x0a\x01x") == b"\x08\x07"


def test_a_raw_grpc_method_refuses_malformed_bytes_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = greeter(
        kernels,
        {"raw": lambda data, _c: b"\x08\x07"},
        [{"method": "fake.v1.Greeter/Count", "handler": "raw", "abi": "raw", "public": True}],
    )
    kernel = started(kernels)
    for garbage in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28"):  # bad tag, truncated, bad UTF-8
        with pytest.raises(ValidationFailed, match=r"not a valid fake\.v1\.Named"):
            grpc_call(kernel, "/fake.v1.Greeter/Count", garbage)
    assert plugin.calls == []
    breaker = kernel.registry.snapshot.plugins["greeter"].pool.breaker
    assert breaker is not None and breaker.state.value == "closed"  # a client's garbage is not the plugin's failure


def test_a_protected_grpc_method_refuses_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = greeter(
        kernels, {"say": count_letters}, [{"method": "fake.v1.Greeter/Say", "handler": "say", "roles": ["admin"]}]
    )
    kernel = started(kernels)
    with pytest.raises(Unauthorized):
        grpc_call(kernel, "/fake.v1.Greeter/Say", b"")
    with pytest.raises(Forbidden):
        grpc_call(kernel, "/fake.v1.Greeter/Say", b"", token(("user",)))
    assert plugin.calls == []


# ---------------------------------------------------------------- host calls


def logs_twice(_envelope: Any, _context: CallContext) -> Any:
    first = host("log", {"level": "warn", "message": "from the guest", "fields": {"n": 1}})
    second = host("log", b"{not json")
    return {"body": {"first": first, "second": second}}


def test_a_host_call_runs_in_the_calls_context_and_a_bad_request_is_an_error_value(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    app(
        kernels,
        {"h": logs_twice},
        [route("GET", "/logs", "h", public=True)],
        capabilities={"log": True},
        fake={"imports": ("log",)},
    )
    kernel = started(kernels)
    with caplog.at_level(logging.INFO, "arcana.plugin"):
        body = json.loads(http(kernel, "GET", "/logs", rid="rid-host").body)
    assert body["first"] == {}
    assert body["second"]["error"]["code"] == "VALIDATION_FAILED"
    assert body["second"]["error"]["message"].startswith("log was given invalid JSON: ")
    (record,) = [r for r in caplog.records if r.name == "arcana.plugin"]
    assert (record.getMessage(), record.levelno) == ("from the guest", logging.WARNING)
    assert (record.plugin, record.request_id, record.fields) == ("app", "rid-host", {"n": 1})  # type: ignore[attr-defined]


def test_a_plugin_importing_a_host_function_it_did_not_request_is_refused_at_load(kernels: Kernels) -> None:
    kernels.engine.define("sneaky", FakePlugin({"h": reply({})}, imports=("log",)))
    write_plugin(kernels.plugins, manifest_toml("sneaky", routes=[route("GET", "/s", "h", public=True)]))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    (failure,) = kernel.plugins_view().failures
    assert "import extism:host/user::log" in failure.errors[0] and "does not request" in failure.errors[0]
    assert kernel.core.route_http("GET", "/s") is None


def test_a_plugin_named_with_underscores_loads_serves_and_keeps_its_own_kv(kernels: Kernels) -> None:
    """Extism's own examples use '_' (count_vowels); the name is a kv namespace, a grant key and a label."""

    def counter(_envelope: Any, context: CallContext) -> Any:
        before = host("kv_get", {"key": "n"})
        host("kv_set", {"key": "n", "value": context.plugin})
        return {"body": {"plugin": context.plugin, "before": before}}

    for name, path in (("count_vowels", "/under"), ("count-vowels", "/dash")):
        kernels.engine.define(name, FakePlugin({"h": counter}, imports=("kv_get", "kv_set")))
        routes = [route("GET", path, "h", public=True)]
        write_plugin(kernels.plugins, manifest_toml(name, routes=routes, capabilities={"store": True}))
    kernel = kernels(**{"GRANTS__COUNT_VOWELS": '["store"]', "GRANTS__COUNT-VOWELS": '["store"]'})
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == (), kernel.plugins_view().failures
    assert [p.name for p in kernel.plugins_view().plugins] == ["count-vowels", "count_vowels"]
    first = json.loads(http(kernel, "GET", "/under").body)
    assert first == {"plugin": "count_vowels", "before": {"found": False, "value": None}}
    # The other name's namespace is its own: it does not see what count_vowels wrote.
    assert json.loads(http(kernel, "GET", "/dash").body)["before"] == {"found": False, "value": None}
    assert json.loads(http(kernel, "GET", "/under").body)["before"] == {"found": True, "value": "count_vowels"}


@pytest.mark.parametrize(
    "output",
    [b'{"count": 3, "total": 3, "vowels": "aeiouAEIOU"}', b"Hello, world!", b"[3]"],
    ids=["count_vowels's answer", "plain text", "a JSON array"],
)
def test_a_raw_looking_answer_on_an_envelope_route_hints_abi_raw_in_the_log_only(
    kernels: Kernels, caplog: pytest.LogCaptureFixture, output: bytes
) -> None:
    app(kernels, {"h": reply(output)}, [route("GET", "/h", "h", public=True)])
    kernel = started(kernels)
    with caplog.at_level(logging.WARNING, "arcana.core"), pytest.raises(PluginFailed) as caught:
        http(kernel, "GET", "/h", rid="rid-raw")
    assert caught.value.message == "plugin 'app' returned a malformed response"  # the client's: no hint
    (record,) = [r for r in caplog.records if r.name == "arcana.core"]
    assert 'set abi = "raw"' in record.getMessage() and "Drop a plugin in" in record.getMessage()


def test_an_envelope_with_a_bad_field_gets_no_abi_hint(kernels: Kernels, caplog: pytest.LogCaptureFixture) -> None:
    app(kernels, {"h": reply({"status": 99})}, [route("GET", "/h", "h", public=True)])
    kernel = started(kernels)
    with caplog.at_level(logging.WARNING, "arcana.core"), pytest.raises(PluginFailed):
        http(kernel, "GET", "/h")
    (record,) = [r for r in caplog.records if r.name == "arcana.core"]
    assert "status must be an integer" in record.getMessage() and "abi" not in record.getMessage()
