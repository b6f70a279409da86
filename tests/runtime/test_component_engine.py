"""Python plugins as WebAssembly components, on the real component engine inside a real kernel.

The components are built from tests/fixtures/plugins/py*/ with componentize-py (tests/component_build.py)
and compiled once for the session through the artifact cache (compiling one takes seconds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from arcana.check import check_plugin
from arcana.config import load_config
from arcana.engine import Instance
from arcana.engine.artifact_cache import ArtifactCache
from arcana.engine.component_engine import ComponentEngine
from arcana.engine.extism_engine import ExtismEngine
from arcana.engine.select import SelectingEngine
from arcana.envelopes import HttpRequest, HttpResponse
from arcana.errors import ArcanaError, GuestFault, PluginFailed, PluginLoadError, PluginTimeout
from arcana.kernel import Kernel
from arcana.loader import PluginLoader
from arcana.manifest import parse_manifest
from arcana.types import CallContext, LinkedFunction
from arcana.wasm_binary import MANIFEST_SECTION, custom_sections, is_component
from arcana_host.registry import Capabilities
from component_build import FIXTURES, build_cached, toolchain_missing
from conftest import CACHE, install
from fakes import TEST_SECRET, Kernels
from http_upstream import Upstream

pytestmark = [
    pytest.mark.toolchain,
    pytest.mark.skipif(toolchain_missing(), reason="componentize-py is not installed (the toolchain extra)"),
]
# Every grant pyhost's manifest requests: it calls every host capability.
PYHOST_GRANTS = ["log", "store", "auth", "auth.issue", "queue", "events", "http"]


@pytest.fixture(scope="session")
def components() -> dict[str, Path]:
    return {
        "pyhost": build_cached("pyhost", CACHE),
        "pyhostile": build_cached("pyhostile", CACHE),
        "pywasi": build_cached("pywasi", CACHE, stub_wasi=False),
    }


@pytest.fixture(scope="session")
def component_engine() -> ComponentEngine:
    """One engine for the session, its artifacts cached beside the built components (a rerun compiles nothing)."""
    return ComponentEngine(ArtifactCache(CACHE / "artifacts", 4096 * 1024 * 1024, ComponentEngine.fingerprint()))


@pytest.fixture
def real_kernels(
    tmp_path: Path, migrated_db: Path, component_engine: ComponentEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Kernels]:
    """Kernels on the real engines: Extism for modules, the session's component engine for components."""
    monkeypatch.setenv("ARCANA_JWT_SECRET", TEST_SECRET)
    engine = SelectingEngine(ExtismEngine(), lambda: component_engine)
    made = Kernels(tmp_path, engine, migrated_db)  # type: ignore[arg-type]
    yield made
    made.close()


def serving(kernels: Kernels, wasm: dict[str, Path], names: list[str], **settings: str) -> Kernel:
    for name in names:
        install(wasm[name], kernels.plugins, name)
    kernel = kernels(**settings)
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == (), kernel.plugins_view().failures
    return kernel


def call(kernel: Kernel, method: str, path: str, body: bytes = b"") -> HttpResponse:
    match = kernel.core.route_http(method, path)
    assert match is not None, path
    headers = {"content-type": "application/json"} if body else {}
    req = HttpRequest(method, path, {}, headers, body, "rid-1", "", "")
    return asyncio.run(kernel.core.call_http(match, req))


def answer(response: HttpResponse) -> Any:
    return json.loads(response.body)


def test_the_built_component_carries_its_manifest_in_a_top_level_custom_section(
    components: dict[str, Path],
) -> None:
    wasm = components["pyhost"].read_bytes()
    assert is_component(wasm)
    manifest = parse_manifest(custom_sections(wasm)[MANIFEST_SECTION].decode())
    assert manifest.name == "pyhost" and manifest.handlers() == {"probe", "ping", "raw", "whoami", "run", "tick"}


def test_inspect_reports_granted_interfaces_as_host_functions_and_leaves_out_the_engines_own(
    components: dict[str, Path], component_engine: ComponentEngine
) -> None:
    info = component_engine.inspect(components["pyhost"].read_bytes())
    names = {name for _, name in info.imports}
    assert {"log", "store_get", "store_put", "kv_get", "kv_set", "kv_incr"} <= names
    assert {"auth_hash_password", "auth_issue_token", "queue_enqueue", "event_emit", "http_fetch"} <= names
    assert {namespace for namespace, _ in info.imports} == {"extism:host/user"}
    assert not names & {"now_ms", "monotonic_ns", "random_bytes", "config_get"}
    assert info.component and info.foreign == ()
    assert {"handle", "handlers"} <= info.exports.keys()


