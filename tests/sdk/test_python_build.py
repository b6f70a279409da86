"""`arcana plugin build` for Python plugins: a WebAssembly component with its own world and the manifest embedded.

The unit tests pin the world a manifest gives (which interfaces the component
will import) and the custom-section writer on the component preamble; the
toolchain tests run componentize-py for real and read the component back
with wasmtime.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import pytest
import wasmtime
from wasmtime import component

from arcana_sdk import python_build, toolchain
from arcana_sdk.build import BuildError, Language, build_plugin, detect_language
from arcana_sdk.sources import guest_sdk_dir, wit_dir
from arcana_sdk.wasm_sections import (
    COMPONENT_HEADER,
    MANIFEST_SECTION,
    WasmFormatError,
    append_custom_section,
    custom_sections,
    is_component,
    read_custom_section,
    remove_custom_sections,
)

REPO = Path(__file__).resolve().parents[2]
WIT = (REPO / "sdk" / "wit" / "arcana.wit").read_text()
GRANT_FREE = ["clock", "random", "config"]


def _world_imports(wit: str) -> list[str]:
    world = re.search(r"^world plugin \{(.*?)^\}", wit, re.S | re.M)
    assert world is not None
    return re.findall(r"^  import ([\w-]+);", world[1], re.M)


# ---------------------------------------------------------------- custom sections on a component


def test_custom_sections_are_appended_to_and_read_from_a_component() -> None:
    # A component's top-level custom section is framed like a module's: id 0, size, name, payload.
    core_custom = bytes([0, 5, 4]) + b"name"
    wasm = COMPONENT_HEADER + core_custom
    out = append_custom_section(wasm, MANIFEST_SECTION, b'[plugin]\nname = "p"\n')
    assert out.startswith(COMPONENT_HEADER) and is_component(out)
    assert read_custom_section(out, MANIFEST_SECTION) == b'[plugin]\nname = "p"\n'
    assert [s.name for s in custom_sections(out)] == ["name", MANIFEST_SECTION]
    assert remove_custom_sections(out, MANIFEST_SECTION) == wasm


def test_a_core_module_is_not_a_component_and_other_preambles_are_refused() -> None:
    assert not is_component(b"\x00asm\x01\x00\x00\x00")
    with pytest.raises(WasmFormatError, match="module or component"):
        custom_sections(b"\x00asm\x0d\x00\x02\x00")  # a layer this writer does not know


# ---------------------------------------------------------------- the plugin's own world


def test_each_requested_grant_imports_its_interface_and_the_grant_free_ones_always() -> None:
    manifest = {"capabilities": {"store": True, "events": ["note.*"], "auth.issue": True, "log": False}}
    assert python_build.requested_interfaces(manifest, python_build.wit_interfaces(WIT)) == [
        "store",
        "auth-issue",
        "events",
        *GRANT_FREE,
    ]


def test_grants_without_an_interface_and_empty_requests_import_nothing() -> None:
    # events.kernel unlocks no function; an unknown grant is the kernel's to report; [] requests nothing.
    manifest = {"capabilities": {"events.kernel": True, "teleport": True, "queue": []}}
    assert python_build.requested_interfaces(manifest, python_build.wit_interfaces(WIT)) == GRANT_FREE
    assert python_build.requested_interfaces({}, python_build.wit_interfaces(WIT)) == GRANT_FREE


def test_the_generated_world_keeps_every_interface_and_the_exports_but_imports_only_the_requested() -> None:
    wit = python_build.world_wit(WIT, {"capabilities": {"log": True, "http": True}})
    assert _world_imports(wit) == ["log", "http", *GRANT_FREE]
    assert python_build.wit_interfaces(wit) == python_build.wit_interfaces(WIT)
    assert re.findall(r"export (\w+): func", wit) == ["handle", "handlers"]
    assert wit.count("world plugin {") == 1
    assert wit.startswith(WIT[: WIT.index("world plugin")].rsplit("///", 1)[0])


def test_the_shipped_wit_and_guest_sdk_are_package_data_equal_to_the_repository_files() -> None:
    assert (wit_dir() / "arcana.wit").read_text() == WIT
    shipped = guest_sdk_dir("python") / "arcana_plugin" / "__init__.py"
    assert shipped.read_bytes() == (REPO / "sdk" / "python" / "arcana_plugin" / "__init__.py").read_bytes()


def test_a_folder_with_plugin_toml_and_app_py_is_a_python_plugin(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    with pytest.raises(BuildError, match=r"plugin.toml \+ app.py \(Python\)"):
        detect_language(tmp_path)
    (tmp_path / "plugin.toml").write_text('[plugin]\nname = "p"\n')
    assert detect_language(tmp_path) is Language.PYTHON


def test_a_missing_or_other_componentize_py_is_reported_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(toolchain.ToolchainMissing, match=r"componentize-py\) is not installed; pip install"):
        toolchain.require_componentize_py()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.13.0")
    with pytest.raises(toolchain.ToolchainMissing, match=r"pip install 'componentize-py==0\.25\.1'"):
        toolchain.require_componentize_py()


# ---------------------------------------------------------------- real builds

# The bare export contract, without the guest SDK (tests/sdk/test_python_sdk.py covers that).
APP = """\
import json


