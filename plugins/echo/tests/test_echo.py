"""The echo plugin, on the author test harness (docs/testing.md)."""

from __future__ import annotations

from pathlib import Path

from arcana.testing import HarnessFactory

# The committed build: the plugin's tests check what ships (tests/sdk/test_build.py checks it matches the source).
ECHO = Path(__file__).resolve().parent.parent / "echo.wasm"


def test_a_json_body_comes_back_under_echo(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(ECHO)
    sent = {"n": 1, "list": [1, "two", None], "nested": {"ok": True}}
    r = h.post("/api/v1/echo", json=sent)
    assert r.status == 200 and r.json() == {"echo": sent}


def test_it_logs_a_debug_line_per_echo(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(ECHO)
    h.post("/api/v1/echo", json={"a": 1})
    h.post("/api/v1/echo", json={"a": 2})
    assert [(line.level, line.message) for line in h.logs] == [("debug", "echoing request body")] * 2


def test_no_body_is_validation_failed_and_logs_nothing(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(ECHO)
    r = h.post("/api/v1/echo")
    assert r.status == 400 and r.error_code == "VALIDATION_FAILED"
    assert "JSON request body" in r.json()["message"]
    assert h.logs == []


def test_the_route_is_public_and_post_only(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(ECHO)
    assert h.post("/api/v1/echo", json=[1], as_user="ada").json() == {"echo": [1]}
    assert h.get("/api/v1/echo").status in (404, 405)
