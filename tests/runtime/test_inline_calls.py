"""The inline path over the fake engine: who is promoted to run on the event loop, when, and how it is undone."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arcana.errors import GuestFault, PluginFailed, PluginTimeout
from arcana.executor import EffectiveLimits, InstancePool, ThreadShare, ThreadShares
from arcana.inline import InlineRule, Watchdog
from arcana.kernel import Kernel
from arcana.types import CallContext
from fakes import FakeEngine, FakePlugin, Kernels, current, manifest_toml, reply, route, wasm_bytes, write_plugin

RULE = InlineRule(max_ms=2, after_calls=5)


@pytest.fixture(autouse=True)
def no_gc_pauses() -> Iterator[None]:
    """A collection of the suite's large heap inside a call can take over 1 ms of CPU and restart a
    streak (harmless when serving), which would make the exact call counts below flaky."""
    gc.disable()
    yield
    gc.enable()


def make_pool(
    plugin: FakePlugin, threads: ThreadShare, rule: InlineRule | None = RULE, timeout_ms: int = 2000
) -> InstancePool:
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=timeout_ms)
    return InstancePool("p", "1.0.0", compiled, EffectiveLimits(16, timeout_ms, 4), threads, inline=rule)


def ctx() -> CallContext:
    return CallContext("p", "1.0.0", "rid-1")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Where:
    """A handler that answers at once and records the thread each call ran on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self, _input: Any, _context: CallContext) -> Any:
        self.threads.append(threading.current_thread().name)
        return {"ok": True}


def busy_for(seconds: float) -> None:
    """A guest that computes for ``seconds`` (CPU time, as a guest does), stopped as the engine would.

    Stopped by its module's limit (the twin's budget, or the plugin's own limit) if that comes first, or by a cancel.
    """
    instance = current().instance
    limit = instance.compiled.timeout_ms / 1000
    end = time.thread_time() + min(seconds, limit)
    while time.thread_time() < end:
        if instance.cancelled.is_set():
            raise GuestFault("cancelled", "the call was cancelled")
    if limit < seconds:
        raise GuestFault("timeout", "the call ran past its time limit")


async def calls(pool: InstancePool, handler: str, count: int, data: bytes = b"{}") -> list[bytes]:
    return [await pool.call(handler, data, ctx()) for _ in range(count)]


def test_a_handler_runs_inline_on_the_loop_after_its_streak_of_short_calls(threads: ThreadShare) -> None:
    where = Where()
    plugin = FakePlugin({"h": where})
    pool = make_pool(plugin, threads)
    promoted = sample("arcana_plugin_inline_changes_total", plugin="p", change="promoted")

    asyncio.run(calls(pool, "h", RULE.after_calls))
    assert pool.inline_handlers() == ["h"]
    asyncio.run(calls(pool, "h", 3))

    loop_thread = threading.current_thread().name
    assert all(name != loop_thread for name in where.threads[: RULE.after_calls])
    assert where.threads[RULE.after_calls :] == [loop_thread] * 3
    assert sample("arcana_plugin_inline_changes_total", plugin="p", change="promoted") - promoted == 1
    assert plugin.compiles == 2  # the module and its twin with the inline time limit, once


def test_the_inline_twin_carries_the_inline_time_limit(threads: ThreadShare) -> None:
    limits: list[int] = []

    def handler(_input: Any, _context: CallContext) -> Any:
        limits.append(current().instance.compiled.timeout_ms)
        return {}

    pool = make_pool(FakePlugin({"h": handler}), threads, timeout_ms=1500)
    asyncio.run(calls(pool, "h", RULE.after_calls + 1))
    assert limits == [1500] * RULE.after_calls + [RULE.max_ms]


def test_a_plugin_without_an_inline_rule_always_runs_on_its_threads(threads: ThreadShare) -> None:
    where = Where()
    pool = make_pool(FakePlugin({"h": where}), threads, rule=None)
    asyncio.run(calls(pool, "h", 4 * RULE.after_calls))
    assert threading.current_thread().name not in where.threads
    assert pool.inline_handlers() == []


def test_one_slow_call_restarts_the_streak(threads: ThreadShare) -> None:
    def handler(data: Any, _context: CallContext) -> Any:
        if data.get("slow"):
            busy_for(RULE.short_s * 3)
        return {}

    pool = make_pool(FakePlugin({"h": handler}), threads)
    asyncio.run(calls(pool, "h", RULE.after_calls - 1))
    asyncio.run(calls(pool, "h", 1, b'{"slow": true}'))
    asyncio.run(calls(pool, "h", RULE.after_calls - 1))
    assert pool.inline_handlers() == []
    asyncio.run(calls(pool, "h", 1))
    assert pool.inline_handlers() == ["h"]


