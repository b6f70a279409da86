"""Hot reload: files land, change and vanish under a serving kernel without a failed request."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import build_variant, install
from e2e.server import ArcanaServer, admin_headers

VERSION_URL = "/api/v1/test/version"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("variants")
    v2 = build_variant("versioned", work, {'const VERSION = "v1";': 'const VERSION = "v2";'})
    return {"v1": fixture_wasm["versioned"], "v2": v2}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


def wait_for(server: ArcanaServer, expected: str | int, timeout: float = 15.0) -> float:
    """Poll until the version route answers `expected` (a version, or a status); return seconds taken."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        r = httpx.get(server.url + VERSION_URL)
        if (r.status_code == expected) or (r.status_code == 200 and r.json().get("version") == expected):
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"still not {expected!r} after {timeout}s:\n{server.logs()[-3000:]}")


class Load:
    """Clients calling the version route in a loop; every non-200 is a failure."""

    def __init__(self, server: ArcanaServer, clients: int = 3) -> None:
        self.url = server.url + VERSION_URL
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.seen: dict[str, int] = {}
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(self.url)
                except httpx.TransportError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    version = r.json()["version"]
                    self.seen[version] = self.seen.get(version, 0) + 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_replacing_a_plugin_serves_the_new_version(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    wait_for(server, "v1")
    install(versions["v2"], folder, "versioned")
    took = wait_for(server, "v2")
    print(f"reload-to-serving (polled over HTTP): {took * 1000:.0f} ms")


def test_no_request_fails_across_many_reloads_under_load(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    with Load(server) as load:
        for i in range(20):
            version = "v2" if i % 2 == 0 else "v1"
            install(versions[version], folder, "versioned")
            wait_for(server, version)
    assert load.failures == []
    assert load.seen.get("v1", 0) > 0 and load.seen.get("v2", 0) > 0


def test_a_broken_new_version_leaves_the_old_one_serving(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    target = install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    wait_for(server, "v1")
    broken = versions["v2"].read_bytes()[:-40]  # a truncated module: its manifest section is gone
    tmp = folder / ".broken.part"
    tmp.write_bytes(broken)
    tmp.replace(target)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
        if listing["failures"]:
            break
        time.sleep(0.02)
    failure = listing["failures"][0]
    # The manifest is unreadable, so the failure has no plugin name; the old version from the same file still serves.
    assert failure["source"] == str(target) and failure["still_serving"] is True
    assert httpx.get(server.url + VERSION_URL).json() == {"version": "v1"}
    install(versions["v2"], folder, "versioned")
    wait_for(server, "v2")
    assert httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()["failures"] == []


def test_a_refused_version_with_a_readable_manifest_shows_as_last_error(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    target = install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    wait_for(server, "v1")
    sidecar = target.with_suffix(".toml")
    sidecar.write_text(
        '[plugin]\nname = "versioned"\nversion = "2.0.0"\n[limits]\nmemory_mb = 100000\n'
        '[[route]]\nmethod = "GET"\npath = "/api/v1/test/version"\nhandler = "version"\npublic = true\n'
    )
    deadline = time.monotonic() + 15
    plugin: dict = {}
    while time.monotonic() < deadline:
        plugin = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()["plugins"][0]
        if plugin["last_error"]:
            break
        time.sleep(0.02)
    assert plugin["version"] == "1.0.0" and any("limits.memory_mb" in e for e in plugin["last_error"])
    assert httpx.get(server.url + VERSION_URL).json() == {"version": "v1"}


def test_deleting_unloads_and_adding_loads(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(folder)
    assert httpx.get(server.url + VERSION_URL).status_code == 404
    target = install(versions["v1"], folder, "versioned")
    wait_for(server, "v1")
    target.unlink()
    wait_for(server, 404)


def test_a_half_written_file_is_never_served_half_written(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    target = install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    wait_for(server, "v1")
    data = versions["v2"].read_bytes()
    with Load(server, clients=2) as load:
        with target.open("wb") as f:  # in place, in slow pieces: the worst an operator can do
            for i in range(0, len(data), max(1, len(data) // 8)):
                f.write(data[i : i + max(1, len(data) // 8)])
                f.flush()
                os.fsync(f.fileno())
                time.sleep(0.1)
        wait_for(server, "v2")
    assert load.failures == []


def test_in_flight_call_finishes_on_the_version_it_started_on(
    folder: Path, fixture_wasm: dict[str, Path], tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    new = build_variant("slow", tmp_path, {".done = true": ".done_v2 = true"})
    target = install(fixture_wasm["slow"], folder, "slow")
    server = start_server(folder)
    url = f"{server.url}/api/v1/test/slow"
    spin = calibrate_spin(url, seconds=2.0)
    result: dict[str, httpx.Response] = {}
    call = threading.Thread(target=lambda: result.setdefault("r", httpx.post(url, json={"spin": spin}, timeout=30)))
    call.start()
    time.sleep(0.1)
    install(new, folder, "slow")
    deadline = time.monotonic() + 15
    while httpx.post(url, json={"spin": 0}).json() != {"done_v2": True}:
        assert time.monotonic() < deadline, server.logs()[-2000:]
        time.sleep(0.02)
    assert call.is_alive(), "the long call should still be running on the old version after the swap"
    call.join()
    assert result["r"].status_code == 200 and result["r"].json() == {"done": True}
    assert target.exists()


def calibrate_spin(url: str, seconds: float) -> int:
    """Spin count for a call of about `seconds` on this machine (the plugin's limit is 5 s)."""
    spin = 50_000_000
    start = time.monotonic()
    assert httpx.post(url, json={"spin": spin}, timeout=30).status_code == 200
    rate = spin / max(time.monotonic() - start, 1e-3)
    return int(rate * seconds)


def test_the_same_good_build_after_a_broken_one_clears_the_admin_listing(
    folder: Path, versions: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    target = install(versions["v1"], folder, "versioned")
    server = start_server(folder)
    wait_for(server, "v1")
    tmp = folder / ".broken.part"
    tmp.write_bytes(versions["v1"].read_bytes()[:-40])
    tmp.replace(target)
    listing_url = f"{server.url}/api/v1/admin/plugins"
    deadline = time.monotonic() + 15
    while not httpx.get(listing_url, headers=admin_headers()).json()["failures"]:
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.02)
    install(versions["v1"], folder, "versioned")  # the very build that serves: nothing to reload
    while httpx.get(listing_url, headers=admin_headers()).json()["failures"]:
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.02)
    assert httpx.get(listing_url, headers=admin_headers()).json()["plugins"][0]["last_error"] is None
    assert "plugin file is back to the serving build" in server.logs()
