"""An instance that waited while another instance of its module was stopped still answers, on the real engine.

Extism stops a call (its time limit, a cancel: the pool's guard, the inline watchdog) by raising its
compiled module's wasmtime epoch, which every instance of the module shares. An instance made before
that and not yet called kept the deadline it was made with, now past: its first call failed before
any guest code ran, with "unable to clear error message" (about 2 in 100,000 calls of the echo plugin
under load answered 500 so). The fixture ``turncoat`` answers at once, or spins when asked to turn.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from arcana.engine.extism_engine import ExtismCompiled, ExtismEngine, ExtismInstance
from arcana.envelopes import HttpRequest, http_envelope, parse_http_output
from arcana.errors import GuestFault
from arcana.executor import EffectiveLimits, InstancePool, ThreadShare
from arcana.inline import InlineRule
from arcana.types import CallContext
from conftest import FIXTURES, build_cached

ROUTE = "/api/v1/test/turncoat"
ANSWER = (200, {"turned": False})  # what a call that is not asked to turn answers
# CPU time after which a thread calling the spinning handler is surely in the guest's loop (getting there takes < 1 ms).
SPINNING_CPU_S = 0.05


@pytest.fixture(scope="module")
def turncoat_wasm() -> bytes:
    return build_cached(FIXTURES / "turncoat").read_bytes()


def request(turn: bool = False) -> bytes:
    query = {"turn": ["1"]} if turn else {}
    return http_envelope(HttpRequest("GET", ROUTE, query, {}, b"", "rid-1"), ROUTE, {})


def ctx() -> CallContext:
    return CallContext("turncoat", "1.0.0", "rid-1")


def answered(output: bytes) -> tuple[int, object]:
    response = parse_http_output("turncoat", output)
    return response.status, json.loads(response.body)


def cancel_a_spinning_call(compiled: ExtismCompiled) -> None:
    """Run a call that spins on a new instance of ``compiled`` and cancel it, as the watchdog does."""
    other = compiled.instantiate()
    faults: list[GuestFault] = []

    def spin() -> None:
        try:
            other.call("turncoat", request(turn=True), ctx())
        except GuestFault as fault:
            faults.append(fault)

    spinning = threading.Thread(target=spin)
    spinning.start()
    assert spinning.ident is not None
    # Extism drops a cancel sent before the call began, and loses one that lands between the call's
    # start and the guest's first instruction (its deadline is set after): cancel once the thread has
    # spent far more CPU than reaching the guest's loop takes, so it spins in it.
    cpu = time.pthread_getcpuclockid(spinning.ident)
    while spinning.is_alive() and time.clock_gettime(cpu) < SPINNING_CPU_S:
        spinning.join(0.005)
    while spinning.is_alive():
        other.cancel()
        spinning.join(0.005)
    assert [f.kind for f in faults] == ["timeout"]  # Extism reports a cancel as a timeout


def test_an_instance_made_before_another_ran_out_of_time_answers_its_first_call(turncoat_wasm: bytes) -> None:
    compiled = ExtismEngine().compile(turncoat_wasm, [], memory_mb=16, timeout_ms=50)
    waiting = compiled.instantiate()  # a pool's warm instance: made, not called yet
    with pytest.raises(GuestFault) as stopped:
        compiled.instantiate().call("turncoat", request(turn=True), ctx())
    assert stopped.value.kind == "timeout"
    assert answered(waiting.call("turncoat", request(), ctx())) == ANSWER
    # and it goes on answering: the instance now runs on a plugin whose deadline is current
    assert answered(waiting.call("turncoat", request(), ctx())) == ANSWER


def test_an_instance_made_before_another_was_cancelled_answers_its_first_call(turncoat_wasm: bytes) -> None:
    compiled = ExtismEngine().compile(turncoat_wasm, [], memory_mb=16, timeout_ms=60_000)
    waiting = compiled.instantiate()
    cancel_a_spinning_call(compiled)
    assert answered(waiting.call("turncoat", request(), ctx())) == ANSWER


def test_an_instance_already_called_is_not_replaced_when_another_is_cancelled(turncoat_wasm: bytes) -> None:
    """Only a plugin that cannot start a call is replaced: one past its first call ignores old deadlines."""
    compiled = ExtismEngine().compile(turncoat_wasm, [], memory_mb=16, timeout_ms=60_000)
    used = compiled.instantiate()
    assert isinstance(used, ExtismInstance)
    used.call("turncoat", request(), ctx())
    plugin = used._plugin
    cancel_a_spinning_call(compiled)
    assert answered(used.call("turncoat", request(), ctx())) == ANSWER
    assert used._plugin is plugin


def test_the_spare_inline_instance_answers_after_the_watchdog_cancelled_another(
    turncoat_wasm: bytes, threads: ThreadShare
) -> None:
    """The echo 500: a spare inline instance waits while an inline call on another is cancelled."""
    limits = EffectiveLimits(16, 60_000, 4)
    compiled = ExtismEngine().compile(turncoat_wasm, [], memory_mb=16, timeout_ms=limits.timeout_ms)
    # A budget of fuel far past what the cancel below needs, so only the cancel stops the spin.
    pool = InstancePool("turncoat", "1.0.0", compiled, limits, threads, inline=InlineRule(max_ms=2000, after_calls=2))

    async def scenario() -> None:
        for _ in range(2):  # the streak that promotes the handler, on the plugin's threads
            await pool.call("turncoat", request(), ctx())
        assert pool.inline_handlers() == ["turncoat"]
        twin = pool._inline_compiled  # the inline instance waits on it, made at the promotion, not called yet
        assert isinstance(twin, ExtismCompiled)
        cancel_a_spinning_call(twin)
        output = await pool.call("turncoat", request(), ctx())
        assert answered(output) == ANSWER
        assert pool.inline_handlers() == ["turncoat"]  # it answered inline: no fault, no demotion

    asyncio.run(scenario())
