"""Benchmarks 1 and 2: in-process plugin calls and instance start, against raw Extism.

1. us per call of the `hello` (AssemblyScript) and `echo` (Zig) handlers with
   their http envelope, through
     - ``python``:   a plain Python function doing the same JSON work
                     (parse the envelope, build and serialize the response);
     - ``raw``:      ``extism.Plugin(CompiledPlugin(...)).call`` with the same
                     module, export, memory and time limits, and a no-op
                     ``log`` host function (the module imports one) - the floor;
     - ``engine``:   ``ExtismEngine().compile(...).instantiate().call`` with the
                     kernel's real ``log`` capability linked (echo calls it
                     once per request; hello no longer does);
     - ``pool``:     ``await InstancePool.call(...)`` on a uvloop loop, one call
                     at a time, on the plugin's threads (semaphore, thread
                     offload, wall-clock guard): a pool with no inline rule;
     - ``inline``:   the same with the kernel's inline rule, after the calls that
                     promote the handler: the guest runs on the loop's thread
                     within its fuel budget, watched by the watchdog (arcana.inline);
     - ``pool x8``:  eight concurrent ``InstancePool.call`` (wall time / call),
                     as under load: thread hops and GIL hand-offs included;
     - ``hop``:      ``loop.run_in_executor(threads, no-op)``: the bare thread
                     offload, to split the pool's overhead (hello only).
   Overhead = subject - raw, paired per round, median over rounds.
2. ms per ``ExtismCompiled.instantiate()`` against
   ``extism.Plugin(CompiledPlugin, functions=None)`` (instances freed as made).

Subjects run interleaved (rotated order) in short batches, several rounds.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import extism
import uvloop
from extism.extism import CompiledPlugin

from arcana.engine.extism_engine import WASM_PAGE, ExtismCompiled, ExtismEngine
from arcana.executor import EffectiveLimits, InstancePool, ThreadShares
from arcana.inline import InlineRule
from arcana.manifest import Manifest
from arcana.types import CallContext, LinkedFunction, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.log import LogCapability
from common import ECHO_ENVELOPE, HELLO_ENVELOPE, ROOT, Row, calibrate, compact, median, time_per_call

MEMORY_MB, TIMEOUT_MS, CONCURRENCY = 16, 1000, 8  # what both example manifests ask for

PLUGINS = {
    "hello": (ROOT / "plugins" / "hello" / "hello.wasm", "hello", HELLO_ENVELOPE),
    "echo": (ROOT / "plugins" / "echo" / "echo.wasm", "echo", ECHO_ENVELOPE),
}


@extism.host_fn(name="log", namespace="extism:host/user")
def _noop_log(request: bytes) -> bytes:  # the raw baseline's host function: does nothing
    return b"{}"


def _raw_manifest(wasm: bytes) -> dict[str, Any]:
    return {
        "wasm": [{"data": wasm}],
        "memory": {"max_pages": MEMORY_MB * 1024 * 1024 // WASM_PAGE},
        "timeout_ms": TIMEOUT_MS,
    }


def _python_handler(name: str) -> Callable[[bytes], bytes]:
    if name == "hello":

        def hello(data: bytes) -> bytes:
            env = json.loads(data)
            return compact({"status": 200, "headers": {}, "body": {"message": f"Hello, {env['params']['name']}!"}})

        return hello

    def echo(data: bytes) -> bytes:
        env = json.loads(data)
        return compact({"status": 200, "headers": {}, "body": {"echo": env["body"]}})

    return echo


class _LoopRunner:
    """A uvloop loop kept open across batches, so pool calls can be timed in rounds."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


def _pool_sequential(
    runner: _LoopRunner, pool: InstancePool, handler: str, data: bytes, ctx: CallContext
) -> Callable[[int], float]:
    async def batch(n: int) -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(n):
            await pool.call(handler, data, ctx)
        return (loop.time() - t0) / n

    return lambda n: runner.run(batch(n))


