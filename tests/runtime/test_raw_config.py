"""A plain Extism module on the raw ABI: its request and its settings through Extism config, on the real engine.

The fixture ``rawconfig`` (C against the Extism kernel alone, no Arcana header) answers, for each config key
it is sent (one a line), ``key=value`` when ``config_get`` finds it and ``key!`` when it does not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from arcana.config import load_config
from arcana.engine.extism_engine import ExtismEngine
from arcana.envelopes import HttpRequest
from arcana.errors import PluginLoadError
from arcana.kernel import Kernel
from arcana.loader import PluginLoader
from arcana.types import CallContext
from arcana_host.registry import Capabilities
from conftest import FIXTURES, build_cached, install
from fakes import TEST_SECRET, FakePlugin, Kernels, greeter_descriptors, manifest_toml, mint, route, write_plugin

MANIFEST = (FIXTURES / "rawconfig" / "plugin.toml").read_text()
ROUTE = "/api/v1/test/rawconfig/{id}"


@pytest.fixture(scope="module")
def rawconfig_wasm() -> Path:
    return build_cached(FIXTURES / "rawconfig")


@pytest.fixture
def real_kernels(tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernels]:
    """Kernels on the real Extism engine (the ``kernels`` fixture's, with the fake engine swapped out)."""
    monkeypatch.setenv("ARCANA_JWT_SECRET", TEST_SECRET)
    made = Kernels(tmp_path, ExtismEngine(), migrated_db)  # type: ignore[arg-type]
    yield made
    made.close()


def serving(kernels: Kernels, wasm: Path, **settings: str) -> Kernel:
    install(wasm, kernels.plugins, "rawconfig")
    kernel = kernels(**settings)
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == (), kernel.plugins_view().failures
    return kernel


def ask(
    kernel: Kernel,
    keys: list[str],
    path: str = "/api/v1/test/rawconfig/42",
    query: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    authorization: str = "",
    rid: str = "rid-1",
) -> dict[str, str | None]:
    """What the module read for each key: its value, or None when config_get found nothing."""
    match = kernel.core.route_http("POST", path)
    assert match is not None
    body = "".join(k + "\n" for k in keys).encode()
    req = HttpRequest("POST", path, dict(query or {}), dict(headers or {}), body, rid, "", authorization)
    response = asyncio.run(kernel.core.call_http(match, req))
    assert response.status == 200 and response.headers["content-type"] == "text/plain"
    return parse(response.body)


def parse(body: bytes) -> dict[str, str | None]:
    read: dict[str, str | None] = {}
    for line in body.decode(errors="replace").splitlines():
        key, eq, value = line.partition("=")
        read[key.removesuffix("!")] = value if eq else None
    return read


def test_a_raw_route_reads_its_method_path_params_query_and_config(real_kernels: Kernels, rawconfig_wasm: Path) -> None:
    kernel = serving(real_kernels, rawconfig_wasm)
    keys = [
        "arcana.kind",
        "arcana.method",
        "arcana.path",
        "arcana.route",
        "arcana.request_id",
        "arcana.param.id",
        "arcana.query.tag",
        "arcana.query.flag",
        "arcana.query",
        "arcana.header.x-colour",
        "arcana.principal.sub",
        "greeting",
        "colour",
        "nothing-here",
    ]
    query = {"tag": ["a", "b"], "flag": [""]}
    read = ask(kernel, keys, query=query, headers={"x-colour": "green"}, rid="rid-raw-1")
    assert read == {
        "arcana.kind": "http",
        "arcana.method": "POST",
        "arcana.path": "/api/v1/test/rawconfig/42",
        "arcana.route": ROUTE,
        "arcana.request_id": "rid-raw-1",
        "arcana.param.id": "42",
        "arcana.query.tag": "a",  # the first of a repeated name
        "arcana.query.flag": None,  # empty reads as absent (Extism's kernel gives no block for ""); see arcana.query
        "arcana.query": None,  # replaced just below: JSON, compared parsed
        "arcana.header.x-colour": "green",
        "arcana.principal.sub": None,  # anonymous
        "greeting": "hello",  # the manifest's [config] defaults
        "colour": "blue",
        "nothing-here": None,
    } | {"arcana.query": read["arcana.query"]}
    assert json.loads(read["arcana.query"] or "") == query


def test_a_second_call_on_the_same_instance_sees_none_of_the_firsts_keys(
    real_kernels: Kernels, rawconfig_wasm: Path
) -> None:
    kernel = serving(real_kernels, rawconfig_wasm)
    keys = ["arcana.param.id", "arcana.query.q", "arcana.principal.sub", "arcana.principal.roles", "greeting"]
    signed_in = f"Bearer {mint('u-first', ['user', 'editor'])}"
    first = ask(kernel, keys, "/api/v1/test/rawconfig/1", {"q": ["one"]}, authorization=signed_in)
    assert first == {
        "arcana.param.id": "1",
        "arcana.query.q": "one",
        "arcana.principal.sub": "u-first",
        "arcana.principal.roles": "user,editor",
        "greeting": "hello",
    }
    second = ask(kernel, keys, "/api/v1/test/rawconfig/2")
    assert second == {
        "arcana.param.id": "2",
        "arcana.query.q": None,
        "arcana.principal.sub": None,
        "arcana.principal.roles": None,
        "greeting": "hello",  # the plugin's own config stays
    }


def test_one_instance_called_twice_drops_the_keys_the_second_call_is_not_given(rawconfig_wasm: Path) -> None:
    """The engine itself, one instance by hand: what the pool test above relies on it reusing."""
    compiled = ExtismEngine().compile(
        rawconfig_wasm.read_bytes(), [], memory_mb=16, timeout_ms=1000, config={"greeting": "hey"}
    )
    instance = compiled.instantiate()
    keys = b"arcana.a\narcana.b\ngreeting\n"
    first = CallContext("rawconfig", "1.0.0", call_config={"arcana.a": "1", "arcana.b": "2"})
    assert parse(instance.call("probe", keys, first)) == {"arcana.a": "1", "arcana.b": "2", "greeting": "hey"}
    second = CallContext("rawconfig", "1.0.0", call_config={"arcana.b": "3"})
    assert parse(instance.call("probe", keys, second)) == {"arcana.a": None, "arcana.b": "3", "greeting": "hey"}
    again = CallContext("rawconfig", "1.0.0", call_config={"arcana.b": "3"})  # nothing changed: nothing is sent
    assert parse(instance.call("probe", keys, again)) == {"arcana.a": None, "arcana.b": "3", "greeting": "hey"}
    envelope_call = CallContext("rawconfig", "1.0.0")  # no call config at all: nothing of the last call's stays
    assert parse(instance.call("probe", keys, envelope_call)) == {"arcana.a": None, "arcana.b": None, "greeting": "hey"}


def test_a_value_utf8_cannot_hold_reaches_the_guest_replaced_not_as_a_failed_call(rawconfig_wasm: Path) -> None:
    instance = ExtismEngine().compile(rawconfig_wasm.read_bytes(), [], memory_mb=16, timeout_ms=1000).instantiate()
    context = CallContext("rawconfig", "1.0.0", call_config={"arcana.param.id": "a\ud800b"})
    assert parse(instance.call("probe", b"arcana.param.id\n", context)) == {"arcana.param.id": "a?b"}
    later = CallContext("rawconfig", "1.0.0", call_config={})  # and it is removed like any other
    assert parse(instance.call("probe", b"arcana.param.id\n", later)) == {"arcana.param.id": None}


def test_calls_that_run_inline_read_their_own_request_too(real_kernels: Kernels, rawconfig_wasm: Path) -> None:
    settings = {"EXECUTOR__INLINE_AFTER_CALLS": "2", "EXECUTOR__INLINE_MAX_MS": "50"}
    kernel = serving(real_kernels, rawconfig_wasm, PLUGIN_CONFIG__RAWCONFIG__COLOUR="red", **settings)
    pool = kernel.registry.snapshot.plugins["rawconfig"].pool
    for n in range(12):
        query = {"n": [str(n)]} if n % 2 else {}
        read = ask(kernel, ["arcana.param.id", "arcana.query.n", "colour"], f"/api/v1/test/rawconfig/{n}", query)
        assert read == {"arcana.param.id": str(n), "arcana.query.n": str(n) if n % 2 else None, "colour": "red"}, n
    assert pool.inline_handlers() == ["probe"]  # the later calls went by the inline twin's instance


RAW_GRPC = """[plugin]
name = "rawgrpc"
version = "1.0.0"

[config]
greeting = "hello"

[[grpc]]
method = "fake.v1.Greeter/Count"
handler = "probe"
abi = "raw"
"""


def test_a_raw_grpc_method_reads_its_method_metadata_and_caller(real_kernels: Kernels, rawconfig_wasm: Path) -> None:
    wasm = install(rawconfig_wasm, real_kernels.plugins, "rawgrpc")
    wasm.with_suffix(".toml").write_text(RAW_GRPC)
    wasm.with_suffix(".pb").write_bytes(greeter_descriptors())
    kernel = real_kernels()
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == ()
    target = kernel.core.rpc_target("/fake.v1.Greeter/Count")
    assert target is not None
    keys = ["arcana.kind", "arcana.method", "arcana.request_id", "arcana.metadata.x-tenant", "arcana.principal.sub"]
    # The module reads its input as lines of keys; as a fake.v1.Named message that is field 1 (tag byte
    # "\n") holding the keys, so the lines are the tag, the length byte, then the keys.
    message = target.method.input_type(name="\n" + "\n".join([*keys, "greeting"]) + "\n").SerializeToString()
    authorization = f"Bearer {mint('u-grpc', ['user'])}"
    call = kernel.core.call_grpc(target, message, {"x-tenant": "t1"}, "rid-g1", authorization)
    read = parse(asyncio.run(call))
    assert {key: read[key] for key in [*keys, "greeting"]} == {
        "arcana.kind": "grpc",
        "arcana.method": "fake.v1.Greeter/Count",
        "arcana.request_id": "rid-g1",
        "arcana.metadata.x-tenant": "t1",
        "arcana.principal.sub": "u-grpc",
        "greeting": "hello",
    }


def test_the_operators_plugin_config_overrides_the_manifests_defaults(
    real_kernels: Kernels, rawconfig_wasm: Path
) -> None:
    kernel = serving(real_kernels, rawconfig_wasm, PLUGIN_CONFIG__RAWCONFIG__GREETING="bonjour")
    assert ask(kernel, ["greeting", "colour"]) == {"greeting": "bonjour", "colour": "blue"}


def test_an_operator_key_the_manifest_does_not_declare_refuses_the_plugin(
    real_kernels: Kernels, rawconfig_wasm: Path
) -> None:
    install(rawconfig_wasm, real_kernels.plugins, "rawconfig")
    kernel = real_kernels(PLUGIN_CONFIG__RAWCONFIG__GRETING="typo")
    asyncio.run(kernel.load_all())
    (failure,) = kernel.plugins_view().failures
    (error,) = failure.errors
    assert error.startswith("plugin_config.rawconfig.greting: is not a key the plugin's [config] declares")
    assert "(it declares: colour, greeting)" in error
    assert "remove it from plugin_config.rawconfig in the config, or declare greting" in error
    assert kernel.core.route_http("POST", "/api/v1/test/rawconfig/1") is None


def test_operator_values_are_held_to_the_manifests_bounds(tmp_path: Path, rawconfig_wasm: Path) -> None:
    path = install(rawconfig_wasm, tmp_path, "rawconfig")
    environ = {"ARCANA_PLUGINS__DIR": str(tmp_path), "ARCANA_PLUGIN_CONFIG__RAWCONFIG__COLOUR": "x" * 4097}
    config = load_config(None, environ=environ)
    with ThreadPoolExecutor(1) as threads, pytest.raises(PluginLoadError) as refused:
        PluginLoader(config, ExtismEngine(), Capabilities.from_config(config), threads).check(path)
    assert [str(p) for p in refused.value.problems] == [
        "plugin_config.rawconfig.colour: is 4097 bytes, more than 4096"
        " (fix: keep settings short; put large data in the plugin's store)"
    ]


# ---------------------------------------------------------------- what the core sets (fake engine)


def test_an_envelope_route_sets_no_call_config(kernels: Kernels) -> None:
    plugin = kernels.engine.define("app", FakePlugin({"h": lambda _e, _c: {"status": 204}}))
    write_plugin(kernels.plugins, _manifest("app", [route("GET", "/h", "h", public=True)]))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    match = kernel.core.route_http("GET", "/h")
    assert match is not None
    asyncio.run(kernel.core.call_http(match, HttpRequest("GET", "/h", {}, {}, b"", "rid-1")))
    assert plugin.calls[0].context.call_config is None


def test_a_raw_grpc_method_is_told_its_method_metadata_and_caller(kernels: Kernels) -> None:
    plugin = kernels.engine.define("greeter", FakePlugin({"raw": lambda _d, _c: b""}))
    entry = {"method": "fake.v1.Greeter/Count", "handler": "raw", "abi": "raw"}
    path = write_plugin(kernels.plugins, _manifest("greeter", grpc=[entry]))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())
    kernel = kernels()
    asyncio.run(kernel.load_all())
    target = kernel.core.rpc_target("/fake.v1.Greeter/Count")
    assert target is not None
    metadata = {"traceparent": "tp", "x-tenant": "t1"}
    call = kernel.core.call_grpc(target, b"\x0a\x01x", metadata, "rid-g", f"Bearer {mint('u-9', ['ops'])}")
    asyncio.run(call)
    assert plugin.calls[0].context.call_config == {
        "arcana.kind": "grpc",
        "arcana.method": "fake.v1.Greeter/Count",
        "arcana.request_id": "rid-g",
        "arcana.traceparent": "tp",
        "arcana.metadata.traceparent": "tp",
        "arcana.metadata.x-tenant": "t1",
        "arcana.principal.sub": "u-9",
        "arcana.principal.roles": "ops",
    }


def test_the_engine_is_given_the_merged_config_and_the_inline_twin_keeps_it(kernels: Kernels) -> None:
    kernels.engine.define("app", FakePlugin({"h": lambda _e, _c: {"status": 204}}))
    manifest = _manifest("app", [route("GET", "/h", "h", public=True)]) + '\n[config]\na = "1"\nb = "2"\n'
    write_plugin(kernels.plugins, manifest)
    kernel = kernels(PLUGIN_CONFIG__APP__B="two")
    asyncio.run(kernel.load_all())
    (compiled,) = kernels.engine.compiled
    assert compiled.config == {"a": "1", "b": "two"}
    assert compiled.inline_twin(2).config == {"a": "1", "b": "two"}


def _manifest(name: str, routes: list[dict[str, Any]] | None = None, grpc: list[dict[str, Any]] | None = None) -> str:
    return manifest_toml(name, routes=routes or (), grpc=grpc or ())
