"""The executor's bulkheads: per-plugin threads, bounded waits, and honest timeouts (no engine: a fake one).

A fake instance runs a Python ``behave(context)`` on the plugin's thread, so
a test can hold a thread (block on an event), mark a saved change, or fault.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arcana import executor
from arcana.config import ExecutorConfig, load_config
from arcana.errors import ConfigError, GuestFault, PluginFailed, PluginTimeout, ServiceUnavailable
from arcana.executor import EffectiveLimits, InstancePool, ThreadShares
from arcana.types import CallContext

Behave = Callable[[CallContext], bytes]


class FakeInstance:
    def __init__(self, behave: Behave) -> None:
        self._behave = behave

    def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        return self._behave(context)

    def cancel(self) -> None:
        """A real guest stuck in a host function does not stop either: the fake ignores it."""


class FakeCompiled:
    def __init__(self, behave: Behave) -> None:
        self._behave = behave

    def instantiate(self) -> FakeInstance:
        return FakeInstance(self._behave)


class Gate:
    """Blocks the calls that pass through until opened; counts how many ran at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, context: CallContext) -> bytes:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.open.wait(30), "the test never opened the gate"
            return b"ok"
        finally:
            with self._lock:
                self.running -= 1


def pool(
    shares: ThreadShares,
    behave: Behave,
    plugin: str = "a",
    timeout_ms: int = 2000,
    max_concurrency: int = 8,
    max_queue_wait_ms: int = 50,
    answer_reserve_ms: int = 100,
) -> InstancePool:
    limits = EffectiveLimits(16, timeout_ms, max_concurrency)
    return InstancePool(
        plugin,
        "1.0.0",
        FakeCompiled(behave),
        limits,
        shares.get(plugin),
        max_queue_wait_ms=max_queue_wait_ms,
        answer_reserve_ms=answer_reserve_ms,
    )


def context(plugin: str = "a", deadline_s: float | None = 10.0) -> CallContext:
    deadline = time.monotonic() + deadline_s if deadline_s is not None else 0.0
    return CallContext(plugin, "1.0.0", "r", deadline=deadline)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop and the plugin threads run until ``condition`` holds (a test bug if never)."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_a_plugin_holding_all_its_threads_takes_none_of_another_plugins() -> None:
    shares, gate = ThreadShares(2), Gate()
    stuck, other = pool(shares, gate, "stuck"), pool(shares, lambda _: b"fine", "other")
    labels = {"plugin": "stuck", "reason": "threads"}
    rejected = REGISTRY.get_sample_value("arcana_plugin_rejected_total", labels) or 0.0

    async def main() -> None:
        held = [asyncio.create_task(stuck.call("h", b"", context("stuck"))) for _ in range(2)]
        await until(lambda: gate.running == 2)
        with pytest.raises(ServiceUnavailable, match="'stuck' is at its share of threads") as refused:
            await stuck.call("h", b"", context("stuck"))
        assert refused.value.retry_after is not None and refused.value.retry_after >= 1
        assert [await other.call("h", b"", context("other")) for _ in range(5)] == [b"fine"] * 5
        gate.open.set()
        assert await asyncio.gather(*held) == [b"ok", b"ok"]

    run(main)
    shares.close()
    assert (REGISTRY.get_sample_value("arcana_plugin_rejected_total", labels) or 0.0) - rejected == 1


def test_calls_beyond_the_share_are_refused_not_queued() -> None:
    shares, gate = ThreadShares(3), Gate()
    busy = pool(shares, gate, max_concurrency=64)

    async def main() -> None:
        calls = [asyncio.create_task(busy.call("h", b"", context())) for _ in range(20)]
        await until(lambda: sum(c.done() for c in calls) == 17)  # the refused ones, while three hold threads
        gate.open.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes.count(b"ok") == 3
        assert sum(isinstance(o, ServiceUnavailable) for o in outcomes) == 17

    run(main)
    assert gate.most == 3
    shares.close()


