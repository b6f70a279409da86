"""An author's first minutes: `arcana plugin new`, build, the generated tests pass, the server serves it.

Each language runs the real commands in a folder outside the checkout, as an author would: the
installed `arcana` command, `python -m pytest` in the new folder (the generated test and the
`arcana_plugin` fixture, nothing of this repository's tests), then the .wasm dropped into a
running server's plugins folder and called over HTTP. The time from `plugin new` to a passing
test and the .wasm size are printed (run with -s to see them); nothing asserts on them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import wasmtime

from conftest import install
from e2e.server import ArcanaServer

pytestmark = [pytest.mark.e2e, pytest.mark.toolchain]

ROOT = Path(__file__).resolve().parents[2]
ARCANA = Path(sys.executable).parent / "arcana"  # the console script of the installed package
STEP_TIMEOUT_S = 600
# A Python plugin is a component the server compiles (seconds on a busy machine) before the first /ready.
COMPONENT_READY_TIMEOUT_S = 180.0


def _author_env() -> dict[str, str]:
    """The environment of an author's shell: none of this test run's pytest or arcana settings.

    npm prefers its cache (the pins are exact, so a cached package is the right one): an install
    takes seconds instead of a round trip per package.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCANA_", "PYTEST_"))}
    env.pop("PYTHONPATH", None)
    env["npm_config_prefer_offline"] = "true"
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, cwd=cwd, env=_author_env(), capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.parametrize("language", ["zig", "c", "assemblyscript", "python"])
def test_a_new_plugin_builds_passes_its_own_tests_and_serves_over_http(
    tmp_path: Path, start_server: Callable[..., ArcanaServer], language: str
) -> None:
    authors = tmp_path / "work"
    authors.mkdir()
    assert not authors.resolve().is_relative_to(ROOT), "the plugin must live outside the checkout"
    name = f"{language}-greeter"

    folder = authors / name
    steps = {
        "new": ([str(ARCANA), "plugin", "new", name, "--lang", language, "--dir", str(authors)], authors),
        "build": ([str(ARCANA), "plugin", "build", "."], folder),
        "test": ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], folder),
    }
    took: dict[str, float] = {}
    for step, (cmd, cwd) in steps.items():
        started = time.monotonic()
        tested = _run(cmd, cwd)
        took[step] = time.monotonic() - started

    assert "4 passed" in tested.stdout, tested.stdout
    wasm = folder / f"{name}.wasm"
    parts = ", ".join(f"{step} {s:.1f} s" for step, s in took.items())
    print(
        f"\nscaffold {language}: plugin new -> passing test {sum(took.values()):.1f} s ({parts}), "
        f"{name}.wasm {wasm.stat().st_size} bytes"
    )

    if language == "assemblyscript":
        _assert_the_vendored_sdk_was_installed(folder, wasm)

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install(wasm, plugins)
    server = start_server(plugins, wait_ready=language != "python")
    if language == "python":
        server.wait_ready(COMPONENT_READY_TIMEOUT_S)
    hello = httpx.get(f"{server.url}/api/v1/{name}/hello/Zo%C3%AB", timeout=10)
    too_long = httpx.get(f"{server.url}/api/v1/{name}/hello/{'x' * 33}", timeout=10)

    assert (hello.status_code, hello.json()) == (200, {"message": "Hello, Zoë!"})
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "VALIDATION_FAILED"


def _assert_the_vendored_sdk_was_installed(folder: Path, wasm: Path) -> None:
    """npm unpacked the tarball (a copy, not a link), locked its hash, and asc used the SDK's abort handler."""
    installed = folder / "node_modules" / "@arcana" / "sdk"
    assert installed.is_dir() and not installed.is_symlink()
    assert (folder / "node_modules" / "@extism" / "as-pdk").is_dir()
    lock = json.loads((folder / "package-lock.json").read_text())["packages"]["node_modules/@arcana/sdk"]
    tarball = next((folder / "vendor").glob("arcana-sdk-*.tgz")).read_bytes()
    assert lock["integrity"] == "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    imports = {(i.module, i.name) for i in wasmtime.Module.from_file(wasmtime.Engine(), str(wasm)).imports}
    assert ("env", "abort") not in imports, "asc's default abort: --use abort=<the SDK's> did not apply"
    assert ("extism:host/env", "error_set") in imports
