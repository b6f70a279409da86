"""The example plugins served from the repository's plugins/ folder, over real HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from e2e.server import ArcanaServer, admin_headers


@pytest.fixture
def server(tmp_path: Path, start_server: Callable[..., ArcanaServer]) -> ArcanaServer:
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in ("hello", "echo"):
        shutil.copyfile(ROOT / "plugins" / name / f"{name}.wasm", folder / f"{name}.wasm")
    return start_server(folder, {"server": {"max_body_bytes": 4096}})


def test_hello_greets_by_name_with_json_escaping(server: ArcanaServer) -> None:
    r = httpx.get(f"{server.url}/api/v1/hello/Ada")
    assert r.status_code == 200 and r.json() == {"message": "Hello, Ada!"}
    assert r.headers["content-type"] == "application/json"
    tricky = httpx.get(f"{server.url}/api/v1/hello/a%22b%5C%F0%9F%98%80")
    assert tricky.status_code == 200 and tricky.json() == {"message": 'Hello, a"b\\\U0001f600!'}


def test_echo_returns_the_json_body(server: ArcanaServer) -> None:
    body = {"a": [1, 2.5, None, True], "nested": {"s": "x\ny"}}
    r = httpx.post(f"{server.url}/api/v1/echo", json=body)
    assert r.status_code == 200 and r.json() == {"echo": body}


def test_echo_refuses_a_non_json_body_with_validation_error(server: ArcanaServer) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/echo", content=b"\x00\x01", headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED"


def test_malformed_json_is_refused_before_the_plugin_runs(server: ArcanaServer) -> None:
    r = httpx.post(f"{server.url}/api/v1/echo", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "VALIDATION_FAILED" and "not valid JSON" in body["message"]
    assert set(body) == {"code", "message", "request_id", "timestamp"}


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(server: ArcanaServer) -> None:
    r = httpx.get(f"{server.url}/api/v1/nothing/here")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = httpx.delete(f"{server.url}/api/v1/echo")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["code"] == "METHOD_NOT_ALLOWED"


def test_oversized_body_is_413_whether_declared_or_streamed(server: ArcanaServer) -> None:
    big = b'{"x":"' + b"a" * 5000 + b'"}'
    r = httpx.post(f"{server.url}/api/v1/echo", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"
    chunks = iter([big[:3000], big[3000:]])
    r = httpx.post(f"{server.url}/api/v1/echo", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_request_id_is_propagated_or_generated(server: ArcanaServer) -> None:
    r = httpx.get(f"{server.url}/api/v1/hello/x", headers={"x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    r = httpx.get(f"{server.url}/api/v1/nope", headers={"x-request-id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces" and r.json()["request_id"] == r.headers["x-request-id"]


def test_health_ready_and_admin_listing(server: ArcanaServer) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
    names = {p["name"]: p for p in listing["plugins"]}
    assert set(names) == {"hello", "echo"} and listing["failures"] == []
    assert names["hello"]["routes"] == [
        {"method": "GET", "path": "/api/v1/hello/{name}", "handler": "hello", "public": True}
    ]


def test_metrics_are_exposed_for_prometheus(server: ArcanaServer) -> None:
    # /metrics needs a scrape token or an admin (tests/e2e/test_metrics_access.py); an admin here.
    r = httpx.get(f"{server.url}/metrics", headers=admin_headers())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "python_info" in r.text
    httpx.get(f"{server.url}/api/v1/hello/m")
    text = httpx.get(f"{server.url}/metrics", headers=admin_headers()).text
    assert 'arcana_plugin_calls_total{outcome="ok",plugin="hello"}' in text
    assert 'arcana_plugin_call_seconds_count{plugin="hello"}' in text
