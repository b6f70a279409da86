"""Hostile plugins built from source: each gets its documented error and nobody else notices."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, install
from e2e.server import ArcanaServer, admin_headers

HOSTILE = ["trap", "loop", "membomb", "garbage", "badshape", "forbidden", "broken_manifest", "rawecho"]
# The loop plugin again, under a sidecar manifest with a longer limit, so a
# test can hold a call open and prove the server keeps answering meanwhile.
LONG_LOOP = """[plugin]
name = "longloop"
version = "1.0.0"
[limits]
timeout_ms = 3000
[[route]]
method = "GET"
path = "/api/v1/test/longloop"
handler = "loop"
public = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> ArcanaServer:
    work = tmp_path_factory.mktemp("hostile")
    folder = work / "plugins"
    folder.mkdir()
    for name in HOSTILE:
        install(fixture_wasm[name], folder, name)
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    shutil.copyfile(fixture_wasm["loop"], folder / "longloop.wasm")
    (folder / "longloop.toml").write_text(LONG_LOOP)
    srv = ArcanaServer(folder, work).start()
    yield srv
    srv.stop()


def _echo_ok(server: ArcanaServer) -> None:
    r = httpx.post(f"{server.url}/api/v1/echo", json={"still": "here"})
    assert r.status_code == 200 and r.json() == {"echo": {"still": "here"}}


@pytest.mark.parametrize(
    "route, status, code",
    [
        ("trap", 500, "PLUGIN_FAILED"),
        ("loop", 504, "PLUGIN_TIMEOUT"),
        ("membomb", 500, "PLUGIN_FAILED"),
        ("garbage", 500, "PLUGIN_FAILED"),
        ("badshape", 500, "PLUGIN_FAILED"),
    ],
)
def test_misbehaving_plugin_gets_its_error_and_the_server_carries_on(
    server: ArcanaServer, route: str, status: int, code: str
) -> None:
    for _ in range(2):  # the broken instance is discarded; a fresh one fails the same way
        r = httpx.get(f"{server.url}/api/v1/test/{route}", timeout=10)
        assert r.status_code == status, r.text
        body = r.json()
        assert body["code"] == code and set(body) == {"code", "message", "request_id", "timestamp"}
        assert "backtrace" not in body["message"] and "Traceback" not in r.text
        _echo_ok(server)


def test_out_of_memory_is_reported_as_such(server: ArcanaServer) -> None:
    r = httpx.get(f"{server.url}/api/v1/test/membomb", timeout=10)
    assert "memory" in r.json()["message"]


def test_failures_are_logged_with_plugin_name_and_version(server: ArcanaServer) -> None:
    httpx.get(f"{server.url}/api/v1/test/trap")
    entries = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    faults = [e for e in entries if e.get("plugin") == "trap" and e.get("fault") == "trap"]
    assert faults and faults[-1]["plugin_version"] == "1.0.0" and faults[-1]["handler"] == "trap"


def test_a_long_running_plugin_does_not_block_other_requests(server: ArcanaServer) -> None:
    result: dict[str, httpx.Response] = {}
    slow = threading.Thread(
        target=lambda: result.setdefault("r", httpx.get(f"{server.url}/api/v1/test/longloop", timeout=10))
    )
    slow.start()
    try:
        for _ in range(20):
            _echo_ok(server)
        assert slow.is_alive(), "the looping call should still be running while others are served"
    finally:
        slow.join()
    assert result["r"].status_code == 504


def test_forbidden_import_and_broken_manifest_are_refused_at_load(server: ArcanaServer) -> None:
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
    serving = {p["name"] for p in listing["plugins"]}
    assert "forbidden" not in serving and httpx.get(f"{server.url}/api/v1/test/forbidden").status_code == 404
    failures = {Path(f["source"]).stem: f for f in listing["failures"]}
    forbidden = " ".join(failures["forbidden"]["errors"])
    assert (
        "extism:host/user::store_get" in forbidden and "capability 'store'" in forbidden and "not granted" in forbidden
    )
    broken = failures["broken_manifest"]["errors"]
    assert any("plugin.name" in e and "not a valid name" in e for e in broken)
    assert any("plugin.colour: unknown field" in e for e in broken)


def test_raw_abi_route_gets_the_bytes_and_returns_them(server: ArcanaServer) -> None:
    payload = bytes(range(256))
    r = httpx.post(f"{server.url}/api/v1/test/raw", content=payload)
    assert r.status_code == 200 and r.content == payload
    assert r.headers["content-type"] == "application/octet-stream"


def test_concurrent_failures_do_not_disturb_good_calls(server: ArcanaServer) -> None:
    """Runs last: traps and OOMs open their plugins' breakers (503 at once), which stay open a while."""
    errors: list[str] = []

    def hammer(route: str, expect: int, tripped: bool = False) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(15):
                if route == "echo":
                    r = client.post(f"{server.url}/api/v1/echo", json={"n": 1})
                else:
                    r = client.get(f"{server.url}/api/v1/test/{route}")
                if tripped and r.status_code == 503 and "circuit open" in r.json()["message"]:
                    continue  # the plugin's breaker opened after its first failures
                if r.status_code != expect:
                    errors.append(f"{route}: {r.status_code} {r.text[:100]}")

    threads = [
        threading.Thread(target=hammer, args=a)
        for a in [("trap", 500, True), ("garbage", 500), ("membomb", 500, True), ("echo", 200), ("echo", 200)]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
