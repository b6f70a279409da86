"""Real backends that go away and come back: 503s, the breaker opening, refusing without a connection, recovery.

PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are reached through a
``TcpGate``: closed, a connect is refused as by a server that is down;
open, it forwards. The breaker runs on a fake clock, so the cool-down is a
step of the test, not a wait.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from prometheus_client import REGISTRY

from arcana.config import DatabaseConfig
from arcana.database import create_db_engine, migrate
from arcana.errors import BackendUnreachable, CircuitOpen, ErrorCode, ServiceUnavailable
from arcana.queue.guarded_backend import GuardedQueueBackend
from arcana.queue.sql_backend import SqlQueueBackend
from arcana.resilience import BreakerPolicy, BreakerState, CircuitBreaker, RetryPolicy
from arcana.resilience.guard import BackendGuard, refuse_connects_while_open
from arcana_host.store.config import StoreConfig
from arcana_host.store.guarded_backend import GuardedKv, GuardedStore
from arcana_host.store.redis_kv import RedisKv
from arcana_host.store.sql_backend import SqlStoreBackend
from arcana_host.store.types import PutOp
from tcp_gate import TcpGate

PG_PORT, REDIS_PORT = 5432, 6379


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _guard(clock: Clock, name: str) -> BackendGuard:
    """Two failures open it for 5 s; a refused connection is tried twice (nothing was sent)."""
    breaker = CircuitBreaker(name, BreakerPolicy(2, 5.0, 1), clock=clock)
    retry = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.01, max_total_s=5.0, jitter=0.0)
    return BackendGuard(breaker, retry, sleep=lambda _s: None)


def _gate(port: int) -> Iterator[TcpGate]:
    gate = TcpGate("127.0.0.1", port)
    yield gate
    gate.close()


@pytest.fixture
def pg_gate() -> Iterator[TcpGate]:
    yield from _gate(PG_PORT)


@pytest.fixture
def redis_gate() -> Iterator[TcpGate]:
    yield from _gate(REDIS_PORT)


def _unavailable(exc: ServiceUnavailable) -> None:
    """What a client is told: 503 SERVICE_UNAVAILABLE with a Retry-After, never a 500."""
    assert exc.code is ErrorCode.SERVICE_UNAVAILABLE
    assert exc.retry_after is not None and exc.retry_after >= 1


def test_postgresql_down_is_503_opens_the_database_breaker_and_store_and_queue_recover_through_a_probe(
    fresh_postgres_url: str, pg_gate: TcpGate
) -> None:
    direct = sa.create_engine(fresh_postgres_url)
    migrate(direct)
    direct.dispose()
    url = sa.make_url(fresh_postgres_url).set(port=pg_gate.port).render_as_string(hide_password=False)
    engine = create_db_engine(DatabaseConfig(url=url))
    clock = Clock()
    guard = _guard(clock, "database")  # the store and the queue share the database's breaker
    store = GuardedStore(SqlStoreBackend(engine), guard)
    queue = GuardedQueueBackend(SqlQueueBackend(engine), guard)
    try:
        # Down: the connection is refused before anything is sent, so even a write is tried again, and fails.
        with pytest.raises(BackendUnreachable) as down:
            store.put("p", PutOp("notes", {"title": "a"}, id="n-1"))
        _unavailable(down.value)
        assert guard.breaker.state is BreakerState.OPEN  # both attempts counted

        pg_gate.open()  # back, but the breaker refuses at once: no connection is even tried
        with pytest.raises(CircuitOpen) as refused:
            queue.stats(clock.now)
        _unavailable(refused.value)
        with pytest.raises(CircuitOpen):
            store.get("p", "notes", "n-1")
        refuse_connects_while_open(engine, guard.breaker)  # as the kernel does for auth's own queries
        with pytest.raises(CircuitOpen), engine.connect():
            pass
        assert pg_gate.accepted == 0

        clock.now += 5  # the cool-down is over: one probe goes through and closes it
        assert store.put("p", PutOp("notes", {"title": "a"}, id="n-1")).body["title"] == "a"
        assert guard.breaker.state is BreakerState.CLOSED
        assert store.get("p", "notes", "n-1").id == "n-1"
        assert queue.stats(clock.now).dead == 0
        assert pg_gate.accepted >= 1
    finally:
        engine.dispose()


def test_redis_down_is_503_opens_its_breaker_and_the_kv_recovers_through_a_probe(
    redis_client: redis.Redis, redis_gate: TcpGate
) -> None:
    config = StoreConfig(kv_backend="redis", kv_redis_url=f"redis://127.0.0.1:{redis_gate.port}/0")
    kv_inner = RedisKv.from_config(config)
    clock = Clock()
    kv = GuardedKv(kv_inner, _guard(clock, "redis:127.0.0.1:6379/0"))
    try:
        for _ in range(2):  # a read is retried once after each failure: two failures, open after the first call
            with pytest.raises(ServiceUnavailable) as down:
                kv.kv_get("p", "hits")
            _unavailable(down.value)
            if kv.guard.breaker.state is BreakerState.OPEN:
                break
        assert kv.guard.breaker.state is BreakerState.OPEN

        redis_gate.open()
        with pytest.raises(CircuitOpen):
            kv.kv_incr("p", "hits", 1)
        assert redis_gate.accepted == 0  # refused before the client even connected

        clock.now += 5
        kv.kv_set("p", "hits", 41, None)  # the probe
        assert kv.guard.breaker.state is BreakerState.CLOSED
        assert kv.kv_incr("p", "hits", 1) == 42
        assert redis_gate.accepted >= 1
    finally:
        redis_client.delete(kv_inner.redis_key("p", "hits"))
        kv.close()


def _retries(target: str) -> float:
    return REGISTRY.get_sample_value("arcana_retries_total", {"target": target}) or 0.0


def test_redis_going_away_mid_use_opens_the_breaker_and_an_incr_with_an_unknown_outcome_is_not_retried(
    redis_client: redis.Redis, redis_gate: TcpGate
) -> None:
    redis_gate.open()
    config = StoreConfig(kv_backend="redis", kv_redis_url=f"redis://127.0.0.1:{redis_gate.port}/0")
    kv_inner = RedisKv.from_config(config)
    clock = Clock()
    kv = GuardedKv(kv_inner, _guard(clock, "redis"))
    try:
        assert kv.kv_incr("p", "n", 1) == 1
        redis_gate.close()  # the pooled connection is cut, and new ones are refused
        retried = _retries("redis")
        with pytest.raises(ServiceUnavailable) as lost:
            kv.kv_incr("p", "n", 1)
        _unavailable(lost.value)
        assert _retries("redis") == retried  # its outcome is unknown: never tried again by the guard
        with pytest.raises(ServiceUnavailable):
            kv.kv_get("p", "n")
        assert _retries("redis") == retried + 1  # a read is
        assert kv.guard.breaker.state is BreakerState.OPEN
        redis_gate.open()
        clock.now += 5
        assert kv.kv_get("p", "n").value == 1
        assert kv.guard.breaker.state is BreakerState.CLOSED
    finally:
        redis_client.delete(kv_inner.redis_key("p", "n"))
        kv.close()