def test_each_handler_earns_inline_on_its_own(threads: ThreadShare) -> None:
    pool = make_pool(FakePlugin({"a": Where(), "b": Where()}), threads)
    asyncio.run(calls(pool, "a", RULE.after_calls))
    asyncio.run(calls(pool, "b", RULE.after_calls - 1))
    assert pool.inline_handlers() == ["a"]


def test_an_inline_call_that_overruns_is_stopped_answered_on_the_threads_and_its_handler_demoted(
    threads: ThreadShare,
) -> None:
    ran_on: list[str] = []

    def handler(data: Any, _context: CallContext) -> Any:
        ran_on.append(threading.current_thread().name)
        if data.get("long"):
            busy_for(0.05)  # well within the plugin's limit, far past the inline one
        return {"done": True}

    plugin = FakePlugin({"h": handler})
    pool = make_pool(plugin, threads)
    demoted = sample("arcana_plugin_inline_changes_total", plugin="p", change="demoted")
    asyncio.run(calls(pool, "h", RULE.after_calls))
    assert pool.inline_handlers() == ["h"]

    assert asyncio.run(calls(pool, "h", 1, b'{"long": true}')) == [b'{"done": true}']
    loop_thread = threading.current_thread().name
    assert ran_on[-2] == loop_thread and ran_on[-1] != loop_thread  # stopped inline, then run again on a thread
    assert pool.inline_handlers() == []
    assert sample("arcana_plugin_inline_changes_total", plugin="p", change="demoted") - demoted == 1

    # A demoted handler earns inline again only by twice the streak.
    asyncio.run(calls(pool, "h", 2 * RULE.after_calls - 1))
    assert loop_thread not in ran_on[-(2 * RULE.after_calls - 1) :]
    asyncio.run(calls(pool, "h", 2))
    assert ran_on[-2] != loop_thread and ran_on[-1] == loop_thread
    assert pool.inline_handlers() == ["h"]


def test_a_failed_call_on_the_threads_restarts_the_streak(threads: ThreadShare) -> None:
    def handler(data: Any, _context: CallContext) -> Any:
        if data.get("trap"):
            raise GuestFault("trap", "unreachable")
        return {}

    pool = make_pool(FakePlugin({"h": handler}), threads)
    asyncio.run(calls(pool, "h", RULE.after_calls - 1))
    with pytest.raises(PluginFailed):
        asyncio.run(calls(pool, "h", 1, b'{"trap": true}'))
    asyncio.run(calls(pool, "h", RULE.after_calls - 1))
    assert pool.inline_handlers() == []
    asyncio.run(calls(pool, "h", 1))
    assert pool.inline_handlers() == ["h"]


def test_a_handler_that_spins_after_behaving_is_stopped_at_its_timeout_while_others_keep_answering(
    threads: ThreadShare,
) -> None:
    turned = threading.Event()

    def turncoat(_input: Any, _context: CallContext) -> Any:
        if turned.is_set():
            busy_for(3600)  # spins until a limit stops it
        return {}

    hostile = make_pool(FakePlugin({"h": turncoat}), threads, timeout_ms=300)
    others = ThreadShares(4).get("q")
    bystander = Where()
    engine = FakeEngine({"q": FakePlugin({"h": bystander})})
    compiled = engine.compile(wasm_bytes(None, key="q"), [], memory_mb=16, timeout_ms=1000)
    other = InstancePool("q", "1.0.0", compiled, EffectiveLimits(16, 1000, 4), others, inline=RULE)

    async def scenario() -> tuple[int, BaseException]:
        await calls(hostile, "h", RULE.after_calls)
        assert hostile.inline_handlers() == ["h"]
        turned.set()
        spinning = asyncio.create_task(hostile.call("h", b"{}", ctx()))
        answered = 0
        while not spinning.done() and answered < 50:
            await other.call("h", b"{}", ctx())
            answered += 1
        assert not spinning.done()  # everyone else was served while the turncoat still ran
        error = (await asyncio.gather(spinning, return_exceptions=True))[0]
        assert isinstance(error, BaseException)
        return answered, error

    try:
        answered, error = asyncio.run(scenario())
    finally:
        others.close()
    assert answered == 50
    assert isinstance(error, PluginTimeout)  # stopped at the plugin's own limit, on its own thread
    assert hostile.inline_handlers() == []


def test_a_trap_inline_is_plugin_failed_and_the_next_inline_call_gets_a_fresh_instance(
    threads: ThreadShare,
) -> None:
    def handler(data: Any, _context: CallContext) -> Any:
        if data.get("trap"):
            raise GuestFault("trap", "unreachable")
        return {"instance": current().instance.id}

    plugin = FakePlugin({"h": handler})
    pool = make_pool(plugin, threads)
    asyncio.run(calls(pool, "h", RULE.after_calls + 1))
    inline_instance = plugin.calls[-1].instance
    with pytest.raises(PluginFailed):
        asyncio.run(calls(pool, "h", 1, b'{"trap": true}'))
    assert pool.inline_handlers() == ["h"]  # a trap is quick: no reason to leave the loop
    asyncio.run(calls(pool, "h", 2))  # the first goes by a thread, which makes a new inline instance
    assert plugin.calls[-1].instance not in (inline_instance, plugin.calls[-2].instance)
    assert threading.current_thread().name == "MainThread"


