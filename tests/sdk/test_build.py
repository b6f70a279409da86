"""arcana_sdk: wasm custom sections, plugin builds, and the built plugins run under Extism.

Toolchain tests build real plugins (Zig through the `ziglang` package, C through
`zig cc`, AssemblyScript through npm + asc) once per session and run them with
the Extism python SDK directly — no kernel involved.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path
from typing import Any

import extism
import pytest
import wasmtime

from arcana_sdk.build import BuildError, Language, build_plugin, detect_language, stamp_host_abi
from arcana_sdk.protoc import ProtocError, compile_proto_dir
from arcana_sdk.sources import guest_sdk_dir
from arcana_sdk.toolchain import ToolchainMissing, require_zig
from arcana_sdk.wasm_sections import (
    MANIFEST_SECTION,
    WasmFormatError,
    append_custom_section,
    custom_sections,
    read_custom_section,
    remove_custom_sections,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "plugins"
EXAMPLE_NAMES = ("hello", "echo", "notes", "audit-log")
FIXTURES = REPO / "tests" / "fixtures" / "plugins"
EMPTY_MODULE = b"\x00asm\x01\x00\x00\x00"

LOGGED: list[dict[str, Any]] = []


@extism.host_fn(name="log", namespace="extism:host/user", signature=([extism.ValType.I64], [extism.ValType.I64]))
def _host_log(plugin: extism.CurrentPlugin, params: list[Any], results: list[Any], *user_data: Any) -> None:
    """Stand-in for the kernel's `log`: record the request, reply {}."""
    LOGGED.append(json.loads(plugin.input_string(params[0])))
    plugin.return_string(results[0], "{}")


def _plugin(wasm: bytes, *, timeout_ms: int = 2000, max_pages: int = 256) -> extism.Plugin:
    manifest = {"wasm": [{"data": wasm}], "timeout_ms": timeout_ms, "memory": {"max_pages": max_pages}}
    return extism.Plugin(manifest, functions=[_host_log])


def _call(wasm: bytes, handler: str, envelope: dict[str, Any]) -> Any:
    return json.loads(_plugin(wasm).call(handler, json.dumps(envelope)))


# ---------------------------------------------------------------- sections (no toolchain)


def test_custom_section_roundtrip() -> None:
    payload = '[plugin]\nname = "x"  # é\n'.encode() * 20  # > 127 bytes: multi-byte LEB128
    wasm = append_custom_section(append_custom_section(EMPTY_MODULE, "other", b"1"), MANIFEST_SECTION, payload)
    assert [s.name for s in custom_sections(wasm)] == ["other", MANIFEST_SECTION]
    assert read_custom_section(wasm, MANIFEST_SECTION) == payload
    assert read_custom_section(wasm, "missing") is None
    stripped = remove_custom_sections(wasm, MANIFEST_SECTION)
    assert [s.name for s in custom_sections(stripped)] == ["other"]


def test_section_reader_rejects_malformed_modules() -> None:
    with pytest.raises(WasmFormatError, match="magic"):
        custom_sections(b"\x7fELF\x01\x00\x00\x00")
    with pytest.raises(WasmFormatError, match="past the end"):
        custom_sections(EMPTY_MODULE + b"\x00\x10\x01a")


