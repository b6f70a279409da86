"""The log stream of a real `arcana serve`: quiet at start-up, and a plugin's log line with the request's fields."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from conftest import ROOT
from e2e.server import ArcanaServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def served_echo(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    return folder


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_start_up_on_a_new_database_logs_no_third_party_info_lines(
    start_server: Callable[..., ArcanaServer], tmp_path: Path
) -> None:
    # A new SQLite file: the schema is migrated at start-up (alembic logs each step at INFO).
    server = start_server(served_echo(tmp_path))
    server.stop()
    text = server.logs()
    lines = json_lines(text)
    assert any(line["message"] == "arcana ready" for line in lines), text
    assert "Context impl" not in text and "Will assume transactional DDL" not in text
    chatty = [line for line in lines if not line["logger"].startswith("arcana") and line["level"] in ("info", "debug")]
    assert chatty == []


def test_at_debug_a_plugins_log_line_carries_the_request_and_the_migration_steps_are_shown(
    start_server: Callable[..., ArcanaServer], tmp_path: Path
) -> None:
    server = start_server(served_echo(tmp_path), {"logging": {"level": "debug"}})
    headers = {"x-request-id": "rid-e2e-log", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    assert httpx.post(f"{server.url}/api/v1/echo", json={"a": 1}, headers=headers).status_code == 200
    server.stop()
    text = server.logs()
    assert "Context impl" in text  # what the default level keeps out is there at debug
    [line] = [line for line in json_lines(text) if line["message"] == "echoing request body"]
    assert (line["logger"], line["plugin"], line["plugin_version"]) == ("arcana.plugin", "echo", "1.0.0")
    assert (line["request_id"], line["trace_id"]) == ("rid-e2e-log", TRACE)


def test_with_the_console_exporter_a_requests_spans_are_written_by_the_time_the_server_stops(
    start_server: Callable[..., ArcanaServer], tmp_path: Path
) -> None:
    server = start_server(served_echo(tmp_path), {"tracing": {"exporter": "console", "service_name": "arcana-e2e"}})
    headers = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    assert httpx.post(f"{server.url}/api/v1/echo", json={"a": 1}, headers=headers).status_code == 200
    assert server.stop() == 0
    text = server.logs()
    # Exported in a batch: the spans still queued are flushed when the kernel stops.
    for name in ("POST /api/v1/echo", "plugin.call echo echo", "host log"):
        assert f'"name": "{name}"' in text, text
    assert text.count(f'"trace_id": "0x{TRACE}"') == 3
    assert '"service.name": "arcana-e2e"' in text