class WitWorld:
    def handle(self, handler: str, input: bytes) -> bytes:
        return json.dumps({"status": 200, "body": {"handler": handler}}).encode()

    def handlers(self) -> list[str]:
        return ["hello"]
"""


def _plugin(folder: Path, capabilities: str, app: str = APP) -> Path:
    folder.mkdir()
    (folder / "plugin.toml").write_text(f'[plugin]\nname = "pyb"\nversion = "1.0.0"\n\n[capabilities]\n{capabilities}')
    (folder / "app.py").write_text(app)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _plugin(tmp_path_factory.mktemp("pyb") / "pyb", 'log = true\n"auth.issue" = true\nstore = false\n')
    return build_plugin(src)


@pytest.mark.toolchain
def test_a_python_plugin_builds_into_a_component_importing_only_its_grants_and_the_grant_free_interfaces(
    built: Path,
) -> None:
    wasm = built.read_bytes()
    assert built.name == "pyb.wasm" and is_component(wasm)
    engine = wasmtime.Engine()
    imports = sorted(component.Component(engine, wasm).type.imports(engine))
    assert imports == sorted(f"arcana:plugin/{i}@1.0.0" for i in ["log", "auth-issue", *GRANT_FREE])


@pytest.mark.toolchain
def test_the_component_carries_the_manifest_stamped_with_the_host_abi_as_its_last_section(built: Path) -> None:
    wasm = built.read_bytes()
    manifest = read_custom_section(wasm, MANIFEST_SECTION)
    assert manifest is not None
    assert tomllib.loads(manifest.decode())["plugin"] == {"name": "pyb", "version": "1.0.0", "host_abi": 1}
    assert custom_sections(wasm)[-1].name == MANIFEST_SECTION


@pytest.mark.toolchain
def test_the_build_leaves_only_the_component_in_the_plugin_folder(built: Path) -> None:
    assert sorted(p.name for p in built.parent.iterdir()) == ["app.py", "plugin.toml", "pyb.wasm"]


@pytest.mark.toolchain
def test_an_app_that_fails_at_import_fails_the_build_with_its_python_traceback(tmp_path: Path) -> None:
    src = _plugin(tmp_path / "bad", "", app='raise ValueError("no config here")\n')
    with pytest.raises(BuildError, match="componentize-py failed") as info:
        build_plugin(src)
    assert "ValueError: no config here" in info.value.output
    assert "Stack backtrace" not in info.value.output
    assert not (src / "pyb.wasm").exists()


SDK_APP = """\
from arcana_plugin import Code, Fail, Plugin, clock, config, events, store

