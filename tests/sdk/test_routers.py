"""The routers of the three guest SDKs on envelopes written by hand: key order, escapes, other kinds.

The kernel writes `method` and `route` near the top of the envelope with
plain ASCII; a router must not depend on it. These calls run the router
probes (tests/fixtures/plugins/zrouter, asrouter, crouter) under Extism with
envelopes a kernel could equally write: the body first, holding `method` and
`route` members of its own, JSON escapes in the template, a path parameter
outside the BMP. The C header reads the envelope with its own small JSON
reader, so these are mostly its tests; Zig and AssemblyScript parse the whole
envelope and must agree. Through a real server: tests/e2e/test_sdk_routers.py.
"""

from __future__ import annotations

import json
from typing import Any

import extism
import pytest
import wasmtime

from conftest import FIXTURES, build_cached

pytestmark = pytest.mark.toolchain

NAMESPACE = "extism:host/user"
PROBES = {"zig": "zrouter", "as": "asrouter", "c": "crouter"}


def _loaded(wasm: bytes) -> extism.Plugin:
    """The probe under Extism; a host function it imports (asrouter's auth) answers {} and is never called here."""

    def answer(plugin: extism.CurrentPlugin, params: list[Any], results: list[Any], *user_data: Any) -> None:
        plugin.return_bytes(results[0], b"{}")

    imports = wasmtime.Module(wasmtime.Engine(), wasm).imports
    signature = ([extism.ValType.I64], [extism.ValType.I64])
    stubs = [
        extism.host_fn(name=i.name, namespace=NAMESPACE, signature=signature)(answer)
        for i in imports
        if i.module == NAMESPACE and i.name is not None
    ]
    return extism.Plugin({"wasm": [{"data": wasm}], "timeout_ms": 5000}, functions=stubs)


@pytest.fixture(scope="module")
def probes() -> dict[str, extism.Plugin]:
    return {sdk: _loaded(build_cached(FIXTURES / name).read_bytes()) for sdk, name in PROBES.items()}


def call(probe: extism.Plugin, envelope: str) -> Any:
    return json.loads(bytes(probe.call("api", envelope.encode())))


def items(sdk: str) -> str:
    return f"/probe/router/{sdk}/items/{{id}}"


@pytest.mark.parametrize("sdk", PROBES)
def test_members_after_a_body_holding_decoy_method_and_route_members(
    probes: dict[str, extism.Plugin], sdk: str
) -> None:
    decoy = {"route": f"/probe/router/{sdk}/stray", "method": "DELETE", "params": {"id": "no"}, "x": [{"route": "}"}]}
    envelope = json.dumps(
        {"body": decoy, "kind": "http", "params": {"id": "yes"}, "route": items(sdk), "method": "PUT"}, indent=2
    )
    out = call(probes[sdk], envelope)
    assert out["status"] == 200
    assert out["body"] == {"handler": "put", "method": "PUT", "route": items(sdk), "id": "yes"}


@pytest.mark.parametrize("sdk", PROBES)
def test_escaped_template_and_parameter_decode_before_they_are_compared(
    probes: dict[str, extism.Plugin], sdk: str
) -> None:
    # json.dumps escapes every non-ASCII character; "/" may be written "\/"; the id holds a surrogate pair.
    template = items(sdk).replace("/", "\\/").replace("items", "\\u0069tems")
    envelope = (
        '{"kind":"http","method":"G\\u0045T","route":"'
        + template
        + '","params":{"id":'
        + json.dumps('é"\\\n😀 ✓')
        + '},"query":{}}'
    )
    out = call(probes[sdk], envelope)
    assert out["body"] == {"handler": "get", "method": "GET", "route": items(sdk), "id": 'é"\\\n😀 ✓'}


@pytest.mark.parametrize("sdk", PROBES)
def test_a_job_envelope_is_not_found_by_a_router(probes: dict[str, extism.Plugin], sdk: str) -> None:
    job = {"kind": "job", "job": {"id": "j1", "type": "t", "payload": None}, "request_id": "j1.1", "traceparent": ""}
    out = call(probes[sdk], json.dumps(job))
    assert out["error"]["code"] == "NOT_FOUND"
    assert "(no route: not an http envelope)" in out["error"]["message"]


@pytest.mark.parametrize("sdk", PROBES)
def test_the_template_must_match_whole_not_as_a_prefix(probes: dict[str, extism.Plugin], sdk: str) -> None:
    for route in (items(sdk) + "/", items(sdk)[:-1], "/probe/router/" + sdk + "/items/{ID}"):
        out = call(probes[sdk], json.dumps({"kind": "http", "method": "GET", "route": route, "params": {}}))
        assert out["error"]["code"] == "NOT_FOUND", route


@pytest.mark.parametrize("sdk", PROBES)
def test_the_method_must_match_exactly_and_a_405_lists_the_allowed_ones(
    probes: dict[str, extism.Plugin], sdk: str
) -> None:
    out = call(probes[sdk], json.dumps({"kind": "http", "method": "get", "route": items(sdk), "params": {}}))
    assert out["error"] == {
        "code": "METHOD_NOT_ALLOWED",
        "message": f"get is not allowed on {items(sdk)} (allowed: GET, PUT)",
    }