def test_detect_language(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.c").write_text("")
    assert detect_language(tmp_path) is Language.C
    (tmp_path / "src" / "main.zig").write_text("")
    assert detect_language(tmp_path) is Language.ZIG
    with pytest.raises(BuildError, match="no plugin sources"):
        detect_language(tmp_path / "src")


def test_manifest_must_exist_and_be_toml(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.zig").write_text("")
    with pytest.raises(BuildError, match=r"plugin\.toml is missing"):
        build_plugin(tmp_path)
    (tmp_path / "plugin.toml").write_text("[plugin\n")
    with pytest.raises(BuildError, match="not valid TOML") as info:
        build_plugin(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_zig_toolchain_check_names_the_extra_or_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(
        ToolchainMissing, match=r"^the Zig toolchain \(ziglang\) is not installed; pip install 'arcana\[toolchain\]'$"
    ):
        require_zig()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.13.0.post1")
    with pytest.raises(
        ToolchainMissing, match=r"^ziglang 0.13.0.post1 is too old for the Zig SDK; pip install -U 'ziglang>=0.15'$"
    ):
        require_zig()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.15.1")
    require_zig()


def test_a_zig_build_without_ziglang_fails_before_compiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.14.0")
    shutil.copytree(EXAMPLES / "echo", tmp_path / "echo", ignore=shutil.ignore_patterns("*.wasm"))
    with pytest.raises(ToolchainMissing, match=r"ziglang 0\.14\.0 is too old"):
        build_plugin(tmp_path / "echo")
    assert not (tmp_path / "echo" / "echo.wasm").exists()


def test_protoc_reports_the_file_and_the_line(tmp_path: Path) -> None:
    (tmp_path / "bad.proto").write_text('syntax = "proto3";\nmessage A { strin x = 1; }\n')
    with pytest.raises(ProtocError, match=f"protoc failed on {tmp_path}") as info:
        compile_proto_dir(tmp_path)
    assert "bad.proto:2" in info.value.output
    with pytest.raises(ProtocError, match=r"no \.proto files"):
        compile_proto_dir(tmp_path / "empty")


def test_guest_sdks_are_found_as_package_data() -> None:
    """Installed (a wheel, or the strict editable install's links), they hold the repository's own SDK files."""
    for language in ("zig", "c", "assemblyscript"):
        found, source = guest_sdk_dir(language), REPO / "sdk" / language
        shipped = {p.relative_to(found) for p in found.rglob("*") if p.is_file()}
        assert shipped, language
        for rel in shipped:
            assert (found / rel).read_bytes() == (source / rel).read_bytes(), rel
    assert (guest_sdk_dir("zig") / "arcana.zig").is_file() and (guest_sdk_dir("c") / "arcana.h").is_file()
    with pytest.raises(ValueError, match="no guest SDK for 'rust'"):
        guest_sdk_dir("rust")


# ---------------------------------------------------------------- builds


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wasm")


@pytest.fixture(scope="session")
def examples(build_dir: Path) -> dict[str, bytes]:
    """plugins/hello, echo, notes and audit-log freshly built (in place, output elsewhere)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to build the AssemblyScript example")
    return {name: build_plugin(EXAMPLES / name, build_dir / f"{name}.wasm").read_bytes() for name in EXAMPLE_NAMES}


@pytest.fixture(scope="session")
def fixtures(build_dir: Path) -> dict[str, bytes]:
    """Every core-module fixture plugin, built once (Python components have their own tests and build cache)."""
    out = build_dir / "fixtures"
    return {
        p.name: build_plugin(p, out / f"{p.name}.wasm").read_bytes()
        for p in sorted(FIXTURES.iterdir())
        if p.is_dir() and not (p / "app.py").exists()
    }


@pytest.mark.toolchain
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_committed_examples_match_fresh_builds(examples: dict[str, bytes], name: str) -> None:
    committed = EXAMPLES / name / f"{name}.wasm"
    assert committed.read_bytes() == examples[name], f"{committed} is stale: run build_plugin(plugins/{name})"


@pytest.mark.toolchain
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_embedded_manifest_is_plugin_toml_verbatim_with_the_host_abi(examples: dict[str, bytes], name: str) -> None:
    sections = custom_sections(examples[name])
    assert sections[-1].name == MANIFEST_SECTION
    assert sections[-1].end == len(examples[name])
    source = EXAMPLES / name / "plugin.toml"
    assert sections[-1].payload == stamp_host_abi(source.parent, source.read_bytes())


@pytest.mark.toolchain
def test_builds_are_deterministic_and_location_independent(
    examples: dict[str, bytes], fixtures: dict[str, bytes], tmp_path: Path
) -> None:
    assert build_plugin(EXAMPLES / "hello", tmp_path / "again.wasm").read_bytes() == examples["hello"]
    moved = shutil.copytree(FIXTURES / "slow", tmp_path / "elsewhere" / "slow")
    assert build_plugin(moved).read_bytes() == fixtures["slow"]
    assert (moved / "slow.wasm").is_file()  # default output: <src_dir>/<name>.wasm


@pytest.mark.toolchain
def test_hello_escapes_the_name(examples: dict[str, bytes]) -> None:
    LOGGED.clear()
    name = 'a"b\\c é\n'
    envelope = {"kind": "http", "method": "GET", "path": "/api/v1/hello/x", "params": {"name": name}}
    assert _call(examples["hello"], "hello", envelope) == {
        "status": 200,
        "headers": {},
        "body": {"message": f"Hello, {name}!"},
    }
    assert LOGGED == []  # hello keeps its hot path free of host calls


@pytest.mark.toolchain
def test_hello_answers_its_grpc_twin_with_a_reply_message(examples: dict[str, bytes]) -> None:
    envelope = {"kind": "grpc", "method": "greeter.v1.Greeter/SayHello", "message": {"name": "Ada"}, "metadata": {}}
    assert _call(examples["hello"], "hello", envelope) == {"message": {"message": "Hello, Ada!"}}


@pytest.mark.toolchain
def test_echo_returns_nested_json(examples: dict[str, bytes]) -> None:
    body = {"a": [1, 2.5, {"b": 'x"y', "c": None}], "u": "é", "t": True}
    out = _call(examples["echo"], "echo", {"kind": "http", "method": "POST", "body": body})
    assert out == {"status": 200, "headers": {}, "body": {"echo": body}}


@pytest.mark.toolchain
@pytest.mark.parametrize("envelope", [{"kind": "http"}, {"kind": "http", "body_base64": "AAE="}])
def test_echo_without_json_body_fails_validation(examples: dict[str, bytes], envelope: dict[str, Any]) -> None:
    out = _call(examples["echo"], "echo", envelope)
    assert out["error"]["code"] == "VALIDATION_FAILED"
    assert "JSON" in out["error"]["message"]


@pytest.mark.toolchain
def test_build_failure_names_folder_and_compiler_output(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "plugin.toml").write_text('[plugin]\nname = "bad"\n')
    (tmp_path / "src" / "main.zig").write_text("export fn bad() i32 { return undefined_name; }\n")
    with pytest.raises(BuildError) as info:
        build_plugin(tmp_path)
    assert info.value.tool == "zig build-exe"
    assert str(tmp_path) in str(info.value)
    assert "undefined_name" in str(info.value)


# ---------------------------------------------------------------- hostile fixtures


@pytest.mark.toolchain
def test_trap_loop_and_membomb_fail_under_extism(fixtures: dict[str, bytes]) -> None:
    with pytest.raises(extism.Error):
        _plugin(fixtures["trap"]).call("trap", b"{}")
    with pytest.raises(extism.Error, match="timeout"):
        _plugin(fixtures["loop"], timeout_ms=300).call("loop", b"{}")
    with pytest.raises(extism.Error):
        _plugin(fixtures["membomb"], max_pages=128).call("membomb", b"{}")


@pytest.mark.toolchain
def test_garbage_badshape_and_rawecho_outputs(fixtures: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        json.loads(_plugin(fixtures["garbage"]).call("garbage", b"{}"))
    assert json.loads(_plugin(fixtures["badshape"]).call("badshape", b"{}"))["status"] == "nope"
    raw = bytes(range(256)) * 3
    assert _plugin(fixtures["rawecho"]).call("rawecho", raw) == raw


@pytest.mark.toolchain
def test_slow_and_versioned(fixtures: dict[str, bytes], tmp_path: Path) -> None:
    slow = _call(fixtures["slow"], "slow", {"kind": "http", "body": {"spin": 100000}})
    assert slow["body"] == {"done": True}
    assert _call(fixtures["versioned"], "version", {"kind": "http"})["body"] == {"version": "v1"}
    src = shutil.copytree(FIXTURES / "versioned", tmp_path / "versioned")
    main = src / "src" / "main.zig"
    main.write_text(main.read_text().replace('const VERSION = "v1";', 'const VERSION = "v2";'))
    assert _call(build_plugin(src).read_bytes(), "version", {"kind": "http"})["body"] == {"version": "v2"}


@pytest.mark.toolchain
def test_forbidden_imports_store_get_and_broken_manifest_is_embedded(fixtures: dict[str, bytes]) -> None:
    module = wasmtime.Module(wasmtime.Engine(), remove_custom_sections(fixtures["forbidden"], MANIFEST_SECTION))
    user_imports = {i.name for i in module.imports if i.module == "extism:host/user"}
    assert user_imports == {"store_get"}
    raw = read_custom_section(fixtures["broken_manifest"], MANIFEST_SECTION)
    source = FIXTURES / "broken_manifest" / "plugin.toml"
    assert raw == stamp_host_abi(source.parent, source.read_bytes())