app = Plugin()


@app.route("GET", "/api/v1/x/{id}", name="api")
def get_x(req):
    if req.param("id") == "none":
        return None
    if req.param("id") == "boom":
        raise ValueError("boom")
    return {"doc": store.get("x", req.param("id")).unwrap(), "now": clock.now_ms(), "cfg": config.get("greeting")}


@app.route("POST", "/api/v1/x", name="api")
def emit(req):
    result = events.emit("x.created", {})
    raise Fail(Code.CONFLICT, result.error.code)
"""


def _linked(engine: wasmtime.Engine, seen: list[str]) -> component.Linker:
    """A linker giving the SDK app's world: store (get answers a doc or NOT_FOUND), clock, random, config."""

    def store_get(_store: wasmtime.Store, request: str) -> str:
        seen.append(request)
        doc_id = json.loads(request)["id"]
        if doc_id == "missing":
            return json.dumps({"error": {"code": "NOT_FOUND", "message": "no x missing"}})
        return json.dumps({"doc": {"id": doc_id, "version": 1}})

    linker = component.Linker(engine)
    with linker.root() as root:
        with root.add_instance("arcana:plugin/store@1.0.0") as iface:
            iface.add_func("store-get", store_get)
            for name in ("store-put", "store-delete", "store-query", "store-batch"):
                iface.add_func(name, lambda _s, _r: "{}")
            for name in ("kv-get", "kv-set", "kv-delete", "kv-incr"):
                iface.add_func(name, lambda _s, _r: "{}")
        with root.add_instance("arcana:plugin/clock@1.0.0") as iface:
            iface.add_func("now-ms", lambda _s: 1_767_225_600_000)
            iface.add_func("monotonic-ns", lambda _s: 1)
        with root.add_instance("arcana:plugin/random@1.0.0") as iface:
            iface.add_func("random-bytes", lambda _s, n: bytes(n))
        with root.add_instance("arcana:plugin/config@1.0.0") as iface:
            iface.add_func("config-get", lambda _s, key: "hej" if key == "greeting" else None)
    return linker


@pytest.mark.toolchain
def test_an_sdk_app_component_dispatches_calls_host_functions_and_traps_on_an_unexpected_exception(
    tmp_path: Path,
) -> None:
    wasm = build_plugin(_plugin(tmp_path / "sdkapp", "store = true\n", app=SDK_APP)).read_bytes()
    engine = wasmtime.Engine()
    seen: list[str] = []
    store = wasmtime.Store(engine)
    instance = _linked(engine, seen).instantiate(store, component.Component(engine, wasm))
    handle, handlers = instance.get_func(store, "handle"), instance.get_func(store, "handlers")
    assert handle is not None and handlers is not None
    assert handlers(store) == ["api"]
    handlers.post_return(store)

    def call(method: str, route: str, doc_id: str = "") -> object:
        envelope = {"kind": "http", "method": method, "route": route, "path": route, "params": {"id": doc_id}}
        out = handle(store, "api", json.dumps(envelope).encode())
        handle.post_return(store)
        return json.loads(out)

    assert call("GET", "/api/v1/x/{id}", "x1") == {
        "status": 200,
        "body": {"doc": {"id": "x1", "version": 1}, "now": 1_767_225_600_000, "cfg": "hej"},
    }
    assert seen == ['{"collection":"x","id":"x1"}']
    assert call("GET", "/api/v1/x/{id}", "missing") == {"error": {"code": "NOT_FOUND", "message": "no x missing"}}
    assert call("GET", "/api/v1/x/{id}", "none") == {"status": 204}
    # events is not in this world: the binding answers FORBIDDEN as a value, the handler passes the code on.
    assert call("POST", "/api/v1/x") == {"error": {"code": "CONFLICT", "message": "FORBIDDEN"}}
    with pytest.raises(wasmtime.WasmtimeError):
        call("GET", "/api/v1/x/{id}", "boom")
