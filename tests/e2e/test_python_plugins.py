"""Python plugins (WebAssembly components) served by a real `arcana serve` beside an Extism plugin.

The components are built from tests/fixtures/plugins/py*/ (tests/component_build.py); the server
compiles them through its artifact cache, shared with the other component tests so a warm run
deserializes instead of compiling for seconds.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import httpx
import pytest

from component_build import build_cached, toolchain_missing
from conftest import CACHE, ROOT, install
from e2e.server import ArcanaServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.toolchain,
    pytest.mark.skipif(toolchain_missing(), reason="componentize-py is not installed (the toolchain extra)"),
]
# A cold compile of a component takes seconds on a busy machine: two of them before the first /ready.
READY_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("python-plugins")
    folder = work / "plugins"
    folder.mkdir()
    install(build_cached("pyhost", CACHE), folder, "pyhost")
    install(build_cached("pyhostile", CACHE), folder, "pyhostile")
    install(build_cached("pywasi", CACHE, stub_wasi=False), folder, "pywasi")
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    config = {
        "grants": {"*": ["log"], "pyhost": ["log", "store"]},
        "plugin_config": {"pyhost": {"greeting": "from the operator"}},
        "executor": {"artifact_cache_dir": str(CACHE / "artifacts")},
    }
    srv = ArcanaServer(folder, work, config).start(wait_ready=False)
    srv.wait_ready(READY_TIMEOUT_S)
    yield srv
    srv.stop()


def _echo_ok(server: ArcanaServer) -> None:
    r = httpx.post(f"{server.url}/api/v1/echo", json={"still": "here"})
    assert r.status_code == 200 and r.json() == {"echo": {"still": "here"}}


def test_a_python_plugin_answers_over_rest_through_every_capability_it_has(server: ArcanaServer) -> None:
    r = httpx.post(f"{server.url}/api/v1/pyhost/probe", json={"collection": "e2e", "key": "e2e-key"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["log"] == {} and body["kv_set"] == {}
    assert body["doc"] == {"n": 1, "same_id": True}
    assert body["kv"] == {"found": True, "value": "v"}
    assert body["incr"]["value"] >= 1
    assert body["greeting"] == "from the operator"
    assert body["random"][0] == 16
    assert body["bad_request"]["error"]["code"] == "VALIDATION_FAILED"
    assert "probe from python" in server.logs()  # the guest's log line, in the server's log


def test_a_raw_abi_route_of_a_python_plugin_gets_its_body_and_request_keys(server: ArcanaServer) -> None:
    r = httpx.post(f"{server.url}/api/v1/pyhost/raw", content=b"as is", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"echo": "as is", "method": "POST"}


@pytest.mark.parametrize(
    ("handler", "status", "code"),
    [("loop", 504, "PLUGIN_TIMEOUT"), ("boom", 500, "PLUGIN_FAILED"), ("grow", 500, "PLUGIN_FAILED")],
)
def test_a_hostile_python_handler_gets_its_documented_error_while_others_answer(
    server: ArcanaServer, handler: str, status: int, code: str
) -> None:
    results: dict[str, httpx.Response] = {}

    def hostile() -> None:
        results["hostile"] = httpx.get(f"{server.url}/api/v1/pyhostile/{handler}", timeout=30)

    worker = threading.Thread(target=hostile)
    worker.start()
    _echo_ok(server)  # the Extism plugin answers while the component misbehaves
    ping = httpx.get(f"{server.url}/api/v1/pyhost/ping", timeout=30)
    worker.join()
    assert ping.status_code == 200 and ping.json() == {"pong": True}
    r = results["hostile"]
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    after = httpx.get(f"{server.url}/api/v1/pyhostile/ok", timeout=30)
    assert after.status_code == 200 and after.json() == {"ok": True, "held": 0}


def test_a_python_plugin_importing_wasi_is_refused_with_the_fix(server: ArcanaServer) -> None:
    assert httpx.get(f"{server.url}/api/v1/pywasi").status_code == 404
    logs = server.logs()
    assert "imports wasi:sockets/" in logs and "not offered" in logs
    assert "build with `arcana plugin build` (stubbed WASI)" in logs