def test_every_version_of_a_plugin_shares_its_threads() -> None:
    shares, gate = ThreadShares(1), Gate()
    old, new = pool(shares, gate), pool(shares, gate)

    async def main() -> None:
        held = asyncio.create_task(old.call("h", b"", context()))
        await until(lambda: gate.running == 1)
        with pytest.raises(ServiceUnavailable):
            await new.call("h", b"", context())
        gate.open.set()
        assert await held == b"ok"

    run(main)
    assert shares.get("a") is shares.get("a") and shares.get("a") is not shares.get("b")
    shares.close()


def test_an_abandoned_call_keeps_its_thread_until_its_work_really_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "GUARD_GRACE_S", 0.05)
    shares, gate = ThreadShares(1), Gate()
    hung = pool(shares, gate, timeout_ms=50, max_queue_wait_ms=50)
    share = shares.get("a")

    async def main() -> None:
        with pytest.raises(PluginTimeout, match=r"did not answer within 50 ms$"):
            await hung.call("h", b"", context())
        assert share.busy == 1 and gate.running == 1  # the guard gave up; the thread did not
        with pytest.raises(ServiceUnavailable):  # so the next call is refused, not queued behind it
            await hung.call("h", b"", context())
        gate.open.set()
        await until(lambda: share.busy == 0)
        assert await hung.call("h", b"", context()) == b"ok"

    run(main)
    shares.close()


def test_a_waiting_call_takes_a_thread_freed_within_its_wait() -> None:
    shares, gate = ThreadShares(1), Gate()
    one = pool(shares, gate, max_queue_wait_ms=30_000)

    async def main() -> None:
        first = asyncio.create_task(one.call("h", b"", context()))
        await until(lambda: gate.running == 1)
        second = asyncio.create_task(one.call("h", b"", context()))
        await asyncio.sleep(0.05)
        assert not second.done()  # waiting, within its bound
        gate.open.set()
        assert await asyncio.gather(first, second) == [b"ok", b"ok"]

    run(main)
    shares.close()


def test_the_wait_never_outlasts_the_calls_deadline() -> None:
    shares, gate = ThreadShares(1), Gate()
    one = pool(shares, gate, max_queue_wait_ms=30_000)

    async def main() -> None:
        first = asyncio.create_task(one.call("h", b"", context()))
        await until(lambda: gate.running == 1)
        with pytest.raises(ServiceUnavailable):
            await one.call("h", b"", context(deadline_s=-1.0))
        gate.open.set()
        await first

    run(main)
    shares.close()


def test_the_concurrency_limit_is_refused_with_retry_after() -> None:
    shares, gate = ThreadShares(8), Gate()
    narrow = pool(shares, gate, max_concurrency=1, timeout_ms=3000)

    async def main() -> None:
        first = asyncio.create_task(narrow.call("h", b"", context()))
        await until(lambda: gate.running == 1)
        with pytest.raises(ServiceUnavailable, match="concurrency limit") as refused:
            await narrow.call("h", b"", context())
        assert refused.value.retry_after == 3
        gate.open.set()
        await first

    run(main)
    shares.close()


def test_host_functions_get_the_deadline_less_the_answer_reserve() -> None:
    seen: list[float] = []
    shares = ThreadShares(1)

    def note(ctx: CallContext) -> bytes:
        seen.append(ctx.deadline)
        return b"ok"

    async def main() -> None:
        for timeout_ms, reserve_ms, expected_ms in ((2000, 100, 100), (300, 100, 30), (2000, 0, 0)):
            ctx = context()
            asked = ctx.deadline
            await pool(shares, note, timeout_ms=timeout_ms, answer_reserve_ms=reserve_ms).call("h", b"", ctx)
            assert seen.pop() == pytest.approx(asked - expected_ms / 1000)
        unbounded = context(deadline_s=None)
        await pool(shares, note).call("h", b"", unbounded)
        assert seen.pop() == 0.0

    run(main)
    shares.close()


