"""A real server at its in-flight limit (server.max_in_flight) refuses plugin calls at once and stays healthy."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from conftest import ROOT, install
from e2e.server import ArcanaServer, admin_headers

# The loop plugin under a sidecar: each call spins into its 3 s limit, holding its place meanwhile.
HOLDER = """[plugin]
name = "holder"
version = "1.0.0"
[limits]
timeout_ms = 3000
[[route]]
method = "GET"
path = "/api/v1/test/holder"
handler = "loop"
public = true
"""
HELLO_REQUEST = b"\x0a\x03Ada"  # greeter.v1.HelloRequest{name: "Ada"} on the wire


def _holder_in_flight(server: ArcanaServer) -> int:
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
    return next(int(p["in_flight"]) for p in listing["plugins"] if p["name"] == "holder")


def test_past_max_in_flight_calls_get_503_at_once_and_health_still_answers(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(fixture_wasm["loop"], folder, "holder")
    (folder / "holder.toml").write_text(HOLDER)
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    server = start_server(folder, {"server": {"max_in_flight": 2}})
    held: list[int] = []
    holders = [
        threading.Thread(
            target=lambda: held.append(httpx.get(f"{server.url}/api/v1/test/holder", timeout=30).status_code)
        )
        for _ in range(2)
    ]
    for t in holders:
        t.start()
    deadline = time.monotonic() + 20
    while _holder_in_flight(server) < 2:
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.02)

    refused = [httpx.post(f"{server.url}/api/v1/echo", json={"n": n}) for n in range(3)]
    with grpc.insecure_channel(server.grpc_address) as channel:
        try:
            channel.unary_unary("/greeter.v1.Greeter/SayHello")(HELLO_REQUEST, timeout=10)
            grpc_code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            grpc_code = exc.code()
    health, ready = httpx.get(f"{server.url}/health"), httpx.get(f"{server.url}/ready")
    still_full = _holder_in_flight(server) == 2
    for t in holders:
        t.join()

    assert still_full, "the holders ended before the refusals were made: the test proved nothing"
    for r in refused:
        assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE", r.text
        assert "in flight" in r.json()["message"] and r.headers["retry-after"] == "1"
    assert grpc_code == grpc.StatusCode.UNAVAILABLE  # REST and gRPC share the one limit
    assert health.status_code == 200 and ready.status_code == 200  # the kernel's routes are not shed
    assert held == [504, 504]
    assert httpx.post(f"{server.url}/api/v1/echo", json={"n": 9}).status_code == 200  # room again
    metrics = httpx.get(f"{server.url}/metrics", headers=admin_headers()).text
    assert 'arcana_shed_total{reason="in_flight"} 4.0' in metrics
