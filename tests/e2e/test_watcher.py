"""The plugin folder under a real server: missing, replaced, symlinked, or holding a module too large.

From an outside attack review: a missing --plugins folder gave "ready, 0
plugins" and a dead watcher; after ``mv plugins plugins.old && mv plugins.new
plugins`` changes were no longer seen; dangling symlinks were never reported;
symlinks to files outside the folder were followed and served; a module of
any size was read whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import build_variant, install
from e2e.server import TEST_SECRET, ArcanaServer, admin_headers

VERSION_URL = "/api/v1/test/version"
DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("variants")
    v2 = build_variant("versioned", work, {'const VERSION = "v1";': 'const VERSION = "v2";'})
    return {"v1": fixture_wasm["versioned"], "v2": v2}


def _version(server: ArcanaServer) -> str | int:
    r = httpx.get(server.url + VERSION_URL)
    return str(r.json()["version"]) if r.status_code == 200 else r.status_code


def _until(what: Callable[[], bool], server: ArcanaServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.05)


def _listing(server: ArcanaServer) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _failure(server: ArcanaServer, name: str) -> list[str]:
    """The errors listed for the file ``name``, waiting for them to appear."""
    _until(lambda: any(Path(f["source"]).name == name for f in _listing(server)["failures"]), server)
    return next(f["errors"] for f in _listing(server)["failures"] if Path(f["source"]).name == name)


def _no_traceback(server: ArcanaServer) -> None:
    assert "Traceback" not in server.logs(), server.logs()[-3000:]


# --- a missing folder -------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_serve_refuses_a_plugin_folder_that_is_not_there_in_one_line(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "plugins"
    if kind == "a file":
        folder.write_text("not a folder")
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'k.db'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    done = subprocess.run(
        [sys.executable, "-m", "arcana.cli", "serve", "--config", str(config), "--plugins", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    what = "does not exist" if kind == "missing" else "is not a folder"
    assert f"plugins folder {folder} {what}" in lines[0] and "--plugins" in lines[0]


# --- a replaced folder ------------------------------------------------------


def test_a_folder_replaced_by_two_renames_is_watched_again(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder, new = tmp_path / "plugins", tmp_path / "plugins.new"
    folder.mkdir()
    new.mkdir()
    install(versions["v1"], folder, "versioned")
    install(versions["v2"], new, "versioned")
    server = start_server(folder)
    assert _version(server) == "v1"

    folder.rename(tmp_path / "plugins.old")  # mv plugins plugins.old
    new.rename(folder)  # mv plugins.new plugins
    _until(lambda: _version(server) == "v2", server)

    # The new folder is the one watched now: a change in it is served...
    install(versions["v1"], folder, "versioned")
    _until(lambda: _version(server) == "v1", server)
    (folder / "versioned.wasm").unlink()
    _until(lambda: _version(server) == 404, server)
    _no_traceback(server)


def test_while_the_folder_is_gone_the_loaded_plugins_keep_serving(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    folder.rename(tmp_path / "away")
    _until(lambda: "is gone; the loaded plugins keep serving" in server.logs(), server)
    assert _version(server) == "v1"
    folder.mkdir()
    install(versions["v2"], folder, "versioned")
    _until(lambda: _version(server) == "v2", server)
    _no_traceback(server)


class ConfiguredFolderServer(ArcanaServer):
    """Names the plugin folder in the config, as written (--plugins is resolved, symlinks followed, by the CLI)."""

    def start(self, wait_ready: bool = True) -> ArcanaServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
        env["ARCANA_JWT_SECRET"] = TEST_SECRET
        env["ARCANA_PLUGINS__DIR"] = str(self.plugins)
        self._log = self.log_path.open("ab")
        args = ["--config", str(self.config_path), "--http-port", str(self.port), "--grpc-port", str(self.grpc_port)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arcana.cli", "serve", *args], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        if wait_ready:
            self.wait_ready()
        return self


def test_a_symlink_switched_to_another_release_is_followed(tmp_path: Path, versions: dict[str, Path]) -> None:
    releases = tmp_path / "releases"
    for name, version in (("1", "v1"), ("2", "v2")):
        (releases / name).mkdir(parents=True)
        install(versions[version], releases / name, "versioned")
    link = tmp_path / "plugins"
    link.symlink_to(releases / "1")
    server = ConfiguredFolderServer(link, tmp_path).start()
    try:
        assert _version(server) == "v1"
        switch = tmp_path / "plugins.next"
        switch.symlink_to(releases / "2")
        switch.replace(link)  # the atomic switch of a release deploy
        _until(lambda: _version(server) == "v2", server)
        install(versions["v1"], releases / "2", "versioned")  # the new release is the one watched
        _until(lambda: _version(server) == "v1", server)
        _no_traceback(server)
    finally:
        server.stop()


# --- symlinks ---------------------------------------------------------------


def test_dangling_symlinks_are_reported_with_a_fix(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "early.wasm").symlink_to(tmp_path / "nowhere" / "early.wasm")
    server = start_server(folder)
    early = _failure(server, "early.wasm")
    assert early == [
        f"file: early.wasm is a symlink to {tmp_path / 'nowhere' / 'early.wasm'}, which does not exist "
        "(fix: point it at a module, or remove it)"
    ]
    (folder / "late.wasm").symlink_to("gone.wasm")  # made while serving: the watcher reports it too
    assert "late.wasm is a symlink to gone.wasm, which does not exist" in _failure(server, "late.wasm")[0]
    # Pointing the link at a module (in a hidden folder, which is not scanned itself) loads it and clears the failure.
    (folder / ".builds").mkdir()
    install(versions["v1"], folder / ".builds", "versioned")
    (folder / ".late.next").symlink_to(".builds/versioned.wasm")
    (folder / ".late.next").replace(folder / "late.wasm")
    _until(lambda: _version(server) == "v1", server)
    _until(lambda: [Path(f["source"]).name for f in _listing(server)["failures"]] == ["early.wasm"], server)
    _no_traceback(server)


def test_symlinks_leading_outside_the_folder_are_refused(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    (folder / ".builds").mkdir(parents=True)
    (folder / "outside.wasm").symlink_to(versions["v1"])  # the module lives elsewhere
    inside = install(versions["v2"], folder / ".builds", "versioned")
    (folder / "inside.wasm").symlink_to(inside)  # a link within the folder is fine
    server = start_server(folder)
    errors = _failure(server, "outside.wasm")
    assert errors == [
        f"file: outside.wasm is a symlink to {versions['v1'].resolve()}, outside the plugins folder {folder} "
        "(fix: copy the file into the folder, or set plugins.follow_symlinks_outside: true in the config)"
    ]
    assert [p["name"] for p in _listing(server)["plugins"]] == ["versioned"] and _version(server) == "v2"
    _no_traceback(server)


def test_a_sidecar_manifest_leading_outside_is_refused_too(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    secret = tmp_path / "secret.toml"
    secret.write_text('password = "hunter2"\n')
    install(versions["v1"], folder, "versioned")
    (folder / "versioned.toml").symlink_to(secret)
    server = start_server(folder)
    errors = _failure(server, "versioned.wasm")
    assert len(errors) == 1 and "versioned.toml is a symlink to" in errors[0] and "outside" in errors[0]
    assert "hunter2" not in server.logs() and "hunter2" not in str(_listing(server))


def test_follow_symlinks_outside_lets_an_operator_allow_them(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "versioned.wasm").symlink_to(versions["v1"])
    server = start_server(folder, {"plugins": {"follow_symlinks_outside": True}})
    assert _version(server) == "v1" and _listing(server)["failures"] == []


# --- the size cap -----------------------------------------------------------


def test_a_module_over_the_configured_limit_is_refused_naming_both_sizes(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    size = versions["v1"].stat().st_size
    install(versions["v1"], folder, "versioned")
    server = start_server(folder, {"plugins": {"max_module_bytes": size - 1}})
    assert _failure(server, "versioned.wasm") == [
        f"file: versioned.wasm is {size} bytes, above the limit of {size - 1} bytes "
        "(fix: make the module smaller, or raise plugins.max_module_bytes in the config)"
    ]
    assert _version(server) == 404


def test_the_default_limit_refuses_a_huge_module_without_reading_it(
    tmp_path: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(versions["v1"], folder, "versioned")
    with (folder / "huge.wasm").open("wb") as f:
        f.truncate(DEFAULT_MAX_MODULE_BYTES + 1)  # sparse: costs no disk, and would cost 64 MiB of memory if read
    server = start_server(folder)
    assert (
        f"huge.wasm is {DEFAULT_MAX_MODULE_BYTES + 1} bytes, above the limit of {DEFAULT_MAX_MODULE_BYTES}"
        in (_failure(server, "huge.wasm")[0])
    )
    with (folder / "exact.wasm").open("wb") as f:
        f.truncate(DEFAULT_MAX_MODULE_BYTES)  # at the limit: read, and refused for what it is (not a module)
    assert "above the limit" not in _failure(server, "exact.wasm")[0]
    assert _version(server) == "v1"
    _no_traceback(server)
