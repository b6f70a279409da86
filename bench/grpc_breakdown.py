"""Where a gRPC plugin call's time goes in the kernel: each step of the path timed alone, in-process.

    .venv/bin/python bench/grpc_breakdown.py            # about 20 s
    .venv/bin/python bench/run.py --only grpc           # the same, after the h2load run of grpc_bench.py

One process builds the real kernel (``Kernel(load_config(...))`` serving
plugins/hello/hello.wasm) and its real gRPC server (``start_grpc_server``, on
a free port), then times, over many calls each on uvloop, every step a call
to ``/greeter.v1.Greeter/SayHello`` takes after grpcio has parsed the HTTP/2
frames, with the kernel's own objects:

- the generic handlers' lookup (``KernelMethods.service`` then
  ``PluginMethods.service``, as grpcio asks them in turn on every call) and
  the metrics interceptor (``GrpcMetrics.intercept_service`` and its
  ``measured`` wrapper around a no-op behaviour);
- what ``PluginMethods`` does with the ``ServicerContext``: ``metadata_of``,
  ``request_id``, ``set_trailing_metadata``, ``peer`` (timed inside a real
  call on a real context: a probe method on the same server repeats them);
- ``RequestCore.limit_address``, ``_admit`` (authentication), ``_context``
  with the log scope, ``decode_message`` (wire -> proto3 JSON),
  ``grpc_envelope`` (envelope JSON), ``InstancePool.call`` (split into the
  guest call itself, ``instance.call`` on this thread, and the rest: slots,
  the thread hop, ``wait_for``, pool metrics), ``parse_grpc_output`` (reply
  JSON) and ``RpcMethod.encode`` (proto3 JSON -> wire);
- ``RequestCore.call_grpc`` whole, so what the steps above leave out (the
  in-flight count, try/finally) shows as the remainder;
- for scale: what the plain native handler does (``HelloRequest.FromString``,
  build ``HelloReply``, ``SerializeToString``).

The steps are timed alone, so their sum is what the kernel adds when each runs
warm and uncontended; under load, the thread hop and the event loop's
scheduling cost more (compare the h2load latency of grpc_bench.py). Never used by tests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import Row, free_port, hello_kernel_env

PLUGIN_METHOD = "/greeter.v1.Greeter/SayHello"
PROBE_METHOD = "/bench.v1.Probe/Context"
REQUEST = b"\x0a\x05bench"


@dataclass
class Step:
    name: str
    us: float
    part_of_total: bool = True  # False: an "of which" line or a reference, not added to the total


def _batch_sizes(seconds: float) -> Generator[tuple[int, bool], float, None]:
    """How many calls each timed batch makes, sent back each batch's seconds: (n, counted).

    Calibration batches (not counted) grow from 200 calls until one takes 50 ms; then 5 counted batches of
    about ``seconds`` / 5 each. The two timers below share this one schedule.
    """
    n = 200
    took = yield n, False
    while took <= 0.05:
        n *= 4
        took = yield n, False
    n = max(1, int(n * seconds / 5 / took))
    for _ in range(5):
        yield n, True


async def per_call_async(fn: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Microseconds per awaited call of ``fn``, best of 5 batches of about ``seconds`` / 5 each."""
    best, sizes = float("inf"), _batch_sizes(seconds)
    n, counted = next(sizes)
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            await fn()
        took = time.perf_counter() - t0
        if counted:
            best = min(best, took / n)
        try:
            n, counted = sizes.send(took)
        except StopIteration:
            return best * 1e6


def _sync(fn: Callable[[], object], seconds: float) -> float:
    """``per_call_async`` for a plain function (no await in the loop, which would be timed too)."""
    best, sizes = float("inf"), _batch_sizes(seconds)
    n, counted = next(sizes)
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - t0
        if counted:
            best = min(best, took / n)
        try:
            n, counted = sizes.send(took)
        except StopIteration:
            return best * 1e6


class Details:
    """What grpcio hands the generic handlers and interceptors: the method and the metadata."""

    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.invocation_metadata = metadata


class NoContext:
    """The little of a ServicerContext that the metrics wrapper reads after the handler returned."""

    def code(self) -> None:
        return None


