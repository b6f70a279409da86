"""The instance pool's circuit breaker over the fake engine: what counts, and refusing before the guest runs."""

from __future__ import annotations

import asyncio

import pytest

from arcana.errors import CircuitOpen, PluginFailed, PluginTimeout, ServiceUnavailable
from arcana.executor import EffectiveLimits, InstancePool, ThreadShare
from arcana.resilience import BreakerPolicy, BreakerState, CircuitBreaker
from arcana.types import CallContext
from fakes import FakeEngine, FakePlugin, Gate, entered, oom, reply, spin, trap, wasm_bytes
from queue_fakes import FakeClock


def make_pool(
    plugin: FakePlugin,
    threads: ThreadShare,
    clock: FakeClock,
    *,
    threshold: int = 2,
    timeout_ms: int = 2000,
    max_concurrency: int = 4,
) -> InstancePool:
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=timeout_ms)
    breaker = CircuitBreaker("p", BreakerPolicy(threshold, 5.0, 1), what="plugin 'p'", clock=clock)
    limits = EffectiveLimits(16, timeout_ms, max_concurrency)
    return InstancePool("p", "1.0.0", compiled, limits, threads, max_queue_wait_ms=50, breaker=breaker)


def call(pool: InstancePool, handler: str) -> bytes:
    return asyncio.run(pool.call(handler, b"{}", CallContext("p", "1.0.0", "rid")))


def state(pool: InstancePool) -> BreakerState:
    assert pool.breaker is not None
    return pool.breaker.state


def test_traps_open_the_breaker_and_then_calls_are_refused_before_the_guest_runs(threads: ThreadShare) -> None:
    clock = FakeClock(1000.0)
    plugin = FakePlugin({"bad": trap(), "good": reply({})})
    pool = make_pool(plugin, threads, clock)
    for _ in range(2):
        with pytest.raises(PluginFailed):
            call(pool, "bad")
    assert state(pool) is BreakerState.OPEN

    with pytest.raises(CircuitOpen) as refused:
        call(pool, "good")
    assert refused.value.retry_after == 5
    assert len(plugin.calls) == 2  # the refused call took no instance and never reached the guest
    assert pool.in_flight == 0


def test_after_the_cool_down_a_good_probe_closes_the_breaker(threads: ThreadShare) -> None:
    clock = FakeClock(1000.0)
    plugin = FakePlugin({"bad": trap(), "good": reply({})})
    pool = make_pool(plugin, threads, clock)
    for _ in range(2):
        with pytest.raises(PluginFailed):
            call(pool, "bad")
    clock.now += 5
    assert state(pool) is BreakerState.HALF_OPEN
    assert call(pool, "good") == b"{}"
    assert state(pool) is BreakerState.CLOSED


def test_out_of_memory_and_timeouts_count_against_the_breaker(threads: ThreadShare) -> None:
    plugin = FakePlugin({"oom": oom(), "loop": spin()})
    pool = make_pool(plugin, threads, FakeClock(1000.0), timeout_ms=20)
    with pytest.raises(PluginFailed):
        call(pool, "oom")
    with pytest.raises(PluginTimeout):
        call(pool, "loop")
    assert state(pool) is BreakerState.OPEN


def test_the_plugins_own_error_answers_and_successes_never_open_it(threads: ThreadShare) -> None:
    plugin = FakePlugin({"bad": trap(), "refuse": reply({"error": {"code": "NOT_FOUND", "message": "no"}})})
    pool = make_pool(plugin, threads, FakeClock(1000.0))
    for _ in range(5):
        call(pool, "refuse")  # an answer: the plugin is healthy
    with pytest.raises(PluginFailed):
        call(pool, "bad")
    call(pool, "refuse")  # a success between failures: they are no longer consecutive
    with pytest.raises(PluginFailed):
        call(pool, "bad")
    assert state(pool) is BreakerState.CLOSED


def test_a_bulkhead_refusal_does_not_count_against_the_breaker(threads: ThreadShare) -> None:
    gate = Gate()
    plugin = FakePlugin({"h": gate})
    pool = make_pool(plugin, threads, FakeClock(1000.0), threshold=1, max_concurrency=1)

    async def scenario() -> None:
        held = asyncio.create_task(pool.call("h", b"{}", CallContext("p", "1.0.0", "a")))
        try:
            await entered(gate)
            for _ in range(3):
                with pytest.raises(ServiceUnavailable) as refused:
                    await pool.call("h", b"{}", CallContext("p", "1.0.0", "b"))
                assert not isinstance(refused.value, CircuitOpen)
        finally:
            gate.release()
        await held

    asyncio.run(scenario())
    assert state(pool) is BreakerState.CLOSED


def test_a_cancelled_call_does_not_count_and_frees_a_half_open_probe(threads: ThreadShare) -> None:
    clock = FakeClock(1000.0)
    plugin = FakePlugin({"bad": trap(), "loop": spin(), "good": reply({})})
    pool = make_pool(plugin, threads, clock, timeout_ms=30_000)
    for _ in range(2):
        with pytest.raises(PluginFailed):
            call(pool, "bad")
    clock.now += 5

    async def scenario() -> None:
        probe = asyncio.create_task(pool.call("loop", b"{}", CallContext("p", "1.0.0", "a")))
        while len(plugin.calls) < 3:
            await asyncio.sleep(0.001)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe

    asyncio.run(scenario())
    assert state(pool) is BreakerState.HALF_OPEN  # not opened again: the caller went away
    assert call(pool, "good") == b"{}"  # the probe slot was given back
    assert state(pool) is BreakerState.CLOSED
