"""Load-time rules seen from outside: route conflicts, sidecars, grants, and the CLI's check."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from conftest import ROOT, install
from e2e.server import ArcanaServer, admin_headers

SIDECAR = """[plugin]
name = "{name}"
version = "1.0.0"
[[route]]
method = "GET"
path = "{path}"
handler = "version"
public = true
"""


def _failures(server: ArcanaServer) -> dict[str, list[str]]:
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
    return {Path(f["source"]).name: f["errors"] for f in listing["failures"]}


def test_a_route_owned_by_another_plugin_is_refused_and_the_owner_keeps_it(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(fixture_wasm["versioned"], folder, "versioned")
    server = start_server(folder)
    (folder / "thief.toml").write_text(SIDECAR.format(name="thief", path="/api/v1/test/version"))
    install(fixture_wasm["versioned"], folder, "thief")
    deadline = time.monotonic() + 15
    while "thief.wasm" not in _failures(server):
        assert time.monotonic() < deadline, server.logs()[-2000:]
        time.sleep(0.02)
    errors = _failures(server)["thief.wasm"]
    assert any("already served by plugin 'versioned'" in e for e in errors)
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
    assert [p["name"] for p in listing["plugins"]] == ["versioned"]
    assert httpx.get(f"{server.url}/api/v1/test/version").json() == {"version": "v1"}


def test_sidecar_manifest_overrides_and_its_change_reloads(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "renamed.toml").write_text(SIDECAR.format(name="renamed", path="/api/v1/renamed/a"))
    install(fixture_wasm["versioned"], folder, "renamed")
    server = start_server(folder)
    assert httpx.get(f"{server.url}/api/v1/renamed/a").json() == {"version": "v1"}
    (folder / "renamed.toml").write_text(SIDECAR.format(name="renamed", path="/api/v1/renamed/b"))
    deadline = time.monotonic() + 15
    while httpx.get(f"{server.url}/api/v1/renamed/b").status_code != 200:
        assert time.monotonic() < deadline, server.logs()[-2000:]
        time.sleep(0.02)
    assert httpx.get(f"{server.url}/api/v1/renamed/a").status_code == 404


def test_operator_grant_unlocks_a_requested_capability(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "logger.toml").write_text(
        SIDECAR.format(name="logger", path="/api/v1/x").replace("[[route]]", "[capabilities]\nlog = true\n[[route]]")
    )
    install(fixture_wasm["versioned"], folder, "logger")
    server = start_server(folder, {"grants": {"*": []}})
    errors = _failures(server)["logger.wasm"]
    assert errors == [
        "capabilities.log: requested but not granted to 'logger' by the operator "
        "(fix: grant it in the config (grants: {logger: [log]}) or drop the request)"
    ]


def _arcana(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "arcana.cli", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_plugin_check_is_a_dry_run_that_creates_no_database(tmp_path: Path) -> None:
    notes = ROOT / "plugins" / "notes" / "notes.wasm"  # asks for the store, so a database would be its first need
    done = _arcana("plugin", "check", str(notes), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "capability store: granted" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no .data/, no arcana.db: checking writes nothing


def test_plugin_check_prints_routes_or_every_problem(fixture_wasm: dict[str, Path]) -> None:
    ok = _arcana("plugin", "check", str(ROOT / "plugins" / "hello" / "hello.wasm"))
    assert ok.returncode == 0 and "route GET /api/v1/hello/{name} -> hello (public, abi json)" in ok.stdout
    bad = _arcana("plugin", "check", str(fixture_wasm["forbidden"]))
    assert bad.returncode == 1
    assert "import extism:host/user::store_get: needs capability 'store'" in bad.stderr and "fix:" in bad.stderr


def test_plugin_build_embeds_the_manifest_so_check_passes(tmp_path: Path) -> None:
    out = tmp_path / "versioned.wasm"
    built = _arcana("plugin", "build", str(ROOT / "tests" / "fixtures" / "plugins" / "versioned"), "-o", str(out))
    assert built.returncode == 0, built.stderr
    assert _arcana("plugin", "check", str(out)).returncode == 0


def test_serve_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  htp_port: 1\n")
    result = _arcana("serve", "--config", str(config))
    assert (
        result.returncode == 2
        and "unknown config key 'server.htp_port'" in result.stderr
        and "bad.yaml" in result.stderr
    )
