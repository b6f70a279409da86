"""gRPC: a plugin method vs a native grpcio handler doing the same work, same server, same run.

    .venv/bin/python bench/grpc_bench.py [--seconds 6] [--rounds 3] [--concurrency 32]

The server process runs Arcana's real gRPC edge (``start_grpc_server``) with
the `hello` plugin's greeter.v1.Greeter/SayHello, and adds one more generic
handler, ``/bench.v1.Native/SayHello``, that parses the same HelloRequest and
builds the same HelloReply in Python (no plugin, no thread hop). A client
process drives both over one channel per worker with grpc.aio, alternating
plugin/native rounds; p50 at one outstanding call is measured separately.
Prints calls/s, p50/p99 and the ratio plugin/native. Never used by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_METHOD = "/greeter.v1.Greeter/SayHello"
NATIVE_METHOD = "/bench.v1.Native/SayHello"
REQUEST = b"\x0a\x05bench"  # HelloRequest{name="bench"}


async def serve(port: int, plugins: Path) -> None:
    import grpc

    from arcana.config import load_config
    from arcana.edge.grpc import start_grpc_server
    from arcana.kernel import Kernel
    from common import isolated_env

    env = {
        "ARCANA_PLUGINS__DIR": str(plugins),
        "ARCANA_PLUGINS__WATCH": "false",
        "ARCANA_LOGGING__LEVEL": "warning",
        "ARCANA_SERVER__GRPC_PORT": str(port),
        **isolated_env(plugins.parent),  # the kernel's SQLite file beside the plugin folder, in the temp dir
    }
    kernel = Kernel(load_config(None, environ=env))
    kernel.start()
    server = await start_grpc_server(kernel)
    await kernel.load_all()
    method = kernel.registry.snapshot.rpc[PLUGIN_METHOD].method  # the same message classes the plugin path uses

    async def native(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        name = method.decode(request).get("name", "")
        return method.encode({"message": f"Hello, {name}!"})

    class Native(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return grpc.unary_unary_rpc_method_handler(native) if details.method == NATIVE_METHOD else None  # type: ignore[attr-defined]

    server.add_generic_rpc_handlers((Native(),))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1)
    kernel.close()


async def drive(address: str, method: str, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    import grpc

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(channel: grpc.aio.Channel) -> None:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call(REQUEST)
            latencies.append(time.perf_counter() - start)

    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    began = time.perf_counter()
    await asyncio.gather(*(worker(channels[i % len(channels)]) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    return len(latencies) / elapsed, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def client(address: str, seconds: float, rounds: int, concurrency: int) -> None:
    import uvloop

    results: dict[str, list[float]] = {"plugin": [], "native": []}
    single: dict[str, list[float]] = {"plugin": [], "native": []}
    for method in (PLUGIN_METHOD, NATIVE_METHOD):  # warm-up
        uvloop.run(drive(address, method, 1.0, concurrency))
    for _ in range(rounds):
        for name, method in (("plugin", PLUGIN_METHOD), ("native", NATIVE_METHOD)):
            rate, _ = uvloop.run(drive(address, method, seconds, concurrency))
            results[name].append(rate)
            _, lat = uvloop.run(drive(address, method, min(seconds, 2.0), 1))
            single[name] += lat
    rate_head = f"calls/s (median of {rounds})"
    print(f"{'method':8} {rate_head:>26} {'p50 @1 conn (ms)':>18} {'p99 @1 conn (ms)':>18}")
    for name in ("plugin", "native"):
        rate = statistics.median(results[name])
        print(f"{name:8} {rate:>26,.0f} {pct(single[name], 0.5):>18.3f} {pct(single[name], 0.99):>18.3f}")
    ratio = statistics.median(results["plugin"]) / statistics.median(results["native"])
    print(
        f"ratio plugin/native calls/s: {ratio:.2f}  "
        f"(target >= 0.95; concurrency {concurrency}, {rounds} rounds of {seconds}s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plugins", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve, args.plugins))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="arcana-bench-grpc-") as tmp:
        plugins = Path(tmp) / "plugins"
        plugins.mkdir()
        shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", plugins / "hello.wasm")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), "--plugins", str(plugins)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            client(f"127.0.0.1:{port}", args.seconds, args.rounds, args.concurrency)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


if __name__ == "__main__":
    main()
