"""Python plugins (WebAssembly components) served by a real `arcana serve` beside an Extism plugin.

The components are built from tests/fixtures/plugins/py*/ (tests/component_build.py); the server
compiles them through its artifact cache, shared with the other component tests so a warm run
deserializes instead of compiling for seconds.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from arcana.wasm_binary import MANIFEST_SECTION, custom_sections
from component_build import build_cached, custom_section, toolchain_missing
from conftest import CACHE, ROOT, install
from e2e.grpc_support import generate_stubs
from e2e.server import ArcanaServer, admin_headers
from http_upstream import Upstream

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.toolchain,
    pytest.mark.skipif(toolchain_missing(), reason="componentize-py is not installed (the toolchain extra)"),
]
# A cold compile of a component takes seconds on a busy machine: two of them before the first /ready.
READY_TIMEOUT_S = 180.0
# Every grant pyhost's manifest requests: it calls every host capability.
PYHOST_GRANTS = ["log", "store", "auth", "auth.issue", "queue", "events", "http"]
PYHOST_PROTO = ROOT / "tests" / "fixtures" / "plugins" / "pyhost" / "proto" / "pyhost.proto"


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
        "grants": {"*": ["log"], "pyhost": PYHOST_GRANTS},
        "plugin_config": {"pyhost": {"greeting": "from the operator"}},
        "executor": {"artifact_cache_dir": str(CACHE / "artifacts")},
    }
    srv = ArcanaServer(folder, work, config).start(wait_ready=False)
    srv.wait_ready(READY_TIMEOUT_S)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def _echo_ok(server: ArcanaServer) -> None:
    r = httpx.post(f"{server.url}/api/v1/echo", json={"still": "here"})
    assert r.status_code == 200 and r.json() == {"echo": {"still": "here"}}


def test_a_python_plugin_answers_over_rest_through_every_capability_it_has(
    server: ArcanaServer, upstream: Upstream
) -> None:
    probe = {"collection": "e2e", "key": "e2e-key", "url": upstream.url("/ok", host="localhost")}
    r = httpx.post(f"{server.url}/api/v1/pyhost/probe", json=probe, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["log"] == {} and body["kv_set"] == {}
    assert body["doc"] == {"n": 1, "same_id": True}
    assert body["kv"] == {"found": True, "value": "v"}
    assert body["incr"]["value"] >= 1
    assert body["greeting"] == "from the operator"
    assert body["random"][0] == 16
    assert body["bad_request"]["error"]["code"] == "VALIDATION_FAILED"
    assert body["auth"] == {"hashed": True, "valid": True, "wrong": False, "has_role": False}
    assert body["job"]["type"] == "pyhost.tick" and body["job"]["state"] == "queued" and body["job"]["id_matches"]
    assert body["emitted"] == {} and body["emit_elsewhere"]["error"]["code"] == "FORBIDDEN"
    assert body["fetched"] == {"status": 200, "body": "hello"}
    assert "probe from python" in server.logs()  # the guest's log line, in the server's log
    # The token the plugin issued signs its caller in: check_role sees the role it carries.
    token = body["token"]["access_token"]
    me = httpx.get(f"{server.url}/api/v1/pyhost/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200, me.text
    assert me.json() == {"sub": "py-e2e-key", "has_role": True}
    assert httpx.get(f"{server.url}/api/v1/pyhost/whoami", timeout=30).status_code == 401


def test_a_python_grpc_method_answers_a_grpcio_client_through_every_capability(
    server: ArcanaServer, upstream: Upstream, tmp_path: Path
) -> None:
    pb, stubs = generate_stubs(PYHOST_PROTO, tmp_path / "stubs")
    before = upstream.hits["/echo"]
    with grpc.insecure_channel(server.grpc_address) as channel:
        request = pb.RunRequest(key="grpc-key", url=upstream.url("/echo", host="localhost"))
        reply = stubs.ProbeStub(channel).Run(request, timeout=30)
    assert upstream.hits["/echo"] == before + 1
    assert reply.greeting == "from the operator"
    assert reply.incr >= 1
    assert reply.password_valid and not reply.wrong_password_valid
    assert reply.token_issued and reply.emitted
    assert reply.job_state == "queued"
    assert reply.fetched_status == 200 and '"method": "GET"' in reply.fetched_body
    report = json.loads(reply.report)
    assert report["kv"] == {"found": True, "value": "v"} and report["doc"] == {"n": 1, "same_id": True}
    assert report["emit_elsewhere"]["error"]["code"] == "FORBIDDEN"


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


def _version(server: ArcanaServer, name: str) -> str | None:
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers(), timeout=10).json()
    return next((p["version"] for p in listing["plugins"] if p["name"] == name), None)


def test_hot_reload_of_a_python_plugin_under_load_fails_no_request(tmp_path: Path) -> None:
    """The new version compiles in the background (seconds, on a cold cache) while the old one serves."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    v1 = build_cached("pyhost", CACHE)
    install(v1, folder, "pyhost")
    # Version 1.0.1: the same component with a later manifest section (the last of a name wins), so new bytes.
    manifest = (
        custom_sections(v1.read_bytes())[MANIFEST_SECTION].decode().replace('version = "1.0.0"', 'version = "1.0.1"', 1)
    )
    v2 = tmp_path / "pyhost-v2.wasm"
    v2.write_bytes(v1.read_bytes() + custom_section(MANIFEST_SECTION, manifest.encode()))
    config = {
        "grants": {"*": ["log"], "pyhost": PYHOST_GRANTS},
        "executor": {"artifact_cache_dir": str(CACHE / "artifacts")},
    }
    server = ArcanaServer(folder, tmp_path, config).start(wait_ready=False)
    try:
        server.wait_ready(READY_TIMEOUT_S)
        assert _version(server, "pyhost") == "1.0.0"
        failures: list[str] = []
        answered = [0]
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    r = client.get(f"{server.url}/api/v1/pyhost/ping")
                    if r.status_code != 200 or r.json() != {"pong": True}:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    answered[0] += 1

        clients = [threading.Thread(target=load) for _ in range(3)]
        for client in clients:
            client.start()
        try:
            install(v2, folder, "pyhost")
            deadline = time.monotonic() + READY_TIMEOUT_S
            while _version(server, "pyhost") != "1.0.1":
                assert time.monotonic() < deadline, server.logs()[-3000:]
                time.sleep(0.2)
            before = answered[0]
            while answered[0] < before + 20:  # the new version answers too
                time.sleep(0.05)
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert failures == []
    finally:
        server.stop()