async def measure(seconds: float) -> tuple[list[Step], str]:
    import grpc

    from arcana.config import load_config
    from arcana.core import decode_message, request_id
    from arcana.edge.grpc import PluginMethods, _plugin_of, start_grpc_server
    from arcana.edge.grpc_kernel import KernelMethods, kernel_methods
    from arcana.edge.grpc_metrics import GrpcMetrics
    from arcana.edge.grpc_wire import metadata_of
    from arcana.envelopes import grpc_envelope, parse_grpc_output
    from arcana.kernel import Kernel
    from arcana.kernel_protos import kernel_descriptors

    workdir = Path(tempfile.mkdtemp(prefix="arcana-bench-grpc-cost-"))
    env = hello_kernel_env(workdir, SERVER__GRPC_PORT=str(free_port()))
    kernel = Kernel(load_config(None, environ=env))
    kernel.start()
    server = await start_grpc_server(kernel)
    try:
        await kernel.load_all()
        core = kernel.core
        target = core.rpc_target(PLUGIN_METHOD)
        assert target is not None
        plugin, entry, method = target.plugin, target.entry, target.method

        # The context steps, on the real grpc.aio context of a real call (a probe method on this server).
        async def probe(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            n = 20_000
            found: dict[str, float] = {}
            for name, fn in (
                ("invocation_metadata", lambda: context.invocation_metadata()),
                ("metadata_of", lambda: metadata_of(context)),
                ("set_trailing_metadata", lambda: context.set_trailing_metadata((("x-request-id", "r"),))),
                ("peer", lambda: (context.peer() or "grpc").rsplit(":", 1)[0]),
            ):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                found[name] = (time.perf_counter() - t0) / n * 1e6
            found["metadata"] = [list(kv) for kv in context.invocation_metadata() or ()]  # type: ignore[assignment]
            return json.dumps(found).encode()

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "bench.v1.Probe", {"Context": grpc.unary_unary_rpc_method_handler(probe)}
                ),
            )
        )
        address = f"127.0.0.1:{kernel.config.server.grpc_port}"
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(PROBE_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            probed = json.loads(await call(b""))
            hello = channel.unary_unary(
                PLUGIN_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )
            assert await hello(REQUEST) == b"\x0a\x0dHello, bench!"
        wire_metadata = tuple((k, v) for k, v in probed.pop("metadata"))
        details = Details(PLUGIN_METHOD, wire_metadata)

        # The generic handlers, as grpcio asks them: the kernel's services first, then the plugins'.
        kernel_handler = KernelMethods(kernel_methods(kernel, kernel_descriptors()))
        plugin_handler = PluginMethods(core)
        metrics = GrpcMetrics(_plugin_of(core))
        handler = plugin_handler.service(details)  # type: ignore[arg-type]
        assert handler is not None

        async def continuation(_: Any) -> Any:
            return handler

        async def no_behavior(request: bytes, context: Any) -> bytes:
            return b""

        wrapped = metrics._measured(no_behavior, PLUGIN_METHOD, plugin.name)
        no_context = NoContext()

        metadata = metadata_of_pairs(wire_metadata)
        rid = request_id("")
        principal = core._admit(entry.public, entry.roles, "")
        context = core._context(plugin, entry.handler, rid, "", principal)
        message = decode_message(method, REQUEST)
        envelope = grpc_envelope(method.full_name, message, metadata, rid, "", None)
        instance = plugin.pool._idle[-1][0]
        output = instance.call(entry.handler, envelope, context)
        reply = parse_grpc_output(plugin.name, output)

        def fresh_context() -> Any:
            context.deadline = time.monotonic() + 1  # pool.call takes its reserve off the deadline each call
            return context

        def core_context() -> None:
            from arcana import logs

            scope = logs.enter(logs.RequestScope(rid, "", plugin.name, plugin.manifest.version))
            core._context(plugin, entry.handler, rid, "", principal)
            logs.leave(scope)

        async def pool_call() -> bytes:
            return await plugin.pool.call(entry.handler, envelope, fresh_context())

        async def call_grpc() -> bytes:
            return await core.call_grpc(target, REQUEST, dict(metadata), rid, "", "127.0.0.1", None)

        share = plugin.pool.share

        async def hop() -> object:
            return await asyncio.wrap_future(share.submit(lambda: None))

        HelloRequest, HelloReply = method.input_type, method.output_type  # named as generated code names them

        def native() -> bytes:
            request = HelloRequest.FromString(REQUEST)
            return HelloReply(message=f"Hello, {request.name}!").SerializeToString()  # type: ignore[no-any-return]

        def sparse_guest(calls: int) -> float:
            """Median us of one guest call made every ~1 ms (as at one connection), not back to back."""
            took = []
            for _ in range(calls):
                time.sleep(0.001)
                t0 = time.perf_counter()
                instance.call(entry.handler, envelope, context)
                took.append((time.perf_counter() - t0) * 1e6)
            return sorted(took)[len(took) // 2]

        s = seconds
        t = {
            "sparse guest": sparse_guest(200 if seconds < 1 else 1000),
            "kernel handlers": _sync(lambda: kernel_handler.service(details), s),  # type: ignore[arg-type]
            "plugin handlers": _sync(lambda: plugin_handler.service(details), s),  # type: ignore[arg-type]
            "intercept": await per_call_async(lambda: metrics.intercept_service(continuation, details), s),  # type: ignore[arg-type]
            "continuation": await per_call_async(lambda: continuation(details), s),
            "measured": await per_call_async(lambda: wrapped(REQUEST, no_context), s),
            "no behaviour": await per_call_async(lambda: no_behavior(REQUEST, no_context), s),
            "request_id": _sync(lambda: request_id(rid), s),
            "limit_address": await per_call_async(lambda: core.limit_address("127.0.0.1"), s),
            "admit": _sync(lambda: core._admit(entry.public, entry.roles, ""), s),
            "limit_call": await per_call_async(
                lambda: core._limit_call(entry.rate_limit, "hello x", principal, "127.0.0.1", "method"), s
            ),
            "context": _sync(core_context, s),
            "decode": _sync(lambda: decode_message(method, REQUEST), s),
            "envelope": _sync(lambda: grpc_envelope(method.full_name, message, metadata, rid, "", None), s),
            "guest": _sync(lambda: instance.call(entry.handler, envelope, context), s),
            "pool": await per_call_async(pool_call, s),
            "hop": await per_call_async(hop, s),
            "parse": _sync(lambda: parse_grpc_output(plugin.name, output), s),
            "encode": _sync(lambda: method.encode(reply), s),
            "call_grpc": await per_call_async(call_grpc, s),
            "native": _sync(native, s),
        }
    finally:
        await server.stop(0)
        kernel.close()
        shutil.rmtree(workdir, ignore_errors=True)
    inner = ("limit_call", "context", "decode", "envelope", "pool", "parse", "encode")
    steps = [
        Step("generic handlers: KernelMethods + PluginMethods.service", t["kernel handlers"] + t["plugin handlers"]),
        Step(
            "metrics interceptor: intercept_service + measured wrapper",
            max(0.0, t["intercept"] - t["continuation"]) + max(0.0, t["measured"] - t["no behaviour"]),
        ),
        Step("metadata: metadata_of (real context) + request_id", probed["metadata_of"] + t["request_id"]),
        Step("trailing metadata: set_trailing_metadata (real context)", probed["set_trailing_metadata"]),
        Step("peer: context.peer() + split (real context)", probed["peer"]),
        Step("per-address limit: limit_address (off by default)", t["limit_address"]),
        Step("auth: _admit (authenticate '' + RBAC)", t["admit"]),
        Step("method rate limit: _limit_call (none set)", t["limit_call"]),
        Step("call context + log scope: _context, enter/leave", t["context"]),
        Step("transcode in: decode_message (wire -> proto3 JSON)", t["decode"]),
        Step("envelope JSON: grpc_envelope (msgspec)", t["envelope"]),
        Step("pool: InstancePool.call less the guest (inline: no slot, no hop)", max(0.0, t["pool"] - t["guest"])),
        Step("  for scale: a bare thread hop (submit + wrap_future)", t["hop"], part_of_total=False),
        Step("guest: instance.call on this thread (hello)", t["guest"]),
        Step("  the same guest call made once every ~1 ms (median)", t["sparse guest"], part_of_total=False),
        Step("reply JSON: parse_grpc_output", t["parse"]),
        Step("transcode out: RpcMethod.encode (proto3 JSON -> wire)", t["encode"]),
        Step(
            "call_grpc remainder: in-flight count, try/finally, scope",
            max(0.0, t["call_grpc"] - sum(t[k] for k in inner) - t["admit"]),
        ),
        Step("for scale: the native handler's own work (parse+build+serialize)", t["native"], part_of_total=False),
    ]
    how = (
        f"call_grpc whole {t['call_grpc']:.1f} us (incl. pool {t['pool']:.1f} us); "
        f"invocation_metadata() alone {probed['invocation_metadata']:.2f} us; "
        f"client metadata keys: {', '.join(k for k, _ in wire_metadata)}"
    )
    return steps, how


def metadata_of_pairs(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """metadata_of's result for these pairs (the envelope's metadata), without a context."""
    out: dict[str, str] = {}
    for key, value in pairs:
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def table(steps: list[Step]) -> tuple[str, float]:
    total = sum(s.us for s in steps if s.part_of_total)
    width = max(len(s.name) for s in steps)
    lines = [f"{'step':{width}}  {'us/call':>8}  {'share':>6}", f"{'-' * width}  {'-' * 8}  {'-' * 6}"]
    for s in steps:
        share = f"{s.us / total * 100:5.1f}%" if s.part_of_total else "   (-)"
        lines.append(f"{s.name:{width}}  {s.us:8.1f}  {share:>6}")
    lines.append(f"{'total (sum of the steps above, without (-) lines)':{width}}  {total:8.1f}  100.0%")
    return "\n".join(lines), total


def run(quick: bool = False, seconds: float = 2.0) -> list[Row]:
    import uvloop

    steps, how = uvloop.run(measure(0.5 if quick else seconds))
    return report("grpc-cost", steps, how, "the kernel's", "kernel total per call (sum)")


def report(bench: str, steps: list[Step], how: str, whose: str, total_subject: str) -> list[Row]:
    """Print the steps' table and ``how``; the runner's rows, each step's share of ``whose`` total."""
    text, total = table(steps)
    print(text, flush=True)
    print(how, flush=True)
    rows = [
        Row(bench, s.name.strip(), s.us, "us", note=f"{s.us / total * 100:.1f}% of {whose}" if s.part_of_total else "")
        for s in steps
    ]
    rows.append(Row(bench, total_subject, total, "us", note=how))
    return rows


def main() -> int:
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
