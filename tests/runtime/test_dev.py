"""`arcana dev`'s in-process parts: which files rebuild, the server's config, tokens, and builds that fail."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from arcana.auth.tokens import Tokens
from arcana.config import load_config
from arcana.dev import (
    DEV_SECRET_ENV,
    DevLoop,
    DevOptions,
    ServedBuilds,
    check_options,
    dev_config,
    is_source,
    mint_token,
    protected_entries,
    served_file_name,
    watch_sources,
)
from arcana.errors import Unauthorized
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.loader import build_id
from arcana.manifest import parse_manifest
from arcana.watcher import watch_plugins
from arcana_host.catalog import KNOWN_GRANTS
from arcana_sdk.build import BuildError
from fakes import FakePlugin, Kernels, manifest_toml, reply, route, wasm_bytes

ROOT = Path("/work/plugin")
SECRET = "dev-test-secret-0123456789-abcdefghijklmnop"


@pytest.mark.parametrize(
    "relative",
    [
        "plugin.toml",
        "src/main.zig",
        "src/lib/util.zig",
        "src/main.c",
        "assembly/index.ts",
        "proto/notes/v1/n.proto",
        "app.py",
    ],
)
def test_the_manifest_and_files_under_the_source_folders_rebuild(relative: str) -> None:
    assert is_source(ROOT / relative, ROOT)


@pytest.mark.parametrize(
    "relative",
    [
        "echo.wasm",  # the output of `arcana plugin build DIR`
        "echo.wasm.partial",
        "src/echo.wasm",
        "node_modules/assemblyscript/std/index.ts",
        "assembly/node_modules/x/index.ts",
        ".git/HEAD",
        "src/.zig-cache/h/main.o",
        "zig-cache/o/x.zig",
        "zig-out/bin/x.wasm",
        "src/.main.zig.swp",  # vim
        "src/main.zig~",  # emacs, vim backups
        "src/main.zig.tmp",
        "README.md",
        "package.json",
        "tests/test_x.zig",
    ],
)
def test_output_tool_folders_and_scratch_files_do_not_rebuild(relative: str) -> None:
    assert not is_source(ROOT / relative, ROOT)


def test_a_file_outside_the_folder_is_not_a_source() -> None:
    assert not is_source(Path("/work/other/plugin.toml"), ROOT)


def test_without_a_config_every_plugin_may_have_what_its_manifest_requests(tmp_path: Path) -> None:
    config = dev_config(None, tmp_path / "plugins", tmp_path / "dev.db", 18080, 19090)
    # The kernel grants requested & granted: granting every known grant grants exactly the requests.
    assert config.granted("any-name") == KNOWN_GRANTS
    assert config.plugins_dir() == tmp_path / "plugins"
    assert config.plugins.watch
    assert config.database.url == f"sqlite:///{tmp_path / 'dev.db'}"
    assert config.database.auto_migrate
    assert (config.server.http_port, config.server.grpc_port, config.server.workers) == (18080, 19090, 1)
    assert config.auth.dev and config.auth.secret_env == DEV_SECRET_ENV


def test_an_operator_config_keeps_its_grants_and_ports_unless_flags_give_them(tmp_path: Path) -> None:
    file = tmp_path / "arcana.yaml"
    file.write_text("grants:\n  echo: [log]\nserver:\n  http_port: 8181\n  grpc_port: 9191\n  workers: 2\n")
    operator = load_config(file, environ={})
    config = dev_config(operator, tmp_path / "plugins", tmp_path / "dev.db", grpc_port=9292)
    assert config.grants == {"echo": ["log"]}
    assert config.granted("notes") == frozenset()
    assert (config.server.http_port, config.server.grpc_port, config.server.workers) == (8181, 9292, 1)
    assert config.plugins.watch


def test_a_minted_token_is_one_the_servers_signer_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEV_SECRET_ENV, SECRET)
    config = dev_config(None, tmp_path / "plugins", tmp_path / "dev.db")
    token = mint_token(config, "ada", ["user", "admin"])
    principal = Tokens(config.auth).verify(token)  # a fresh signer over the same config, as the kernel builds
    assert (principal.sub, principal.roles) == ("ada", ("user", "admin"))


def test_a_production_secret_is_not_the_one_dev_tokens_are_signed_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCANA_JWT_SECRET", "p" * 40)
    monkeypatch.setenv(DEV_SECRET_ENV, SECRET)
    token = mint_token(dev_config(None, tmp_path / "plugins", tmp_path / "dev.db"), "ada", [])
    production = load_config(None, environ={}).auth
    with pytest.raises(Unauthorized):
        Tokens(production, environ={"ARCANA_JWT_SECRET": "p" * 40}).verify(token)


def test_routes_and_methods_that_need_a_token_are_listed() -> None:
    manifest = parse_manifest(
        manifest_toml(
            "p",
            routes=[route("GET", "/open", "a", public=True), route("POST", "/items/{id}", "b", roles=["user"])],
            grpc=[{"method": "p.v1.P/Get", "handler": "c"}, {"method": "p.v1.P/Ping", "handler": "d", "public": True}],
        )
    )
    assert protected_entries(manifest) == ["POST /items/{id}", "p.v1.P/Get"]


def test_the_served_file_is_named_after_the_folder() -> None:
    assert served_file_name(Path("/x/my plugin")) == "my-plugin.wasm"
    assert served_file_name(Path("/x/echo")) == "echo.wasm"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (DevOptions(Path("missing")), "does not exist"),
        (DevOptions(Path("empty")), "has no plugin.toml"),
        (DevOptions(Path("plugin"), roles=("user",)), "--roles needs --as"),
        (DevOptions(Path("plugin"), user=" "), "--as needs a user id"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: DevOptions, says: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "plugin.toml").write_text("[plugin]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StartupFailure, match=says) as caught:
        check_options(options)
    assert caught.value.code == ExitCode.CONFIG


# ---------------------------------------------------------------- builds


def _module(version: str) -> bytes:
    """A fake plugin module (tests/fakes.py): the engine runs 'hello', whatever the version says."""
    manifest = manifest_toml("hello", version, routes=[route("GET", "/hello", "hi", public=True)])
    return wasm_bytes(manifest, build=version)


class Builder:
    """Stands in for build_plugin: writes the module of ``version``, or fails as a compiler would."""

    def __init__(self) -> None:
        self.version = "1.0.0"
        self.error: str | None = None
        self.calls = 0

    def __call__(self, src: Path, out: Path) -> Path:
        self.calls += 1
        if self.error is not None:
            raise BuildError(src, "zig build-exe failed with exit code 1", tool="zig build-exe", output=self.error)
        out.write_bytes(_module(self.version))
        return out


def _build_of(version: str) -> str:
    return build_id(hashlib.sha256(_module(version)).hexdigest())


def _dev_loop(tmp_path: Path, served_dir: Path, builder: Builder) -> tuple[DevLoop, ServedBuilds]:
    src = tmp_path / "src-plugin"
    (src / "src").mkdir(parents=True, exist_ok=True)
    (src / "plugin.toml").write_text(manifest_toml("hello"))
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    builds = ServedBuilds(served_dir / "hello.wasm")
    return DevLoop(src, served_dir / "hello.wasm", staging, builds, builder, reload_wait_s=10), builds


def test_a_first_build_that_fails_is_printed_and_serves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    builder = Builder()
    builder.error = "src/main.zig:3:1: error: expected expression, found 'EOF'"
    (tmp_path / "served").mkdir()
    dev, _ = _dev_loop(tmp_path, tmp_path / "served", builder)
    with caplog.at_level(logging.INFO, "arcana.dev"):
        assert dev.first_build() is False
    assert not dev.served.exists()
    assert "expected expression, found 'EOF'" in caplog.text
    assert "nothing is served yet" in caplog.text


def run_with_kernel(kernels: Kernels, scenario: Callable[[], Awaitable[None]]) -> None:
    """``scenario`` (a coroutine function) with the kernel loaded and its folder watcher running."""

    async def main() -> None:
        kernel = kernels()
        stop = asyncio.Event()
        await kernel.load_all()
        watcher = asyncio.create_task(watch_plugins(kernel, stop))
        await asyncio.sleep(0.2)  # the watch is in place
        try:
            await scenario()
        finally:
            stop.set()
            await watcher

    asyncio.run(main())


def test_a_rebuild_is_reloaded_by_the_kernel_and_reported_with_its_build(
    kernels: Kernels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernels.engine.define("hello", FakePlugin({"hi": reply({"ok": True})}))
    builder = Builder()
    dev, builds = _dev_loop(tmp_path, kernels.plugins, builder)
    reports = []

    async def scenario() -> None:
        builder.version = "2.0.0"
        reports.append(await dev.rebuild())

    with builds.listening(), caplog.at_level(logging.INFO, "arcana.dev"):
        assert dev.first_build()
        run_with_kernel(kernels, scenario)
    (report,) = reports
    assert report is not None and report.build == _build_of("2.0.0")
    assert builds.serving == _build_of("2.0.0")
    assert f"serving build {_build_of('2.0.0')}" in caplog.text
    assert not dev.staged.exists()


def test_a_failed_rebuild_leaves_the_last_good_build_serving(
    kernels: Kernels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernels.engine.define("hello", FakePlugin({"hi": reply({"ok": True})}))
    builder = Builder()
    dev, builds = _dev_loop(tmp_path, kernels.plugins, builder)
    reports = []

    async def scenario() -> None:
        builder.error = "src/main.zig:9:5: error: use of undeclared identifier 'oops'"
        reports.append(await dev.rebuild())

    with builds.listening(), caplog.at_level(logging.INFO, "arcana.dev"):
        assert dev.first_build()
        good = dev.served.read_bytes()
        run_with_kernel(kernels, scenario)
    assert reports == [None]
    assert dev.served.read_bytes() == good
    assert builds.serving == _build_of("1.0.0")
    assert "use of undeclared identifier 'oops'" in caplog.text
    assert f"build {_build_of('1.0.0')} keeps serving" in caplog.text


def test_a_module_the_kernel_refuses_is_reported_and_the_old_build_keeps_serving(
    kernels: Kernels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernels.engine.define("hello", FakePlugin({"hi": reply({"ok": True})}))
    builder = Builder()
    dev, builds = _dev_loop(tmp_path, kernels.plugins, builder)
    reports = []

    async def scenario() -> None:
        builder.version = "not a version"  # the kernel refuses the manifest
        reports.append(await dev.rebuild())

    with builds.listening(), caplog.at_level(logging.INFO, "arcana.dev"):
        assert dev.first_build()
        run_with_kernel(kernels, scenario)
    (report,) = reports
    assert report is not None and report.build is None
    assert builds.serving == _build_of("1.0.0")
    assert f"build {_build_of('1.0.0')} keeps serving" in caplog.text


def test_going_back_to_the_serving_build_after_a_refused_one_replaces_the_refused_file(
    kernels: Kernels, tmp_path: Path
) -> None:
    kernels.engine.define("hello", FakePlugin({"hi": reply({"ok": True})}))
    builder = Builder()
    dev, builds = _dev_loop(tmp_path, kernels.plugins, builder)
    reports = []

    async def scenario() -> None:
        builder.version = "not a version"
        reports.append(await dev.rebuild())
        builder.version = "1.0.0"  # the author undoes the change
        reports.append(await dev.rebuild())

    with builds.listening():
        assert dev.first_build()
        run_with_kernel(kernels, scenario)
    refused, back = reports
    assert refused is not None and refused.build is None
    assert back is not None and back.build == _build_of("1.0.0")
    assert dev.served.read_bytes() == _module("1.0.0")


def test_a_rebuild_to_the_same_bytes_is_not_handed_to_the_server(
    kernels: Kernels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernels.engine.define("hello", FakePlugin({"hi": reply({"ok": True})}))
    builder = Builder()
    dev, builds = _dev_loop(tmp_path, kernels.plugins, builder)
    reports = []

    async def scenario() -> None:
        reports.append(await dev.rebuild())  # a comment changed, say: the same module

    with builds.listening(), caplog.at_level(logging.INFO, "arcana.dev"):
        assert dev.first_build()
        run_with_kernel(kernels, scenario)
    assert reports == [None]
    assert builds.count == 1  # the first load only
    assert "already serving" in caplog.text


def test_saving_a_source_rebuilds_and_ignored_files_do_not(
    kernels: Kernels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernels.engine.define("hello", FakePlugin({"hi": reply({"ok": True})}))
    builder = Builder()
    dev, builds = _dev_loop(tmp_path, kernels.plugins, builder)

    async def scenario() -> None:
        stop = asyncio.Event()
        watching = asyncio.create_task(watch_sources(dev, stop))
        await asyncio.sleep(0.3)  # the watch is in place
        (dev.src / "hello.wasm").write_bytes(b"output")
        (dev.src / "node_modules").mkdir()
        (dev.src / "node_modules" / "x.ts").write_text("x")
        (dev.src / "src" / ".main.zig.swp").write_text("x")
        builder.version = "2.0.0"
        (dev.src / "src" / "main.zig").write_text("// saved")
        deadline = asyncio.get_running_loop().time() + 20
        while builds.serving != _build_of("2.0.0") and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await watching

    with builds.listening(), caplog.at_level(logging.INFO, "arcana.dev"):
        assert dev.first_build()
        run_with_kernel(kernels, scenario)
    assert builds.serving == _build_of("2.0.0")
    changed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("changed:")]
    assert changed == ["changed: src/main.zig; rebuilding"]
    assert builder.calls == 2