def test_an_unused_inline_instance_is_trimmed_and_made_again_when_needed(threads: ThreadShare) -> None:
    clock = [100.0]
    plugin = FakePlugin({"h": Where()})
    engine = FakeEngine({"p": plugin})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=2000)
    pool = InstancePool(
        "p",
        "1.0.0",
        compiled,
        EffectiveLimits(16, 2000, 4),
        threads,
        idle_ttl_s=10,
        min_idle=0,
        clock=lambda: clock[0],
        inline=RULE,
    )
    asyncio.run(calls(pool, "h", RULE.after_calls + 1))
    clock[0] += 11
    assert pool.trim() == 2  # the thread path's instance and the inline one
    instances = plugin.instances
    asyncio.run(calls(pool, "h", 2))
    assert plugin.instances == instances + 2  # one for the thread call, one inline made after it
    assert pool.inline_handlers() == ["h"]


def test_a_retired_pool_runs_nothing_inline(threads: ThreadShare) -> None:
    where = Where()
    pool = make_pool(FakePlugin({"h": where}), threads)
    asyncio.run(calls(pool, "h", RULE.after_calls))
    pool.retire()
    asyncio.run(calls(pool, "h", 2))
    assert threading.current_thread().name not in where.threads


def test_the_watchdog_cancels_an_inline_call_its_budget_cannot_stop(threads: ThreadShare) -> None:
    stalls = [True]  # the first stalled call only: its run again on a thread answers

    def handler(data: Any, _context: CallContext) -> Any:
        if data.get("stall") and stalls and stalls.pop():
            # Deaf to the budget, as one long bulk-memory instruction or a slow host function would be.
            if current().instance.cancelled.wait(5):
                raise GuestFault("cancelled", "the call was cancelled")
        return {"done": True}

    watchdog = Watchdog(RULE.backstop_s)
    engine = FakeEngine({"p": (plugin := FakePlugin({"h": handler}))})
    compiled = engine.compile(wasm_bytes(None, key="p"), [], memory_mb=16, timeout_ms=2000)
    pool = InstancePool("p", "1.0.0", compiled, EffectiveLimits(16, 2000, 4), threads, inline=RULE, watchdog=watchdog)
    try:
        asyncio.run(calls(pool, "h", RULE.after_calls))
        assert asyncio.run(calls(pool, "h", 1, b'{"stall": true}')) == [b'{"done": true}']
    finally:
        watchdog.close()
    assert watchdog.fired == 1
    assert plugin.cancels == 1
    assert pool.inline_handlers() == []


def _served_inline(kernel: Kernel, name: str, calls_made: int) -> list[str]:
    plugin = kernel.registry.snapshot.plugins[name]
    for _ in range(calls_made):
        asyncio.run(plugin.pool.call("h", b"{}", CallContext(name, "1.0.0", "rid")))
    return plugin.pool.inline_handlers()


def test_the_kernel_lets_a_plugin_run_inline_only_when_its_host_functions_are_all_quick(kernels: Kernels) -> None:
    kernels.engine.define("quiet", FakePlugin({"h": reply({})}, imports=("log",)))
    kernels.engine.define("keeper", FakePlugin({"h": reply({})}, imports=("log", "kv_get")))
    for name, grants in (("quiet", {"log": True}), ("keeper", {"log": True, "store": True})):
        write_plugin(kernels.plugins, manifest_toml(name, routes=[route("GET", f"/{name}", "h")], capabilities=grants))
    kernel = kernels(EXECUTOR__INLINE_AFTER_CALLS="20", GRANTS__QUIET="[log]", GRANTS__KEEPER="[log, store]")
    asyncio.run(kernel.load_all())
    assert _served_inline(kernel, "quiet", 60) == ["h"]
    assert _served_inline(kernel, "keeper", 60) == []  # kv_get waits on the database: never on the loop


def test_inline_max_ms_zero_keeps_every_call_on_the_threads(kernels: Kernels) -> None:
    kernels.engine.define("quiet", FakePlugin({"h": reply({})}, imports=("log",)))
    write_plugin(kernels.plugins, manifest_toml("quiet", routes=[route("GET", "/q", "h")], capabilities={"log": True}))
    kernel = kernels(EXECUTOR__INLINE_AFTER_CALLS="20", EXECUTOR__INLINE_MAX_MS="0", GRANTS__QUIET="[log]")
    asyncio.run(kernel.load_all())
    assert _served_inline(kernel, "quiet", 60) == []
