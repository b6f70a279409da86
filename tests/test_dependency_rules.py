"""The package layering (README, "Layout and import names"), checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"arcana": ROOT / "runtime", "arcana_host": ROOT / "host_api", "arcana_sdk": ROOT / "sdk" / "tooling"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> dict[str, set[str]]:
    root = PACKAGES[package]
    found = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        found[".".join((package, *rel.parts)).removesuffix(".__init__")] = _imports(path)
    return found


# Pure modules: contracts and data, importable by anything.
LEAVES = ("arcana.manifest", "arcana.errors", "arcana.paths", "arcana.types", "arcana.queue.cron")
ALL = {**_modules("arcana"), **_modules("arcana_host"), **_modules("arcana_sdk")}


def _offenders(modules: dict[str, set[str]], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {i}"
        for m, imports in modules.items()
        for i in imports
        if any(i == f or i.startswith(f + ".") for f in forbidden)
    )


def test_only_the_engine_package_imports_extism_or_wasmtime() -> None:
    outside = {m: i for m, i in ALL.items() if not m.startswith("arcana.engine")}
    assert _offenders(outside, ("extism", "extism_sys", "wasmtime")) == []


def test_manifest_types_and_errors_are_leaves() -> None:
    leaves = {m: i for m, i in ALL.items() if m in LEAVES}
    assert len(leaves) == len(LEAVES)
    assert (
        _offenders(
            leaves,
            (
                "arcana.engine",
                "arcana.edge",
                "arcana.executor",
                "arcana.kernel",
                "arcana.loader",
                "arcana.registry",
                "arcana_host",
                "quart",
                "grpc",
            ),
        )
        == []
    )


def test_leaves_import_only_other_leaves_of_the_kernel() -> None:
    leaves = {m: i for m, i in ALL.items() if m in LEAVES}
    kernel_imports = {i for imports in leaves.values() for i in imports if i.startswith("arcana.")}
    assert kernel_imports <= set(LEAVES)


def test_the_engine_knows_the_host_only_through_the_types_module() -> None:
    engine = {m: i for m, i in ALL.items() if m.startswith("arcana.engine")}
    forbidden = ("arcana_host", "arcana.executor", "arcana.registry", "arcana.kernel", "arcana.edge")
    assert _offenders(engine, forbidden) == []


def test_only_the_edges_and_the_server_import_grpc_and_web_frameworks() -> None:
    outside = {m: i for m, i in ALL.items() if not m.startswith(("arcana.edge", "arcana.server"))}
    assert _offenders(outside, ("grpc", "grpc_health", "grpc_reflection", "quart", "werkzeug", "uvicorn")) == []


def test_host_api_never_imports_the_executor_or_the_edges() -> None:
    host = {m: i for m, i in ALL.items() if m.startswith("arcana_host")}
    assert (
        _offenders(
            host,
            (
                "arcana.executor",
                "arcana.edge",
                "arcana.engine",
                "arcana.kernel",
                "arcana.server",
                "arcana.loader",
                "arcana.dispatch",
                "quart",
                "grpc",
            ),
        )
        == []
    )


def test_the_sdk_tooling_never_imports_the_kernel() -> None:
    sdk = {m: i for m, i in ALL.items() if m.startswith("arcana_sdk")}
    assert _offenders(sdk, ("arcana", "arcana_host")) == []


def test_web_frameworks_stay_inside_the_edges() -> None:
    core = {m: i for m, i in ALL.items() if not m.startswith(("arcana.edge", "arcana.server"))}
    assert _offenders(core, ("quart", "werkzeug", "uvicorn")) == []
