"""A plugin's circuit breaker on a real server: opens on traps, fails fast, half-opens, closes.

``flaky`` (tests/fixtures/plugins/flaky) traps when the body starts with
"trap" and echoes anything else; its manifest sets ``[breaker]
failure_threshold = 3, cool_down_s = 3``. Whether the plugin ran is read
from ``arcana_plugin_calls_total``: a call the breaker refused is counted
as ``circuit_open`` and never as ``ok`` or ``error``. The breaker's state is
read from the admin plugin list and from ``arcana_breaker_state``; its
``breaker.opened`` event reaches audit-log, which subscribes to every topic.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, install
from e2e.server import ArcanaServer, admin_headers
from fakes import wait_for

ROUTE = "/api/v1/test/flaky"


@pytest.fixture
def plugins(tmp_path: Path, fixture_wasm: dict[str, Path]) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(fixture_wasm["flaky"], folder, "flaky")
    shutil.copyfile(ROOT / "plugins" / "audit-log" / "audit-log.wasm", folder / "audit-log.wasm")
    return folder


def _samples(server: ArcanaServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(f"{server.url}/metrics", headers=admin_headers()).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _calls(server: ArcanaServer, outcome: str) -> float:
    found = _samples(server, "arcana_plugin_calls_total")
    return found.get((("outcome", outcome), ("plugin", "flaky")), 0.0)


def _ran(server: ArcanaServer) -> float:
    """Calls that reached the plugin's code, whatever they answered."""
    return sum(_calls(server, outcome) for outcome in ("ok", "error", "trap", "oom", "timeout"))


def _breaker(server: ArcanaServer) -> str:
    listing = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()
    return next(p["breaker"] for p in listing["plugins"] if p["name"] == "flaky")


def _call(server: ArcanaServer, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}{ROUTE}", content=body)


def test_traps_open_the_breaker_which_fails_fast_then_half_opens_and_a_good_probe_closes_it(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins)
    assert _call(server, b"hello").content == b"hello"
    assert _breaker(server) == "closed"

    for _ in range(3):
        trapped = _call(server, b"trap")
        assert trapped.status_code != 503 and trapped.json()["code"] == "PLUGIN_FAILED"
    assert _breaker(server) == "open"
    ran = _ran(server)
    assert ran == 4

    for _ in range(5):  # refused at once: the plugin's code does not run
        refused = _call(server, b"hello")
        assert refused.status_code == 503
        assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
        assert int(refused.headers["retry-after"]) >= 1
    assert _ran(server) == ran
    assert _calls(server, "circuit_open") == 5
    states = _samples(server, "arcana_breaker_state")
    assert states[(("kind", "plugin"), ("name", "flaky"), ("state", "open"))] == 1
    assert states[(("kind", "plugin"), ("name", "flaky"), ("state", "closed"))] == 0

    wait_for(lambda: _breaker(server) == "half_open", 10.0, "the breaker half-opens after its cool-down")
    probe = _call(server, b"again")
    assert probe.status_code == 200 and probe.content == b"again"
    assert _breaker(server) == "closed"
    assert _ran(server) == ran + 1

    logs = server.logs()
    assert "circuit breaker plugin flaky: closed -> open" in logs
    assert "circuit breaker plugin flaky: half_open -> closed" in logs


def test_a_failed_probe_opens_the_breaker_again(plugins: Path, start_server: Callable[..., ArcanaServer]) -> None:
    server = start_server(plugins)
    for _ in range(3):
        _call(server, b"trap")
    wait_for(lambda: _breaker(server) == "half_open", 10.0, "the breaker half-opens after its cool-down")
    assert _call(server, b"trap").json()["code"] == "PLUGIN_FAILED"  # the probe ran, and failed
    assert _breaker(server) == "open"
    assert _call(server, b"hello").status_code == 503


def test_the_plugins_own_error_answers_never_open_its_breaker(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins)
    for _ in range(6):
        assert httpx.get(f"{server.url}{ROUTE}/missing").status_code == 404
    assert _breaker(server) == "closed"
    assert _call(server, b"still here").status_code == 200


def test_the_breaker_opening_is_a_kernel_event_that_reaches_a_subscriber(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins)  # default grants: audit-log subscribes to "*" with events.kernel
    for _ in range(3):
        _call(server, b"trap")

    def opened() -> list[dict]:
        reply = httpx.get(f"{server.url}/api/v1/audit", params={"topic": "breaker.opened"}, headers=admin_headers())
        return [e for e in reply.json()["items"] if e["payload"].get("name") == "flaky"] if reply.is_success else []

    wait_for(opened, 10.0, f"breaker.opened in the audit trail\n{server.logs()[-3000:]}")
    assert opened()[0]["payload"] == {"kind": "plugin", "name": "flaky", "old": "closed", "new": "open"}
