"""The built wheel, installed in a fresh virtualenv, serves REST and gRPC from a folder outside the checkout.

This is what a user gets from `pip install arcana`: no editable checkout, no
extras (so no protoc, Zig, psycopg or redis), run from a folder laid out by
`arcana init`. The wheel is built from a copy of the checkout (the build
writes build/ and *.egg-info next to its sources), its file list is checked
against the package folders, and its dependencies come from the package
index (pip's cache makes a second run quicker). Never skipped: CI runs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from conftest import ROOT
from e2e.grpc_support import generate_stubs
from e2e.server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.wheel]

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# Left out of the copy the wheel is built from: caches, environments, build output.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", ".cache", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".zig-cache", "zig-cache", "zig-out", ".data",
)  # fmt: skip
PACKAGE_DATA = (
    "arcana/proto/kernel.pb",
    "arcana/bundled/config/default.yaml",
    "arcana/bundled/plugins/hello/hello.wasm",
    "arcana/bundled/plugins/echo/echo.wasm",
    "arcana/bundled/plugins/notes/notes.wasm",
    "arcana/bundled/plugins/audit-log/audit-log.wasm",
    "arcana/migrations/script.py.mako",
    "arcana/py.typed",
    "arcana/static/swagger-ui/swagger-ui-bundle.js",
    "arcana/static/swagger-ui/LICENSE",
    "arcana/static/docs/index.html",
    "arcana_sdk/guest/zig/arcana.zig",
    "arcana_sdk/guest/c/arcana.h",
    "arcana_sdk/guest/assemblyscript/package.json",
    "arcana_sdk/guest/assemblyscript/assembly/index.ts",
    "arcana_sdk/guest/zig/build.zig",
    "arcana_sdk/guest/zig/build.zig.zon",
    "arcana_sdk/templates/common/plugin.toml.tmpl",
    "arcana_sdk/templates/common/tests/test_plugin.py.tmpl",
    "arcana_sdk/templates/assemblyscript/package.json.tmpl",
    "arcana_sdk/templates/zig/src/main.zig.tmpl",
    "arcana_sdk/templates/c/src/main.c.tmpl",
    "arcana_sdk/guest/python/arcana_plugin/__init__.py",
    "arcana_sdk/guest/wit/arcana.wit",
    "arcana_sdk/templates/python/app.py.tmpl",
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path  # outside the checkout

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin("arcana"), *args],
            cwd=cwd,
            env={**_clean_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _clean_env() -> dict[str, str]:
    """No ARCANA_* settings and nothing that would import the checkout instead of the wheel."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("ARCANA_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    assert not work.resolve().is_relative_to(ROOT.resolve())
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCES)
    _pip(Path(sys.executable), "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(source))
    (wheel,) = (work / "dist").glob("arcana-*.whl")
    env = work / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    _pip(env / "bin" / "python", "install", str(wheel))
    return Installed(wheel, env, work)


def _expected_modules() -> set[str]:
    """Every module of every package folder, under its import name."""
    names = set()
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                names.add("/".join((package, *path.relative_to(ROOT / folder).parts)))
    return names


def test_the_wheel_holds_every_module_and_the_package_data(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = sorted(_expected_modules() - names)
    assert missing == [], "missing from the wheel (list the package in pyproject.toml [tool.setuptools] packages)"
    assert sorted(set(PACKAGE_DATA) - names) == []
    assert not [n for n in names if n.startswith(("tests/", "proto/", "plugins/", "sdk/", "runtime/"))]


def test_version_and_a_missing_extra_from_the_installed_command(installed: Installed) -> None:
    result = installed.run("--version", cwd=installed.work)
    assert (result.returncode, result.stdout) == (0, f"arcana {VERSION}\n")
    where = subprocess.run(
        [installed.bin("python"), "-c", "import arcana, arcana_sdk; print(arcana.__file__, arcana_sdk.__file__)"],
        cwd=installed.work,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(p).is_relative_to(installed.venv) for p in where.stdout.split()), where.stdout
    build = installed.run(
        "plugin", "build", str(ROOT / "plugins" / "echo"), "-o", str(installed.work / "e.wasm"), cwd=installed.work
    )
    assert (build.returncode, build.stderr) == (
        5,
        "arcana: the Zig toolchain (ziglang) is not installed; pip install 'arcana[toolchain]'\n",
    )
    pg = installed.run(
        "migrate", cwd=installed.work, env={"ARCANA_DATABASE__URL": "postgresql+psycopg://a@127.0.0.1:1/a"}
    )
    assert (pg.returncode, pg.stderr) == (
        5,
        "arcana: PostgreSQL support is not installed; pip install 'arcana[postgres]'\n",
    )


@pytest.fixture(scope="module")
def served(installed: Installed) -> Iterator[tuple[str, str, Path]]:
    """`arcana init` then `arcana serve` with no flags, in a folder outside the checkout."""
    deploy = installed.work / "deploy"
    init = installed.run("init", str(deploy), cwd=installed.work)
    assert init.returncode == 0, init.stderr
    http_port, grpc_port = free_port(), free_port()
    env = {**_clean_env(), "ARCANA_SERVER__HTTP_PORT": str(http_port), "ARCANA_SERVER__GRPC_PORT": str(grpc_port)}
    log = (installed.work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [installed.bin("arcana"), "serve"], cwd=deploy, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (installed.work / "serve.log").read_text()
            assert time.monotonic() < deadline, (installed.work / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url, f"127.0.0.1:{grpc_port}", deploy
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log.close()
        assert code == 0, (installed.work / "serve.log").read_text()


def test_init_then_serve_answers_rest_from_the_deployment_folder(served: tuple[str, str, Path]) -> None:
    url, _, deploy = served
    assert httpx.get(f"{url}/api/v1/hello/Ada").json() == {"message": "Hello, Ada!"}
    assert httpx.get(f"{url}/ready").json() == {"status": "ready", "plugins": 4}  # hello, echo, notes, audit-log
    assert (deploy / ".data" / "arcana.db").is_file(), "the database is not in the deployment folder"


def test_init_then_serve_answers_grpc_and_kernel_services(served: tuple[str, str, Path], tmp_path: Path) -> None:
    _, address, _ = served
    pb, stubs = generate_stubs(ROOT / "plugins" / "hello" / "proto" / "greeter.proto", tmp_path / "stubs")
    with grpc.insecure_channel(address) as channel:
        reply = stubs.GreeterStub(channel).SayHello(pb.HelloRequest(name="Ada"), timeout=10)
        assert reply.message == "Hello, Ada!"
        # A kernel service, from the precompiled descriptors: refused for want of a token, not unimplemented.
        list_plugins = channel.unary_unary("/arcana.admin.v1.AdminService/ListPlugins")
        with pytest.raises(grpc.RpcError) as refused:
            list_plugins(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("language", ["assemblyscript", "zig", "c"])
def test_plugin_new_from_the_wheel_writes_what_the_checkout_writes(
    installed: Installed, tmp_path: Path, language: str
) -> None:
    from_wheel = installed.run(
        "plugin", "new", "greeter", "--lang", language, "--dir", str(tmp_path / "w"), cwd=tmp_path
    )
    assert from_wheel.returncode == 0, from_wheel.stderr
    from_checkout = subprocess.run(
        [
            sys.executable,
            "-m",
            "arcana.cli",
            "plugin",
            "new",
            "greeter",
            "--lang",
            language,
            "--dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert from_checkout.returncode == 0, from_checkout.stderr
    wheel_tree, checkout_tree = _tree(tmp_path / "w" / "greeter"), _tree(tmp_path / "c" / "greeter")
    assert "plugin.toml" in wheel_tree and "tests/test_greeter.py" in wheel_tree
    assert wheel_tree == checkout_tree


def test_the_harness_fixture_comes_with_the_wheel(installed: Installed, tmp_path: Path) -> None:
    """An author's pytest, in the wheel's environment, gets `arcana_plugin` from the entry point and calls a plugin."""
    _pip(installed.venv / "bin" / "python", "install", "pytest>=8")
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", tmp_path / "hello.wasm")
    (tmp_path / "test_author.py").write_text(
        "from pathlib import Path\n\n"
        "def test_hello(arcana_plugin):\n"
        "    h = arcana_plugin(Path(__file__).parent / 'hello.wasm')\n"
        "    assert h.get('/api/v1/hello/Ada').json() == {'message': 'Hello, Ada!'}\n"
        "    assert h.grpc('greeter.v1.Greeter/SayHello', {'name': 'Ada'}).message == {'message': 'Hello, Ada!'}\n"
    )
    proc = subprocess.run(
        [installed.bin("python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_author.py")],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
