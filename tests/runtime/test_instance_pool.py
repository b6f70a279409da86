"""The instance pool over the fake engine: reuse, discard on fault, the bulkhead, the wall-clock guard, retire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arcana import executor
from arcana.errors import PluginFailed, PluginTimeout, ServiceUnavailable
from arcana.executor import EffectiveLimits, InstancePool, ThreadShare
from arcana.types import CallContext
from fakes import FakeEngine, FakePlugin, Gate, async_wait_for, entered, oom, reply, spin, trap, wait_for, wasm_bytes


def make_pool(
    plugin: FakePlugin, threads: ThreadShare, *, timeout_ms: int = 2000, max_concurrency: int = 4
) -> InstancePool:
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=timeout_ms)
    return InstancePool("p", "1.0.0", compiled, EffectiveLimits(16, timeout_ms, max_concurrency), threads)


def ctx() -> CallContext:
    return CallContext("p", "1.0.0", "rid-1")


def call(pool: InstancePool, handler: str, data: bytes = b"{}") -> bytes:
    return asyncio.run(pool.call(handler, data, ctx()))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def picky(_input: Any, _context: CallContext) -> Any:
    """Traps on {"trap": true}, answers otherwise."""
    if isinstance(_input, dict) and _input.get("trap"):
        return trap()(_input, _context)
    return {"ok": True}


def test_a_successful_call_gives_its_instance_back_for_the_next_call(threads: ThreadShare) -> None:
    plugin = FakePlugin({"h": reply({"ok": 1})})
    pool = make_pool(plugin, threads)
    assert call(pool, "h") == b'{"ok": 1}'
    call(pool, "h")
    assert plugin.instances == 1
    assert plugin.calls[0].instance == plugin.calls[1].instance


def test_a_trap_discards_the_instance_and_the_next_call_gets_a_fresh_one(threads: ThreadShare) -> None:
    plugin = FakePlugin({"h": picky})
    pool = make_pool(plugin, threads)
    call(pool, "h")
    with pytest.raises(PluginFailed, match="failed while handling the request"):
        call(pool, "h", b'{"trap": true}')
    call(pool, "h")
    first, trapped, after = (c.instance for c in plugin.calls)
    assert first == trapped and after != trapped
    assert plugin.instances == 2


def test_out_of_memory_is_plugin_failed_naming_the_limit_and_discards_the_instance(
    threads: ThreadShare,
) -> None:
    plugin = FakePlugin({"h": oom(), "ok": reply({})})
    pool = make_pool(plugin, threads)
    with pytest.raises(PluginFailed, match=r"ran out of memory \(16 MB limit\)"):
        call(pool, "h")
    call(pool, "ok")
    assert plugin.instances == 2


def test_the_engine_time_limit_is_plugin_timeout_and_discards_the_instance(threads: ThreadShare) -> None:
    plugin = FakePlugin({"loop": spin(), "ok": reply({})})
    pool = make_pool(plugin, threads, timeout_ms=20)
    with pytest.raises(PluginTimeout, match="did not answer within 20 ms"):
        call(pool, "loop")
    call(pool, "ok")
    assert plugin.instances == 2
    assert plugin.cancels == 0  # the engine ended the call itself; the guard had nothing to do


def test_the_guard_cancels_a_call_stuck_in_the_host_and_never_reuses_its_instance(
    threads: ThreadShare, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "GUARD_GRACE_S", 0.02)
    gate = Gate()
    plugin = FakePlugin({"stuck": gate})
    pool = make_pool(plugin, threads, timeout_ms=20)
    try:
        with pytest.raises(PluginTimeout):
            call(pool, "stuck")
        assert plugin.cancels == 1
        assert pool.in_flight == 0  # the slot is given back although the thread is still stuck
    finally:
        gate.release()
    wait_for(lambda: plugin.finished == 1, 5, "the stuck call never returned after the gate opened")
    call(pool, "stuck")  # returns at once now
    assert plugin.instances == 2  # the abandoned instance finished fine but was not given back


def test_a_cancelled_caller_stops_its_guest_and_disowns_the_instance(threads: ThreadShare) -> None:
    plugin = FakePlugin({"loop": spin(), "ok": reply({})})
    pool = make_pool(plugin, threads, timeout_ms=30_000)

    async def scenario() -> None:
        task = asyncio.create_task(pool.call("loop", b"{}", ctx()))
        await async_wait_for(lambda: len(plugin.calls) == 1, 5, "the guest never started")
        task.cancel()  # e.g. a gRPC client's deadline or cancel
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.in_flight == 0

    asyncio.run(scenario())
    wait_for(lambda: plugin.finished == 1, 5, "the guest kept running after its caller went away")
    assert plugin.cancels == 1
    call(pool, "ok")
    assert plugin.instances == 2


def test_the_bulkhead_admits_max_concurrency_calls_and_refuses_one_more_after_waiting(
    threads: ThreadShare,
) -> None:
    gate = Gate()
    plugin = FakePlugin({"h": gate})
    pool = make_pool(plugin, threads, timeout_ms=100, max_concurrency=2)
    rejected = sample("arcana_plugin_rejected_total", plugin="p", reason="concurrency")

    async def scenario() -> tuple[list[bytes], ServiceUnavailable]:
        held = [asyncio.create_task(pool.call("h", b"{}", ctx())) for _ in range(2)]
        try:
            await entered(gate, 2)
            assert pool.in_flight == 2
            with pytest.raises(ServiceUnavailable) as refused:
                await pool.call("h", b"{}", ctx())
        finally:
            gate.release()
        return list(await asyncio.gather(*held)), refused.value

    done, refused = asyncio.run(scenario())
    assert len(done) == 2 and gate.most_inside == 2
    assert "concurrency limit (2)" in refused.message
    assert len(plugin.calls) == 2  # the refused call never reached the guest
    assert sample("arcana_plugin_rejected_total", plugin="p", reason="concurrency") - rejected == 1


def test_a_call_waiting_for_a_slot_runs_when_one_frees(threads: ThreadShare) -> None:
    gate = Gate()
    plugin = FakePlugin({"h": gate})
    pool = make_pool(plugin, threads, max_concurrency=1)
    waits = sample("arcana_plugin_pool_wait_seconds_count", plugin="p")

    async def scenario() -> list[bytes]:
        calls = [asyncio.create_task(pool.call("h", b"{}", ctx())) for _ in range(3)]
        await entered(gate)
        await asyncio.sleep(0)  # the others are queued on the semaphore, not in the guest
        assert gate.inside == 1
        gate.release()
        return list(await asyncio.gather(*calls))

    assert len(asyncio.run(scenario())) == 3
    assert gate.most_inside == 1
    assert plugin.instances == 1  # one slot, one instance, reused in turn
    # The two calls that queued are in the wait histogram; the one admitted at once is not.
    assert sample("arcana_plugin_pool_wait_seconds_count", plugin="p") - waits == 2


def test_retire_drops_idle_instances_and_a_call_in_flight_keeps_its_own(threads: ThreadShare) -> None:
    gate = Gate()
    plugin = FakePlugin({"warm": reply({}), "h": gate})
    pool = make_pool(plugin, threads)
    call(pool, "warm")  # one idle instance now

    async def scenario() -> bytes:
        task = asyncio.create_task(pool.call("h", b"{}", ctx()))
        await entered(gate)
        pool.retire()
        gate.release()
        return await task

    assert b"passed" in asyncio.run(scenario())
    call(pool, "warm")
    assert plugin.instances == 2  # nothing was reused after retire, not even the in-flight call's instance
    assert plugin.calls[0].instance == plugin.calls[1].instance != plugin.calls[2].instance


def test_an_instance_that_cannot_be_made_is_plugin_failed(threads: ThreadShare) -> None:
    pool = make_pool(FakePlugin({"h": reply({})}, reject_instantiate="out of table space"), threads)
    with pytest.raises(PluginFailed, match="failed while handling the request"):
        call(pool, "h")


def test_a_warm_instance_serves_the_first_call(threads: ThreadShare) -> None:
    plugin = FakePlugin({"h": reply({})})
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=100)
    warm = compiled.instantiate()
    pool = InstancePool("p", "1.0.0", compiled, EffectiveLimits(16, 100, 1), threads, warm)
    call(pool, "h")
    assert plugin.instances == 1 and plugin.calls[0].instance == warm.id


def test_outcomes_are_counted_by_plugin(threads: ThreadShare) -> None:
    plugin = FakePlugin({"ok": reply({}), "bad": trap(), "loop": spin()})
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=10)
    pool = InstancePool("counted-p", "1.0.0", compiled, EffectiveLimits(16, 10, 2), threads)

    def seen(outcome: str) -> float:
        return REGISTRY.get_sample_value("arcana_plugin_calls_total", {"plugin": "counted-p", "outcome": outcome}) or 0

    call(pool, "ok")
    for handler in ("bad", "loop"):
        with pytest.raises((PluginFailed, PluginTimeout)):
            call(pool, handler)
    # A timeout is a timeout whether the engine's own limit or the wall-clock guard ended the call.
    # A trap is told apart from a timeout (and from a kernel error) on the counter.
    assert (seen("ok"), seen("trap"), seen("timeout"), seen("error")) == (1, 1, 1, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_idle_pool(
    plugin: FakePlugin, threads: ThreadShare, clock: FakeClock, *, ttl_s: float = 60.0, min_idle: int = 1
) -> InstancePool:
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=2000)
    limits = EffectiveLimits(16, 2000, 4)
    return InstancePool("p", "1.0.0", compiled, limits, threads, idle_ttl_s=ttl_s, min_idle=min_idle, clock=clock)


def burst(pool: InstancePool, gate: Gate, n: int) -> None:
    """``n`` calls inside the guest at once, so each holds an instance of its own, then all return."""

    async def scenario() -> None:
        calls = [asyncio.create_task(pool.call("h", b"{}", ctx())) for _ in range(n)]
        try:
            await entered(gate, n)
        finally:
            gate.release()
        await asyncio.gather(*calls)

    asyncio.run(scenario())


def test_idle_instances_past_the_ttl_are_dropped_down_to_the_minimum_and_the_pool_still_serves(
    threads: ThreadShare,
) -> None:
    gate, clock = Gate(), FakeClock()
    plugin = FakePlugin({"h": gate})
    pool = make_idle_pool(plugin, threads, clock, ttl_s=60, min_idle=1)
    burst(pool, gate, 4)
    assert pool.idle == 4 and plugin.instances == 4
    clock.now += 59
    assert pool.trim() == 0 and pool.idle == 4  # not idle long enough yet
    clock.now += 2
    assert pool.trim() == 3
    assert pool.idle == 1
    call(pool, "h")
    assert plugin.instances == 4  # the call after the trim ran on the instance kept warm
    assert pool.idle == 1


def test_a_return_that_finds_expired_instances_trims_them_without_a_sweep(threads: ThreadShare) -> None:
    gate, clock = Gate(), FakeClock()
    plugin = FakePlugin({"h": gate})
    pool = make_idle_pool(plugin, threads, clock, ttl_s=60, min_idle=1)
    burst(pool, gate, 3)
    clock.now += 61
    call(pool, "h")
    assert pool.idle == 1  # the instance that just served, kept: the others had waited past the ttl
    call(pool, "h")
    assert plugin.calls[-1].instance == plugin.calls[-2].instance


def test_an_instance_in_use_is_never_dropped_by_a_trim(threads: ThreadShare) -> None:
    gate, clock = Gate(), FakeClock()
    plugin = FakePlugin({"h": gate})
    pool = make_idle_pool(plugin, threads, clock, ttl_s=60, min_idle=0)
    gate.release()
    call(pool, "h")  # one idle instance, stamped now
    held = Gate()
    plugin.handlers["h"] = held

    async def scenario() -> None:
        task = asyncio.create_task(pool.call("h", b"{}", ctx()))
        await entered(held)
        clock.now += 3600
        assert pool.idle == 0  # borrowed: not in the idle set, so nothing to drop
        assert pool.trim() == 0
        held.release()
        await task

    asyncio.run(scenario())
    assert pool.idle == 1  # it came back after its long call and is reused
    call(pool, "h")
    assert plugin.instances == 1
    assert len({c.instance for c in plugin.calls}) == 1


def test_min_idle_zero_drops_every_expired_instance_and_the_next_call_makes_a_new_one(threads: ThreadShare) -> None:
    gate, clock = Gate(), FakeClock()
    plugin = FakePlugin({"h": gate})
    pool = make_idle_pool(plugin, threads, clock, ttl_s=60, min_idle=0)
    burst(pool, gate, 2)
    clock.now += 61
    assert pool.trim() == 2 and pool.idle == 0
    call(pool, "h")
    assert plugin.instances == 3


def test_a_zero_ttl_keeps_idle_instances(threads: ThreadShare) -> None:
    gate, clock = Gate(), FakeClock()
    plugin = FakePlugin({"h": gate})
    pool = make_idle_pool(plugin, threads, clock, ttl_s=0, min_idle=0)
    burst(pool, gate, 3)
    clock.now += 10**6
    call(pool, "h")
    assert pool.trim() == 0 and pool.idle == 3