def saves_then(fault: GuestFault | None) -> Behave:
    def behave(ctx: CallContext) -> bytes:
        ctx.may_have_saved = True  # what the store does before it commits
        if fault is not None:
            raise fault
        return b"ok"

    return behave


@pytest.mark.parametrize(
    "fault, error",
    [
        (GuestFault("timeout", "ran past its limit"), PluginTimeout),
        (GuestFault("trap", "unreachable"), PluginFailed),
        (GuestFault("oom", "out of memory"), PluginFailed),
    ],
)
def test_a_fault_after_a_saved_change_says_it_may_have_been_saved(fault: GuestFault, error: type[Exception]) -> None:
    shares = ThreadShares(1)

    async def main() -> None:
        with pytest.raises(error, match="may have been saved"):
            await pool(shares, saves_then(fault)).call("h", b"", context())

        def faults(_: CallContext) -> bytes:
            raise fault

        with pytest.raises(error) as clean:
            await pool(shares, faults).call("h", b"", context())
        assert "saved" not in str(clean.value)

    run(main)
    shares.close()


def test_the_guard_says_may_have_been_saved_after_a_saved_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "GUARD_GRACE_S", 0.05)
    shares, gate = ThreadShares(1), Gate()

    def save_then_hang(ctx: CallContext) -> bytes:
        ctx.may_have_saved = True
        return gate(ctx)

    async def main() -> None:
        with pytest.raises(PluginTimeout, match="may have been saved"):
            await pool(shares, save_then_hang, timeout_ms=50).call("h", b"", context())
        gate.open.set()

    run(main)
    shares.close()


def test_a_wait_that_ends_as_a_thread_frees_loses_no_thread() -> None:
    """Both races of a bounded wait: cancelled before the handoff, and handed a thread as it is cancelled."""
    shares = ThreadShares(1)
    share = shares.get("a")

    async def main() -> None:
        for handed_first in (False, True):
            assert share.try_take()
            waiting = asyncio.create_task(share.take())
            await asyncio.sleep(0)  # now queued behind the held thread
            if handed_first:
                share.give_back()  # the thread goes to the waiter...
                waiting.cancel()  # ...whose wait ends before it runs again
            else:
                waiting.cancel()
                share.give_back()  # skips the cancelled waiter
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert share.busy == 0 and share.try_take()
            share.give_back()

    run(main)
    shares.close()


def test_a_dropped_plugin_refuses_calls_admitted_after_it_went() -> None:
    shares = ThreadShares(1)
    gone = pool(shares, lambda _: b"ok")

    async def main() -> None:
        assert await gone.call("h", b"", context()) == b"ok"
        shares.drop("a")
        with pytest.raises(ServiceUnavailable, match="was unloaded"):
            await gone.call("h", b"", context())
        assert await pool(shares, lambda _: b"again").call("h", b"", context()) == b"again"

    run(main)
    shares.close()


def test_executor_bounds_have_safe_defaults_and_refuse_zero(tmp_path: Any) -> None:
    defaults = ExecutorConfig()
    assert (defaults.max_threads_per_plugin, defaults.max_queue_wait_ms, defaults.answer_reserve_ms) == (8, 1000, 100)
    for key in ("max_threads_per_plugin", "max_queue_wait_ms"):
        path = tmp_path / f"{key}.yaml"
        path.write_text(f"executor:\n  {key}: 0\n")
        with pytest.raises(ConfigError, match=f"executor.{key}"):
            load_config(path, environ={})
    path = tmp_path / "ok.yaml"
    path.write_text("executor:\n  max_threads_per_plugin: 2\n  max_queue_wait_ms: 250\n  answer_reserve_ms: 0\n")
    loaded = load_config(path, environ={}).executor
    assert (loaded.max_threads_per_plugin, loaded.max_queue_wait_ms, loaded.answer_reserve_ms) == (2, 250, 0)