def _pool_concurrent(
    runner: _LoopRunner, pool: InstancePool, handler: str, data: bytes, ctx: CallContext
) -> Callable[[int], float]:
    async def batch(n: int) -> float:
        loop = asyncio.get_running_loop()
        per = max(1, n // CONCURRENCY)

        async def worker() -> None:
            for _ in range(per):
                await pool.call(handler, data, ctx)

        t0 = loop.time()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return (loop.time() - t0) / (per * CONCURRENCY)

    return lambda n: runner.run(batch(n))


def _thread_hop(runner: _LoopRunner, threads: ThreadPoolExecutor) -> Callable[[int], float]:
    """``run_in_executor`` of a no-op: the bare cost of the thread offload on uvloop."""

    async def batch(n: int) -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(n):
            await loop.run_in_executor(threads, int)
        return (loop.time() - t0) / n

    return lambda n: runner.run(batch(n))


def _interleave(subjects: dict[str, Callable[[int], float]], batch_s: float, rounds: int) -> dict[str, list[float]]:
    """Per subject: seconds per call in each round; subjects rotate order each round."""
    sizes = {name: max(20, calibrate(lambda f=f: f(1), batch_s)) for name, f in subjects.items()}
    names = list(subjects)
    out: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(subjects[name](sizes[name]))
    return out


def _log_functions(plugin: str) -> list[LinkedFunction]:
    """The kernel's real ``log`` capability, configured and linked for ``plugin`` as the loader does it."""
    spec = PluginSpec(Manifest(plugin, "bench"), frozenset({"log"}))
    return list(link_capability(LogCapability(), spec).values())


def _per_call(fn: Callable[[], object]) -> Callable[[int], float]:
    return lambda n: time_per_call(fn, n)


def _call_rows(
    name: str,
    handler: str,
    envelope: dict[str, Any],
    compiled: ExtismCompiled,
    raw_compiled: CompiledPlugin,
    threads: ThreadPoolExecutor,
    runner: _LoopRunner,
    rounds: int,
    batch_s: float,
) -> list[Row]:
    """Benchmark 1 for one plugin; its instances are freed when this returns."""
    data = compact(envelope)
    ctx = CallContext(plugin=name, version="bench", request_id="r")
    instance = compiled.instantiate()
    raw = extism.Plugin(raw_compiled, functions=None)
    expected = raw.call(handler, data)
    got = instance.call(handler, data, ctx)
    if json.loads(got) != json.loads(expected):
        raise RuntimeError(f"{name}: engine and raw Extism disagree: {got!r} vs {expected!r}")
    pool = InstancePool(
        name,
        "bench",
        compiled,
        EffectiveLimits(MEMORY_MB, TIMEOUT_MS, CONCURRENCY),
        ThreadShares(CONCURRENCY, threads).get(name),  # the kernel's shape: a share per plugin
        compiled.instantiate(),
    )
    shares = ThreadShares(CONCURRENCY, threads)
    rule = InlineRule(max_ms=2, after_calls=100)  # the kernel's defaults
    inline = InstancePool(
        name,
        "bench",
        compiled,
        EffectiveLimits(MEMORY_MB, TIMEOUT_MS, CONCURRENCY),
        shares.get(f"{name}-inline"),
        compiled.instantiate(),
        inline=rule,
        watchdog=shares.watchdog(rule),
    )
    for _ in range(rule.after_calls + 20):  # earn inline, as the kernel's handlers do
        runner.run(inline.call(handler, data, ctx))
    if inline.inline_handlers() != [handler]:
        raise RuntimeError(f"{name}: the handler did not earn inline after {rule.after_calls} short calls")
    py = _python_handler(name)
    subjects = {
        "python": _per_call(lambda: py(data)),
        "raw": _per_call(lambda: raw.call(handler, data)),
        "engine": _per_call(lambda: instance.call(handler, data, ctx)),
        "pool": _pool_sequential(runner, pool, handler, data, ctx),
        "inline": _pool_sequential(runner, inline, handler, data, ctx),
        "pool x8": _pool_concurrent(runner, pool, handler, data, ctx),
    }
    if name == "hello":
        subjects["hop"] = _thread_hop(runner, threads)
    try:
        got_rounds = _interleave(subjects, batch_s, rounds)
    finally:
        pool.retire()
        inline.retire()
        shares.close()
    us = {k: [v * 1e6 for v in vs] for k, vs in got_rounds.items()}
    label = f"call {name}"

    def vs_raw(key: str) -> float:
        return median(a / b for a, b in zip(us[key], us["raw"], strict=True))

    rows = [
        Row(
            label,
            "python (same JSON work)",
            median(us["python"]),
            "us/call",
            "raw extism",
            vs_raw("python"),
            "x raw",
            rounds=us["python"],
        ),
        Row(label, "raw extism.Plugin.call", median(us["raw"]), "us/call", "(floor)", rounds=us["raw"]),
    ]
    if "hop" in us:
        rows.append(
            Row(
                label,
                "thread hop only (run_in_executor no-op)",
                median(us["hop"]),
                "us/call",
                note="part of the pool's overhead",
                rounds=us["hop"],
            )
        )
    for key, subject in (
        ("engine", "ExtismEngine instance.call"),
        ("pool", "InstancePool.call on the plugin's threads (uvloop)"),
        ("inline", "InstancePool.call inline on the loop (uvloop)"),
        ("pool x8", "InstancePool.call on threads, 8 concurrent"),
    ):
        overhead = median(a - b for a, b in zip(us[key], us["raw"], strict=True))
        note = f"overhead {overhead:+.1f} us"
        if key == "pool x8":
            note += " (wall time per call; guests can run on both cores)"
        rows.append(
            Row(
                label,
                subject,
                median(us[key]),
                "us/call",
                "raw extism",
                vs_raw(key),
                "x raw",
                target="" if key == "pool x8" else "overhead <= 50 us",
                ok=None if key == "pool x8" else overhead <= 50,
                note=note,
                rounds=us[key],
            )
        )
    return rows


def _instantiate_rows(
    name: str, compiled: ExtismCompiled, raw_compiled: CompiledPlugin, rounds: int, batch_s: float
) -> list[Row]:
    """Benchmark 2 for one plugin: instance start from the compiled module."""

    def make_ours() -> None:
        compiled.instantiate()

    def make_raw() -> None:
        extism.Plugin(raw_compiled, functions=None)

    inst = _interleave({"ours": _per_call(make_ours), "raw": _per_call(make_raw)}, batch_s, rounds)
    ms = {k: [v * 1e3 for v in vs] for k, vs in inst.items()}
    return [
        Row(
            f"instantiate {name}",
            "raw extism.Plugin(CompiledPlugin)",
            median(ms["raw"]),
            "ms",
            "(floor)",
            rounds=ms["raw"],
        ),
        Row(
            f"instantiate {name}",
            "ExtismCompiled.instantiate()",
            median(ms["ours"]),
            "ms",
            "raw extism",
            median(a / b for a, b in zip(ms["ours"], ms["raw"], strict=True)),
            "x raw",
            target="<= 0.5 ms",
            ok=median(ms["ours"]) <= 0.5,
            rounds=ms["ours"],
        ),
    ]


def run(quick: bool) -> list[Row]:
    # Many short rounds: on a shared machine a noisy spell then hits every
    # subject alike, and the paired per-round comparisons cancel it.
    rounds, batch_s = (5, 0.04) if quick else (15, 0.1)
    rows: list[Row] = []
    threads = ThreadPoolExecutor(16, thread_name_prefix="arcana-plugin")  # the kernel's default pool size
    runner = _LoopRunner()
    engine = ExtismEngine()
    try:
        for name, (path, handler, envelope) in PLUGINS.items():
            wasm = path.read_bytes()
            functions = _log_functions(name)
            compiled = engine.compile(wasm, functions, memory_mb=MEMORY_MB, timeout_ms=TIMEOUT_MS)
            raw_compiled = CompiledPlugin(_raw_manifest(wasm), wasi=False, functions=[_noop_log])
            rows += _call_rows(name, handler, envelope, compiled, raw_compiled, threads, runner, rounds, batch_s)
            rows += _instantiate_rows(name, compiled, raw_compiled, rounds, batch_s)
    finally:
        runner.close()
        threads.shutdown(wait=True)
    return rows


if __name__ == "__main__":
    from common import print_rows

    print_rows(run(quick=True))