def test_a_component_calls_every_host_capability(real_kernels: Kernels, components: dict[str, Path]) -> None:
    kernel = serving(
        real_kernels,
        components,
        ["pyhost"],
        GRANTS__PYHOST=json.dumps(PYHOST_GRANTS),
        PLUGIN_CONFIG__PYHOST__GREETING="hi",
    )
    before = time.time() * 1000
    with Upstream() as upstream:
        probe = {"key": "k1", "url": upstream.url("/ok", host="localhost")}
        response = call(kernel, "POST", "/api/v1/pyhost/probe", json.dumps(probe).encode())
        assert upstream.hits["/ok"] == 1
    assert response.status == 200, response.body
    body = answer(response)
    assert body["log"] == {}
    assert body["doc"] == {"n": 1, "same_id": True}
    assert body["kv_set"] == {}
    assert body["kv"] == {"found": True, "value": "v"}
    assert body["incr"] == {"value": 1}
    assert before - 60_000 < body["now_ms"] < before + 60_000
    first, second = body["monotonic"]
    assert second >= first
    assert body["random"][0] == 16 and len(body["random"][1]) == 32
    assert body["greeting"] == "hi"  # the operator's plugin_config over the manifest's default
    assert body["missing"] is None
    assert body["bad_request"]["error"]["code"] == "VALIDATION_FAILED"
    # auth: a real Argon2 hash that verifies its password only; no principal on a public route.
    assert body["auth"] == {"hashed": True, "valid": True, "wrong": False, "has_role": False}
    principal = kernel.identity.tokens.verify(body["token"]["access_token"])
    assert principal.sub == "py-k1" and principal.roles == ("pyhost",)
    # queue: the job is the plugin's own, waiting for its run an hour ahead.
    assert body["job"]["created"] is True and body["job"]["id_matches"] is True
    assert body["job"]["type"] == "pyhost.tick" and body["job"]["state"] == "queued"
    # events: a topic the manifest lists is emitted; any other is refused, as a value.
    assert body["emitted"] == {}
    assert body["emit_elsewhere"]["error"]["code"] == "FORBIDDEN"
    assert body["fetched"] == {"status": 200, "body": "hello"}
    again = answer(call(kernel, "POST", "/api/v1/pyhost/probe", json.dumps({"key": "k1"}).encode()))
    assert again["incr"] == {"value": 2}  # the store outlives the instance's call
    assert again["random"][1] != body["random"][1]
    assert again["fetched"] is None


def test_a_raw_call_reads_its_request_keys_through_config(real_kernels: Kernels, components: dict[str, Path]) -> None:
    kernel = serving(real_kernels, components, ["pyhost"], GRANTS__PYHOST=json.dumps(PYHOST_GRANTS))
    response = call(kernel, "POST", "/api/v1/pyhost/raw", b"plain text")
    assert response.status == 200, response.body
    assert answer(response) == {"echo": "plain text", "method": "POST"}


@pytest.mark.parametrize(
    ("handler", "error", "says"),
    [
        ("loop", PluginTimeout, "did not answer within 500 ms"),
        ("boom", PluginFailed, "failed while handling the request"),
        # CPython's MemoryError at the store's limit is an uncaught exception: a trap from outside.
        ("grow", PluginFailed, "failed while handling the request"),
    ],
)
def test_a_hostile_handler_gets_its_error_and_the_plugin_answers_next(
    real_kernels: Kernels, components: dict[str, Path], handler: str, error: type[ArcanaError], says: str
) -> None:
    kernel = serving(real_kernels, components, ["pyhostile", "pyhost"], GRANTS__PYHOST=json.dumps(PYHOST_GRANTS))
    with pytest.raises(error) as failed:  # the edges answer it as its code says (docs/errors.md)
        call(kernel, "GET", f"/api/v1/pyhostile/{handler}")
    assert says in str(failed.value)
    # The faulted instance was discarded: a fresh one answers, with none of the hostile call's memory.
    assert answer(call(kernel, "GET", "/api/v1/pyhostile/ok")) == {"ok": True, "held": 0}
    assert answer(call(kernel, "GET", "/api/v1/pyhost/ping")) == {"pong": True}


def loader(tmp_path: Path, engine: ComponentEngine, threads: ThreadPoolExecutor, **grants: list[str]) -> PluginLoader:
    config = load_config(None, environ={"ARCANA_PLUGINS__DIR": str(tmp_path)})
    config = dataclasses.replace(config, grants={"*": ["log"], **grants})
    engines = SelectingEngine(ExtismEngine(), lambda: engine)
    return PluginLoader(config, engines, Capabilities.from_config(config), threads)


