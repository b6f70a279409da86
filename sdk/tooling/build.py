"""Build a plugin source folder into one ``.wasm`` with its manifest embedded.

The language is detected from the files present:

==========================================  ==============
files                                       language
==========================================  ==============
``package.json`` + ``assembly/index.ts``    AssemblyScript
``src/main.zig``                            Zig
``src/main.c``                              C
``plugin.toml`` + ``app.py``                Python (a component, see python_build)
==========================================  ==============

The folder's ``plugin.toml`` is embedded as the custom section
``arcana.manifest``, byte-for-byte but for one line: when its ``[plugin]``
table does not set ``host_abi``, ``host_abi = HOST_ABI`` is added under the
table's header, so the kernel knows which host ABI the module was built for.
Only the kernel validates the manifest; the build only needs it to be TOML.
The JSON Schema files its routes name (``request``, ``[route.responses]``) are embedded
as the custom section ``arcana.schemas`` (:func:`embed_schemas`).
The same sources always give the same bytes, wherever the folder lives (CI
rebuilds the committed examples and compares), except for Python plugins:
componentize-py's snapshot is not reproducible (see :mod:`.python_build`)::

    from arcana_sdk.build import build_plugin
    wasm_path = build_plugin(Path("plugins/hello"))   # plugins/hello/hello.wasm

Every failure raises :class:`BuildError` naming the folder and carrying the
failing tool's output, except a missing toolchain package (the ``toolchain``
extra), which raises :class:`~arcana_sdk.toolchain.ToolchainMissing` saying
what to install.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from . import python_build
from .protoc import ProtocError, compile_proto_dir, proto_files
from .sources import guest_sdk_dir
from .toolchain import ToolchainMissing, require_componentize_py, require_grpc_tools, require_zig
from .wasm_sections import (
    DESCRIPTORS_SECTION,
    MANIFEST_SECTION,
    SCHEMAS_SECTION,
    append_custom_section,
    remove_custom_sections,
)

__all__ = ["BuildError", "Language", "ToolchainMissing", "build_plugin", "detect_language"]

MANIFEST_FILE = "plugin.toml"
# The host ABI the guest SDKs here speak, stamped into each manifest. It equals the kernel's
# arcana.types.HOST_ABI_VERSION in one checkout (tests/sdk/test_build_abi.py); a copy, not an
# import, because the tooling never imports the kernel (tests/test_dependency_rules.py).
HOST_ABI = 1
# A `[plugin]` header line, with its line ending (none at the end of the file).
_PLUGIN_HEADER = re.compile(rb"^[ \t]*\[[ \t]*plugin[ \t]*\][ \t]*(?:#[^\r\n]*)?(\r?\n|\Z)", re.M)
AS_ABORT = "~lib/@arcana/sdk/assembly/index/arcanaAbort"
TOOL_TIMEOUT_S = 600
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class BuildError(Exception):
    """A plugin folder could not be built.

    ``src_dir`` is the plugin folder, ``tool`` the command that failed (if
    any) and ``output`` what it printed on stderr (and stdout).
    """

    def __init__(self, src_dir: Path, message: str, *, tool: str | None = None, output: str = "") -> None:
        self.src_dir = src_dir
        self.tool = tool
        self.output = output
        text = f"cannot build plugin {src_dir}: {message}"
        if output.strip():
            text += f"\n--- {tool or 'tool'} output ---\n{output.strip()}"
        super().__init__(text)


class Language(enum.Enum):
    """Guest languages the build knows."""

    ASSEMBLYSCRIPT = "assemblyscript"
    ZIG = "zig"
    C = "c"
    PYTHON = "python"


def detect_language(src_dir: Path) -> Language:
    """The plugin language of ``src_dir``, from the files it contains."""
    if (src_dir / "package.json").is_file() and (src_dir / "assembly" / "index.ts").is_file():
        return Language.ASSEMBLYSCRIPT
    if (src_dir / "src" / "main.zig").is_file():
        return Language.ZIG
    if (src_dir / "src" / "main.c").is_file():
        return Language.C
    if (src_dir / MANIFEST_FILE).is_file() and (src_dir / python_build.APP_FILE).is_file():
        return Language.PYTHON
    raise BuildError(
        src_dir,
        "no plugin sources found: expected package.json + assembly/index.ts (AssemblyScript), "
        "src/main.zig (Zig), src/main.c (C) or plugin.toml + app.py (Python)",
    )


def build_plugin(src_dir: Path, out_path: Path | None = None) -> Path:
    """Compile ``src_dir``, embed its ``plugin.toml`` and write the module.

    The default output is ``<src_dir>/<plugin name>.wasm``. Returns the path
    written.
    """
    src_dir = Path(src_dir).resolve()
    if not src_dir.is_dir():
        raise BuildError(src_dir, "not a directory")
    manifest = stamp_host_abi(src_dir, _read_manifest(src_dir))
    language = detect_language(src_dir)
    # Before any compiler runs: a missing toolchain is reported at once, not after an npm install.
    if language in (Language.ZIG, Language.C):
        require_zig()
    if language is Language.PYTHON:
        require_componentize_py()
    if proto_files(src_dir / "proto"):
        require_grpc_tools()
    with tempfile.TemporaryDirectory(prefix="arcana-build-") as tmp:
        module = _COMPILERS[language](src_dir, Path(tmp))
        descriptors = _compile_protos(src_dir)
    module = remove_custom_sections(module, MANIFEST_SECTION)
    module = remove_custom_sections(module, DESCRIPTORS_SECTION)
    if descriptors is not None:
        module = append_custom_section(module, DESCRIPTORS_SECTION, descriptors)
    module = embed_schemas(src_dir, manifest, module)
    # The manifest goes last: a truncated file always loses it, so a half-copied module is refused.
    module = append_custom_section(module, MANIFEST_SECTION, manifest)
    target = Path(out_path) if out_path is not None else src_dir / f"{_plugin_file_name(src_dir, manifest)}.wasm"
    _write_atomically(target, module)
    return target


def embed_schemas(src_dir: Path, manifest: bytes, module: bytes) -> bytes:
    """``module`` with the section ``arcana.schemas``: every JSON Schema file the routes name, or none.

    The section is one JSON object {path as written in the manifest: schema}, written canonically (sorted
    keys, no spaces) so the same files always give the same bytes. Only the kernel checks that they are
    schemas (`arcana plugin check`); the build needs them to be JSON files of the plugin folder.
    """
    module = remove_custom_sections(module, SCHEMAS_SECTION)
    schemas = {name: _read_schema(src_dir, name, where) for name, where in schema_files(manifest).items()}
    if not schemas:
        return module
    payload = json.dumps(schemas, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return append_custom_section(module, SCHEMAS_SECTION, payload)


def schema_files(manifest: bytes) -> dict[str, str]:
    """The schema files the manifest's routes name (request, responses) -> the first field naming each.

    A reference ending in ``.json`` is a file; any other is a protobuf message (resolved by the kernel).
    """
    routes = tomllib.loads(manifest.decode("utf-8")).get("route", [])
    found: dict[str, str] = {}
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue
        responses = route.get("responses", {})
        refs = [("request", route.get("request"))]
        refs += [(f"responses.{k}", v) for k, v in (responses.items() if isinstance(responses, dict) else [])]
        for field, ref in refs:
            if isinstance(ref, str) and ref.endswith(".json"):
                found.setdefault(ref, f"route[{i}].{field}")
    return found


def _read_schema(src_dir: Path, name: str, where: str) -> object:
    """One schema file of the plugin folder, parsed; BuildError when it is outside, missing or not JSON."""
    path = (src_dir / name).resolve()
    if name.startswith("/") or not path.is_relative_to(src_dir):
        raise BuildError(src_dir, f"{where} names {name}, outside the plugin folder")
    if not path.is_file():
        raise BuildError(src_dir, f"{where} names {name}, which does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildError(src_dir, f"{name} (named by {where}) is not valid JSON: {exc}") from exc


def _read_manifest(src_dir: Path) -> bytes:
    """The raw ``plugin.toml`` bytes, checked to be UTF-8 TOML."""
    path = src_dir / MANIFEST_FILE
    if not path.is_file():
        raise BuildError(src_dir, f"{MANIFEST_FILE} is missing")
    raw = path.read_bytes()
    try:
        tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BuildError(src_dir, f"{MANIFEST_FILE} is not UTF-8: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(src_dir, f"{MANIFEST_FILE} is not valid TOML: {exc}") from exc
    return raw


def stamp_host_abi(src_dir: Path, raw: bytes) -> bytes:
    """``raw`` with ``host_abi = HOST_ABI`` added to its ``[plugin]`` table, unless the table sets it already.

    The line goes right under the ``[plugin]`` header (or, for a manifest that writes ``plugin.name = ...``
    as dotted keys, first in the file), so the rest stays byte-for-byte; the result is parsed again to prove
    it says the same plus the stamp. A manifest without a ``[plugin]`` table is left alone: the kernel
    reports that, naming the field.
    """
    data = tomllib.loads(raw.decode("utf-8"))
    plugin = data.get("plugin")
    if not isinstance(plugin, dict) or "host_abi" in plugin:
        return raw
    line = f"host_abi = {HOST_ABI}".encode()
    header = _PLUGIN_HEADER.search(raw)
    if header is not None:
        eol = header[1] or b"\n"
        stamped = raw[: header.end()] + (b"" if header[1] else eol) + line + eol + raw[header.end() :]
    else:
        stamped = b"plugin." + line + b"\n" + raw
    try:
        again = tomllib.loads(stamped.decode("utf-8"))
    except tomllib.TOMLDecodeError:
        again = {}
    if again != {**data, "plugin": {**plugin, "host_abi": HOST_ABI}}:
        raise BuildError(
            src_dir,
            f"cannot add host_abi to the [plugin] of {MANIFEST_FILE}: "
            f"write [plugin] as a table, or set host_abi = {HOST_ABI} in it",
        )
    return stamped


def _plugin_file_name(src_dir: Path, manifest: bytes) -> str:
    """``[plugin] name`` when it is a usable file name, else the folder name."""
    plugin = tomllib.loads(manifest.decode("utf-8")).get("plugin")
    name = plugin.get("name") if isinstance(plugin, dict) else None
    if isinstance(name, str) and _SAFE_FILE_NAME.fullmatch(name):
        return name
    return src_dir.name


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def _run(src_dir: Path, tool: str, cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run one tool (``tool`` names it in errors); a failure becomes a BuildError."""
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError(src_dir, f"tool not found: {cmd[0]}", tool=tool) from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(src_dir, f"{tool} timed out after {TOOL_TIMEOUT_S}s", tool=tool) from exc
    if proc.returncode != 0:
        output = "\n".join(part for part in (proc.stderr, proc.stdout) if part.strip())
        raise BuildError(src_dir, f"{tool} failed with exit code {proc.returncode}", tool=tool, output=output)


