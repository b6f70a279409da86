"""One table of error codes and host functions behind the Zig, AssemblyScript and C SDKs and the WIT contract.

``sdk/generate_contract.py`` renders ``arcana.errors.ErrorCode`` and
``arcana_host.catalog.CATALOG`` into one file per SDK. These tests keep the
committed files current, read every SDK source to check that each SDK defines
exactly those codes and host functions (nothing missing, nothing extra, nothing
defined twice), and that the typed bindings of the Zig and AssemblyScript SDKs
cover every implemented host function.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from arcana.errors import ErrorCode
from arcana_host.catalog import CATALOG
from arcana_sdk.build import BuildError, build_plugin

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_contract", SDK / "generate_contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()
CODES = sorted(code.value for code in ErrorCode)
# The implemented host functions: the catalogue is derived from the capabilities.
FUNCTIONS = sorted(CATALOG)


def _code(text: str) -> str:
    """Source text without comments (none of the SDK sources has `//` inside a string)."""
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def _sources(folder: str, suffix: str) -> str:
    return "\n".join(_code(p.read_text()) for p in sorted((SDK / folder).glob(f"*{suffix}")))


def _enum(text: str, name: str) -> list[str]:
    blocks = re.findall(rf"\b{name} = enum \{{(.*?)\}};", text, re.S)
    return [member for block in blocks for member in re.findall(r"(\w+),", block)]


def _zig() -> tuple[list[str], list[str]]:
    text = _sources("zig", ".zig")
    externs = re.findall(r'extern "extism:host/user" fn (\w+)', text)
    return _enum(text, "Code"), _enum(text, "HostFunction") + externs


def _assemblyscript() -> tuple[list[str], list[str]]:
    text = _sources("assemblyscript/assembly", ".ts")
    namespaces = re.findall(r"namespace Code \{(.*?)\}", text, re.S)
    codes = [m for block in namespaces for m in re.findall(r'const (\w+) = "\1";', block)]
    return codes, re.findall(r'@external\("extism:host/user", "(\w+)"\)', text)


def _c() -> tuple[list[str], list[str]]:
    text = _sources("c", ".h")
    return re.findall(r"#define ARCANA_ERR_(\w+) ", text), re.findall(r"^ARCANA_HOST_FN\((\w+)\)", text, re.M)


def _python() -> tuple[list[str], list[str]]:
    text = "\n".join(re.sub(r"#[^\n]*", "", p.read_text()) for p in sorted((SDK / "python").rglob("*.py")))
    classes = re.findall(r"^class Code:(.*?)(?=^\S)", text, re.S | re.M)
    codes = [m for block in classes for m in re.findall(r'^    (\w+): Final = "\1"$', block, re.M)]
    tables = re.findall(r"^HOST_FUNCTIONS: Final\[dict\[str, str\]\] = \{(.*?)^\}", text, re.S | re.M)
    return codes, [m for block in tables for m in re.findall(r'^    "(\w+)": "[\w.]+",$', block, re.M)]


SDKS: dict[str, Callable[[], tuple[list[str], list[str]]]] = {
    "zig": _zig,
    "assemblyscript": _assemblyscript,
    "c": _c,
    "python": _python,
}


def test_committed_contract_files_are_what_the_generator_renders_from_the_kernel_tables() -> None:
    rendered = GENERATOR.outputs()
    assert {p.relative_to(SDK).as_posix() for p in rendered} == {
        "zig/contract.zig",
        "assemblyscript/assembly/contract.ts",
        "c/arcana_contract.h",
        "python/arcana_plugin/contract.py",
        "wit/arcana.wit",
    }
    stale = [p.relative_to(REPO).as_posix() for p, text in rendered.items() if p.read_text() != text]
    assert stale == [], "run .venv/bin/python sdk/generate_contract.py and commit the result"


@pytest.mark.parametrize("sdk", SDKS)
def test_each_sdk_defines_every_error_code_exactly_once_and_no_other(sdk: str) -> None:
    codes, _ = SDKS[sdk]()
    assert sorted(codes) == CODES


@pytest.mark.parametrize("sdk", SDKS)
def test_each_sdk_declares_every_implemented_host_function_exactly_once_and_no_other(sdk: str) -> None:
    _, functions = SDKS[sdk]()
    assert sorted(functions) == FUNCTIONS


def test_zig_typed_bindings_call_every_implemented_host_function() -> None:
    text = _sources("zig", ".zig")
    called = set(re.findall(r'\bhost(?:Request|CallValue|Call)\(\s*\w+\s*,\s*"(\w+)"', text))
    assert sorted(called) == FUNCTIONS


def test_assemblyscript_typed_bindings_call_every_implemented_host_function() -> None:
    text = _sources("assemblyscript/assembly", ".ts")
    # Uses only: drop the declarations and the imports of them.
    text = re.sub(r"export declare function host_\w+", "", text)
    text = re.sub(r"import \{[^}]*\} from \"[^\"]+\";", "", text)
    assert sorted(set(re.findall(r"\bhost_(\w+)\b", text))) == FUNCTIONS


def test_python_typed_bindings_call_every_implemented_host_function() -> None:
    text = (SDK / "python" / "arcana_plugin" / "host.py").read_text()
    assert sorted(set(re.findall(r'\bcall\(\s*"(\w+)"', text))) == FUNCTIONS


def test_wit_contract_has_one_interface_per_grant_holding_exactly_its_host_functions() -> None:
    text = _code((SDK / "wit" / "arcana.wit").read_text())
    interfaces = dict(re.findall(r"^interface ([\w-]+) \{(.*?)^\}", text, re.S | re.M))
    expected: dict[str, set[str]] = {}
    for name, grant in CATALOG.items():
        expected.setdefault(grant.replace(".", "-"), set()).add(name.replace("_", "-"))
    expected |= {"clock": {"now-ms", "monotonic-ns"}, "random": {"random-bytes"}, "config": {"config-get"}}
    assert {iface: set(re.findall(r"^\s*([\w-]+): func", body, re.M)) for iface, body in interfaces.items()} == expected
    for iface in expected.keys() - {"clock", "random", "config"}:
        assert set(re.findall(r"func\((.*?)\) -> (\w+);", interfaces[iface])) == {("request: string", "string")}
    world = re.search(r"^world plugin \{(.*?)^\}", text, re.S | re.M)
    assert world is not None
    assert set(re.findall(r"import ([\w-]+);", world[1])) == set(expected)
    assert re.findall(r"export (\w+):", world[1]) == ["handle", "handlers"]


@pytest.mark.toolchain
def test_zig_host_call_of_a_name_outside_the_contract_does_not_compile(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "plugin.toml").write_text('[plugin]\nname = "unknown"\n')
    (tmp_path / "src" / "main.zig").write_text(
        'const arcana = @import("arcana");\n'
        "export fn go() i32 {\n"
        '    const reply = arcana.hostCall(arcana.allocator, "net_listen", "{}") catch return 1;\n'
        "    arcana.output(reply);\n"
        "    return 0;\n"
        "}\n"
    )
    with pytest.raises(BuildError, match="'net_listen' is not a host function of Arcana"):
        build_plugin(tmp_path)


def test_readme_links_only_files_of_the_repository() -> None:
    targets = re.findall(r"\]\(([^)#]+)[^)]*\)", (SDK / "README.md").read_text())
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert [t for t in local if not (SDK / t).resolve().is_relative_to(REPO) or not (SDK / t).exists()] == []