def test_a_component_importing_wasi_is_refused_at_load_with_the_fix(
    tmp_path: Path, components: dict[str, Path], component_engine: ComponentEngine
) -> None:
    target = install(components["pywasi"], tmp_path, "pywasi")
    with ThreadPoolExecutor(1) as threads, pytest.raises(PluginLoadError) as refused:
        loader(tmp_path, component_engine, threads).check(target)
    problems = {p.field: p for p in refused.value.problems}
    assert any(field.startswith("imports wasi:sockets/") for field in problems), sorted(problems)
    assert any(field.startswith("imports wasi:filesystem/") for field in problems), sorted(problems)
    for field, problem in problems.items():
        assert field.startswith("imports wasi:"), field
        assert problem.message.startswith("not offered")
        assert problem.fix == "build with `arcana plugin build` (stubbed WASI)"


def test_a_manifest_handler_the_component_does_not_serve_is_refused_naming_it(
    tmp_path: Path, components: dict[str, Path], component_engine: ComponentEngine
) -> None:
    target = install(components["pyhost"], tmp_path, "pyhost")
    manifest = (FIXTURES / "pyhost" / "plugin.toml").read_text()
    extra = '\n[[route]]\nmethod = "GET"\npath = "/api/v1/pyhost/gone"\nhandler = "gone"\npublic = true\n'
    target.with_suffix(".toml").write_text(manifest + extra)  # a sidecar manifest wins over the embedded one
    with ThreadPoolExecutor(1) as threads, pytest.raises(PluginLoadError) as refused:
        loader(tmp_path, component_engine, threads, pyhost=PYHOST_GRANTS).load(target)
    [problem] = refused.value.problems
    assert problem.field == "handler gone"
    assert "handlers() export" in problem.message
    assert "'gone'" in problem.fix


def test_a_component_asking_for_an_ungranted_interface_is_refused_before_it_runs(
    tmp_path: Path, components: dict[str, Path], component_engine: ComponentEngine
) -> None:
    target = install(components["pyhost"], tmp_path, "pyhost")
    with ThreadPoolExecutor(1) as threads, pytest.raises(PluginLoadError) as refused:
        loader(tmp_path, component_engine, threads).check(target)
    fields = {p.field for p in refused.value.problems}
    assert "capabilities.store" in fields
    assert "import extism:host/user::store_get" in fields


def test_a_cancelled_call_stops_at_its_next_host_call_and_the_instance_takes_no_more(
    components: dict[str, Path], component_engine: ComponentEngine
) -> None:
    wasm = components["pyhost"].read_bytes()
    holder: list[Instance] = []

    def log_then_cancel(context: CallContext, request: bytes) -> bytes:
        holder[0].cancel()  # as the executor's guard would, from its own thread, while the guest runs
        return b"{}"

    reached: list[str] = []

    def recording(name: str) -> LinkedFunction:
        return LinkedFunction(name, lambda context, request: reached.append(name) or b"{}")

    imported = {name for _, name in component_engine.inspect(wasm).imports} - {"log"}
    functions = [LinkedFunction("log", log_then_cancel), *(recording(n) for n in sorted(imported))]
    compiled = component_engine.compile(wasm, functions, memory_mb=32, timeout_ms=2000)
    instance = compiled.instantiate()
    holder.append(instance)
    with pytest.raises(GuestFault) as stopped:
        instance.call("probe", json.dumps({"body": {}}).encode(), CallContext(plugin="pyhost", version="1.0.0"))
    assert stopped.value.kind == "cancelled"
    assert reached == []  # the host call after the cancel never ran
    with pytest.raises(GuestFault) as again:
        instance.call("ping", b"{}", CallContext(plugin="pyhost", version="1.0.0"))
    assert again.value.kind == "cancelled"


def test_a_component_never_runs_inline_however_short_its_calls(
    real_kernels: Kernels, components: dict[str, Path]
) -> None:
    kernel = serving(real_kernels, components, ["pyhostile"], EXECUTOR__INLINE_AFTER_CALLS="3")
    for _ in range(10):
        assert answer(call(kernel, "GET", "/api/v1/pyhostile/ok")) == {"ok": True, "held": 0}
    pool = kernel.registry.snapshot.plugins["pyhostile"].pool
    assert pool.inline_handlers() == []


def test_plugin_check_accepts_a_component_and_lists_its_routes(
    components: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(None, environ={"ARCANA_PLUGINS__DIR": str(components["pyhost"].parent)})
    assert check_plugin(components["pyhost"], config, own_grants=True) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK pyhost 1.0.0")
    assert "route POST /api/v1/pyhost/raw -> raw (public, abi raw)" in out