def _read_output(src_dir: Path, path: Path) -> bytes:
    if not path.is_file():
        raise BuildError(src_dir, f"the compiler reported success but wrote no {path.name}")
    return path.read_bytes()


def _compile_protos(src_dir: Path) -> bytes | None:
    """``proto/**/*.proto`` -> one FileDescriptorSet (imports included), or None without protos."""
    proto_dir = src_dir / "proto"
    if not proto_files(proto_dir):
        return None
    try:
        return compile_proto_dir(proto_dir)
    except ProtocError as exc:
        raise BuildError(src_dir, exc.message, tool="protoc", output=exc.output) from exc


def _zig_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ziglang", *args]


def _compile_zig(src_dir: Path, tmp: Path) -> bytes:
    """Zig: one root module plus the `arcana` SDK module, ReleaseSmall, stripped."""
    out = tmp / "plugin.wasm"
    cmd = _zig_command(
        "build-exe",
        "-target", "wasm32-freestanding",
        "-O", "ReleaseSmall",
        "-fno-entry",
        "-rdynamic",
        "-fstrip",
        "--cache-dir", str(tmp / "zig-cache"),
        "--dep", "arcana",
        f"-Mroot={src_dir / 'src' / 'main.zig'}",
        f"-Marcana={guest_sdk_dir('zig') / 'arcana.zig'}",
        f"-femit-bin={out}",
    )  # fmt: skip
    _run(src_dir, "zig build-exe", cmd, cwd=tmp)
    return _read_output(src_dir, out)


