"""Backend breakers on a real server: Redis or PostgreSQL goes away and comes back behind a ``TcpGate``.

While the backend is down the plugin's store calls answer 503 with
``Retry-After`` (never a 500); the backend's breaker opens (the gauge says
so, a WARNING names it) and refuses without even connecting; after its
cool-down (1 s here) a call goes through as a probe and closes it.
``storeprobe`` (tests/fixtures/plugins/storeprobe) relays the host's
answer as the HTTP response.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from arcana.database import migrate
from conftest import install
from e2e.server import ArcanaServer, admin_headers
from fakes import wait_for
from tcp_gate import TcpGate

BREAKER = {"backend_breaker": {"failure_threshold": 2, "cool_down_s": 1.0, "half_open_probes": 1}}
# /metrics without a token: an admin token would need the database (its revocation check) while it is down.
OPEN_METRICS = {"metrics_public": True}


@pytest.fixture
def plugins(tmp_path: Path, fixture_wasm: dict[str, Path]) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(fixture_wasm["storeprobe"], folder, "storeprobe")
    return folder


def _gate(port: int) -> Iterator[TcpGate]:
    gate = TcpGate("127.0.0.1", port)
    gate.open()
    yield gate
    gate.close()


def _state(server: ArcanaServer, name: str) -> str | None:
    text = httpx.get(f"{server.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == "arcana_breaker_state" and labels["kind"] == "backend" and labels["name"] == name:
                if s.value == 1:
                    return labels["state"]
    return None


def _probe(server: ArcanaServer) -> Callable[..., httpx.Response]:
    def call(name: str, **args: Any) -> httpx.Response:
        return httpx.post(f"{server.url}/probe/zig", json={"call": name, **args}, timeout=30)

    return call


def _down(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.json()["code"] == "SERVICE_UNAVAILABLE"
    assert int(reply.headers["retry-after"]) >= 1


def test_redis_down_is_503_opens_its_breaker_which_refuses_without_connecting_then_recovers(
    plugins: Path, start_server: Callable[..., ArcanaServer], redis_client: redis.Redis
) -> None:
    gate = next(gates := _gate(6379))
    prefix = f"arcana-breaker-{uuid.uuid4().hex[:8]}"
    store = {"kv_backend": "redis", "kv_redis_url": f"redis://127.0.0.1:{gate.port}/0", "kv_key_prefix": prefix}
    config = {
        "grants": {"*": ["log"], "storeprobe": ["store"]},
        "capabilities": {"store": store},
        "resilience": BREAKER,
        "server": OPEN_METRICS,
    }
    name = f"redis:127.0.0.1:{gate.port}/0"
    try:
        server = start_server(plugins, config)
        call = _probe(server)
        assert call("kv_set", key="k", value=1).status_code == 200
        assert _state(server, name) == "closed"

        gate.close()
        _down(call("kv_get", key="k"))  # tried twice (a read), both refused: the threshold
        assert _state(server, name) == "open"
        gate.open()
        accepted = gate.accepted
        _down(call("kv_get", key="k"))  # refused by the breaker: Redis is back, but not even connected to
        assert gate.accepted == accepted

        wait_for(lambda: _state(server, name) == "half_open", 10.0, "the Redis breaker half-opens")
        assert call("kv_get", key="k").json() == {"result": 1}
        assert _state(server, name) == "closed"
        assert f"circuit breaker backend {name}: closed -> open" in server.logs()
    finally:
        next(gates, None)
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)


def test_postgresql_down_is_503_opens_the_database_breaker_then_recovers(
    plugins: Path, start_server: Callable[..., ArcanaServer], fresh_postgres_url: str
) -> None:
    direct = sa.create_engine(fresh_postgres_url)
    migrate(direct)
    direct.dispose()
    gate = next(gates := _gate(5432))
    url = sa.make_url(fresh_postgres_url).set(port=gate.port).render_as_string(hide_password=False)
    config = {
        "grants": {"*": ["log"], "storeprobe": ["store"]},
        "database": {"url": url},
        "resilience": BREAKER,
        "server": OPEN_METRICS,
        "auth": {"revocation_cache_s": 0},  # every authenticated request reads the database
    }
    try:
        server = start_server(plugins, config)
        call = _probe(server)
        assert call("put", collection="notes", id="n-1", doc={"t": "a"}).status_code == 200
        assert _state(server, "database") == "closed"

        gate.close()
        _down(call("get", collection="notes", id="n-1"))
        wait_for(lambda: _state(server, "database") == "open", 10.0, "the database breaker opens")
        _down(call("put", collection="notes", id="n-2", doc={"t": "b"}))
        _down(httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()))  # auth's own queries

        gate.open()
        wait_for(
            lambda: call("get", collection="notes", id="n-1").status_code == 200,
            15.0,
            f"the store serves again once the database is back\n{server.logs()[-3000:]}",
        )
        assert _state(server, "database") == "closed"
        assert call("get", collection="notes", id="n-2").status_code == 404  # the refused put saved nothing
        assert "circuit breaker backend database: closed -> open" in server.logs()
    finally:
        next(gates, None)