def _compile_c(src_dir: Path, tmp: Path) -> bytes:
    """C: freestanding wasm32 via `zig cc`, exports from export_name attributes."""
    out = tmp / "plugin.wasm"
    cmd = _zig_command(
        "cc",
        "--target=wasm32-freestanding",
        "-Os",
        "-nostdlib",
        "-Wl,--no-entry",
        "-Wl,--strip-all",
        f"-I{guest_sdk_dir('c')}",
        "-o", str(out),
        str(src_dir / "src" / "main.c"),
    )  # fmt: skip
    env = {**os.environ, "ZIG_LOCAL_CACHE_DIR": str(tmp / "zig-cache")}
    _run(src_dir, "zig cc", cmd, cwd=tmp, env=env)
    return _read_output(src_dir, out)


def _compile_assemblyscript(src_dir: Path, tmp: Path) -> bytes:
    """AssemblyScript: npm ci/install when node_modules is missing, then asc."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise BuildError(src_dir, "AssemblyScript plugins need node and npm on PATH")
    if not (src_dir / "node_modules").is_dir():
        install = "ci" if (src_dir / "package-lock.json").is_file() else "install"
        _run(src_dir, f"npm {install}", [npm, install, "--no-audit", "--no-fund"], cwd=src_dir)
    asc = src_dir / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    if not asc.is_file():
        raise BuildError(src_dir, "assemblyscript is not installed: add it to devDependencies")
    out = tmp / "plugin.wasm"
    cmd = [
        node, str(asc), "assembly/index.ts",
        "--outFile", str(out),
        "--optimizeLevel", "3",
        "--shrinkLevel", "2",
        "--noAssert",
    ]  # fmt: skip
    if (src_dir / "node_modules" / "@arcana" / "sdk").exists():
        cmd += ["--use", f"abort={AS_ABORT}"]
    _run(src_dir, "asc", cmd, cwd=src_dir)
    return _read_output(src_dir, out)


def _compile_python(src_dir: Path, tmp: Path) -> bytes:
    """Python: the plugin's own WIT world, then componentize-py with stubbed WASI (see python_build)."""
    wit = python_build.write_world(tmp, _read_manifest(src_dir))
    app, sdk = python_build.stage_sources(src_dir, tmp)
    out = tmp / "plugin.wasm"
    # An app that raises at import fails the build: its Python traceback is the useful part, not Rust's.
    env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
    _run(src_dir, "componentize-py", python_build.componentize_command(app, sdk, wit, out), cwd=tmp, env=env)
    return _read_output(src_dir, out)


_COMPILERS = {
    Language.ASSEMBLYSCRIPT: _compile_assemblyscript,
    Language.ZIG: _compile_zig,
    Language.C: _compile_c,
    Language.PYTHON: _compile_python,
}
