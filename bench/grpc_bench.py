"""gRPC: a plugin method vs a plain native grpc.aio handler, same server, same run, loaded by h2load.

    .venv/bin/python bench/grpc_bench.py                       # 3 rounds x 5 s per subject, about 2 minutes
    .venv/bin/python bench/grpc_bench.py --rounds 1 --seconds 2
    .venv/bin/python bench/run.py --only grpc                  # the same plus the per-call breakdown

One server process runs Arcana's real gRPC edge (``start_grpc_server``: the
metrics interceptor, the kernel's services, the plugin methods) with the
`hello` plugin serving ``/greeter.v1.Greeter/SayHello`` (subject **plugin**: the
kernel transcodes protobuf <-> proto3 JSON, the AssemblyScript guest parses JSON)
and the `rawgreeter` bench plugin (bench/plugins/rawgreeter, Zig, built with
``arcana_sdk.build.build_plugin`` and cached in bench/.cache/ by source hash)
serving ``/rawgreeter.v1.Greeter/SayHello`` with ``abi = "raw"`` (subject
**plugin raw**: the guest reads the HelloRequest's wire bytes and writes the
HelloReply's, no transcoding), and adds, on the same ``grpc.aio`` server (so
behind the same interceptor and generic handlers):

- **native**: ``/native.greeter.v1.Greeter/SayHello``, the handler a user
  writes with grpcio: ``request_deserializer=HelloRequest.FromString``,
  ``response_serializer=HelloReply.SerializeToString`` and
  ``return HelloReply(message=f"Hello, {request.name}!")`` (the message
  classes are the ones built from the plugin's own descriptors);
- **native+json**: ``/bench.v1.Native/SayHello``, the old baseline: the same
  reply built through the kernel's proto3-JSON transcoding both ways.

The load comes from ``h2load`` (Debian's ``nghttp2-client``), outside the
Python process, speaking gRPC over h2c: a POST of one framed HelloRequest
(``00`` + 4-byte big-endian length + message) with ``content-type:
application/grpc`` and ``te: trailers``. Subjects alternate within each round
(order rotated every round) at 16 and 32 connections (one stream each), then
one connection for latency (mean and p50 from h2load's per-request log).

What h2load counts: an HTTP/2 response with a 2xx ``:status`` is "succeeded".
gRPC answers every call, failed or not, with ``:status 200`` and puts the
outcome in ``grpc-status`` (trailers), which h2load does not read; so the
server's own ``arcana_grpc_requests_total`` counter (by method and code) is
read before and after every load and any non-OK call is reported as an error.
The run starts by proving that: a load on an unknown method and one with a
malformed body are all "succeeded" for h2load and all non-OK on the server.
Without h2load the Python grpc.aio client below loads the server instead (a
note says so). Never used by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH, CACHE, PYTHON, ROOT, Row, free_port, median, percentile, print_rows

PLUGIN_METHOD = "/greeter.v1.Greeter/SayHello"
RAW_METHOD = "/rawgreeter.v1.Greeter/SayHello"
RAW_SRC = BENCH / "plugins" / "rawgreeter"
NATIVE_METHOD = "/native.greeter.v1.Greeter/SayHello"
JSON_METHOD = "/bench.v1.Native/SayHello"
STATS_METHOD = "/bench.v1.Stats/Codes"


@dataclass(frozen=True)
class Subject:
    name: str
    server: str  # "main", or the what-if variant whose server process serves it
    method: str
    baseline: str = "native"  # the subject its calls/s are divided by (same server process)
    plugin: str = "hello"  # whose InstancePool.call time is read (plugin subjects)


SUBJECTS = (
    Subject("plugin", "main", PLUGIN_METHOD),
    Subject("plugin raw", "main", RAW_METHOD, plugin="rawgreeter"),
    Subject("native", "main", NATIVE_METHOD, ""),
    Subject("native+json", "main", JSON_METHOD),
)
WHAT_IF = (
    Subject("plugin, inline (what-if)", "inline", PLUGIN_METHOD, "native, inline server"),
    Subject("native, inline server", "inline", NATIVE_METHOD, ""),
)
REQUEST = b"\x0a\x05bench"  # HelloRequest{name="bench"}
REPLY = b"\x0a\x0dHello, bench!"  # HelloReply{message="Hello, bench!"}
CONNECTIONS = (16, 32)
TARGET = 0.95


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _source_hash(*dirs: Path) -> str:
    digest = hashlib.sha256()
    for d in dirs:
        for path in sorted(d.rglob("*")):
            if path.is_file() and path.suffix in {".zig", ".toml", ".proto"} and ".zig-cache" not in path.parts:
                digest.update(str(path.relative_to(d)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def rawgreeter_wasm() -> Path:
    """bench/plugins/rawgreeter built (guest and descriptors), cached in bench/.cache by a hash of its sources."""
    from arcana_sdk.build import build_plugin

    target = CACHE / f"rawgreeter-{_source_hash(RAW_SRC, ROOT / 'sdk' / 'zig')}.wasm"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = build_plugin(RAW_SRC, target.with_suffix(".tmp"))
        tmp.replace(target)
    return target


# --------------------------------------------------------------------------- the server process


async def serve(port: int, plugins: Path) -> None:
    import grpc
    from prometheus_client import REGISTRY

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
    method = kernel.registry.snapshot.rpc[PLUGIN_METHOD].method
    HelloRequest, HelloReply = method.input_type, method.output_type  # named as generated code names them

    # The plain handler, as grpcio's generated add_GreeterServicer_to_server would register it.
    async def say_hello(request, context):  # type: ignore[no-untyped-def]
        return HelloReply(message=f"Hello, {request.name}!")

    # The old baseline: the same reply through proto3 JSON both ways, as the plugin path transcodes.
    async def say_hello_json(request: bytes, context: object) -> bytes:
        name = method.decode(request).get("name", "")
        return method.encode({"message": f"Hello, {name}!"})

    async def codes(request: bytes, context: object) -> bytes:
        counts = {
            f"{sample.labels['method']} {sample.labels['code']}": sample.value
            for family in REGISTRY.collect()
            if family.name == "arcana_grpc_requests"
            for sample in family.samples
            if sample.name == "arcana_grpc_requests_total"
        }
        # Time inside the handler (the interceptor's histogram) and inside InstancePool.call, as sums and counts.
        for family in REGISTRY.collect():
            if family.name in ("arcana_grpc_request_duration_seconds", "arcana_plugin_call_seconds"):
                for sample in family.samples:
                    kind = sample.name.rsplit("_", 1)[-1]
                    if kind in ("sum", "count"):
                        where = sample.labels.get("method") or "pool:" + sample.labels.get("plugin", "")
                        counts[f"{kind} {where}"] = sample.value
            # Which plugin calls ran inline on the event loop (runtime/inline.py) rather than on the pool's threads.
            if family.name == "arcana_plugin_inline_calls":
                for sample in family.samples:
                    if sample.name == "arcana_plugin_inline_calls_total":
                        counts[f"inline pool:{sample.labels['plugin']}"] = sample.value
        return json.dumps(counts).encode()

    def unary(fn, **kw):  # type: ignore[no-untyped-def]
        return grpc.unary_unary_rpc_method_handler(fn, **kw)

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "native.greeter.v1.Greeter",
                {
                    "SayHello": unary(
                        say_hello,
                        request_deserializer=HelloRequest.FromString,
                        response_serializer=HelloReply.SerializeToString,
                    )
                },
            ),
            grpc.method_handlers_generic_handler("bench.v1.Native", {"SayHello": unary(say_hello_json)}),
            grpc.method_handlers_generic_handler("bench.v1.Stats", {"Codes": unary(codes)}),
        )
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1)
    kernel.close()


def patch_inline() -> None:
    """What-if (bench only): ``InstancePool.call`` runs the guest on the event-loop thread.

    No slot, no thread hop, no ``wait_for`` guard, no pool metrics; Extism's own timeout still applies.
    It shows what the thread hop and the pool's bookkeeping cost on the gRPC path under real load.
    """
    from arcana.executor import InstancePool

    async def inline(self: InstancePool, handler: str, data: bytes, context: object) -> bytes:
        try:
            instance = self._idle.pop()[0]
        except IndexError:
            instance = self._compiled.instantiate()
        output = instance.call(handler, data, context)  # type: ignore[arg-type]
        self._idle.append((instance, time.monotonic()))
        return output

    InstancePool.call = inline  # type: ignore[method-assign]


# --------------------------------------------------------------------------- the load


@dataclass
class Load:
    rps: float
    calls: int  # what the load tool counted as succeeded
    ok: int  # what the server answered with grpc-status OK
    errors: int  # the server's non-OK answers, plus the tool's failed/errored/timed-out requests
    mean_ms: float
    p50_ms: float
    tool: str
    handler_us: float = float("nan")  # mean time inside the handler, server side (the metrics interceptor's)
    pool_us: float = float("nan")  # mean time inside InstancePool.call (plugin subjects)
    inline: float = float("nan")  # the share of those calls that ran inline on the event loop


def _mean_us(after: dict[str, float], before: dict[str, float], where: str) -> float:
    count = after.get(f"count {where}", 0) - before.get(f"count {where}", 0)
    total = after.get(f"sum {where}", 0) - before.get(f"sum {where}", 0)
    return total / count * 1e6 if count else float("nan")


def unary_call(address: str, method: str, request: bytes) -> bytes:
    import grpc

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(request, timeout=10)  # type: ignore[no-any-return]


def server_codes(address: str) -> dict[str, float]:
    return json.loads(unary_call(address, STATS_METHOD, b""))  # type: ignore[no-any-return]


def _delta(after: dict[str, float], before: dict[str, float], method: str) -> tuple[int, int, int]:
    """(OK, CANCELLED, other) calls answered on ``method`` between two readings of the server's counter.

    CANCELLED is counted apart: h2load closes its connections when the time is up, and the calls still
    in flight then (at most one per connection) end cancelled; that is the load stopping, not a failure.
    """
    counts = {"OK": 0, "CANCELLED": 0, "other": 0}
    for key, value in after.items():
        name, _, code = key.rpartition(" ")
        if name == method:
            counts[code if code in counts else "other"] += int(value - before.get(key, 0))
    return counts["OK"], counts["CANCELLED"], counts["other"]


def _h2load_field(out: str, pattern: str) -> float:
    m = re.search(pattern, out)
    if m is None:
        raise RuntimeError(f"h2load output without {pattern!r}:\n{out}")
    return float(m.group(1))


def run_h2load(
    port: int, method: str, body: Path, *, connections: int, seconds: float | None = None, n: int | None = None
) -> tuple[float, int, int, list[float]]:
    """(calls/s, succeeded, failed+errored+timeout, per-request latencies in ms) from one h2load run."""
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        argv = ["h2load", "-t1", f"-c{connections}", "-m1", "-d", str(body), f"--log-file={log.name}"]
        argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        argv += [f"-D{max(1, round(seconds))}", "--warm-up-time=300ms"] if seconds is not None else [f"-n{n}"]
        argv.append(f"http://127.0.0.1:{port}{method}")
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        latencies = [int(line.split("\t")[2]) / 1000 for line in Path(log.name).read_text().splitlines() if line]
    rps = _h2load_field(out, r"finished in [\d.]+m?s, ([\d.]+) req/s")
    succeeded = int(_h2load_field(out, r"(\d+) succeeded"))
    failed = sum(int(_h2load_field(out, rf"(\d+) {what}")) for what in ("failed", "errored", "timeout"))
    return rps, succeeded, failed, latencies


def h2load_load(address: str, port: int, subject: Subject, body: Path, connections: int, seconds: float) -> Load:
    method = subject.method
    before = server_codes(address)
    rps, succeeded, failed, latencies = run_h2load(port, method, body, connections=connections, seconds=seconds)
    after = server_codes(address)
    ok, cancelled, bad = _delta(after, before, method)
    if cancelled > connections:
        bad += cancelled - connections  # more than the calls in flight at the stop: real cancellations
    mean = statistics.fmean(latencies) if latencies else float("nan")
    where = f"pool:{subject.plugin}"
    handler, pool = _mean_us(after, before, method), _mean_us(after, before, where)
    calls = after.get(f"count {where}", 0) - before.get(f"count {where}", 0)
    inline = (after.get(f"inline {where}", 0) - before.get(f"inline {where}", 0)) / calls if calls else float("nan")
    return Load(rps, succeeded, ok, bad + failed, mean, percentile(latencies, 50), "h2load", handler, pool, inline)


async def _drive(address: str, method: str, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    import grpc

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(channel: grpc.aio.Channel) -> None:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call(REQUEST)
            latencies.append((time.perf_counter() - start) * 1000)

    channels = [grpc.aio.insecure_channel(address) for _ in range(min(concurrency, 4))]
    began = time.perf_counter()
    await asyncio.gather(*(worker(channels[i % len(channels)]) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    return len(latencies) / elapsed, latencies


def python_load(address: str, method: str, connections: int, seconds: float) -> Load:
    """The fallback without h2load: grpc.aio in this process (4 channels); every counted call succeeded."""
    import uvloop

    rps, latencies = uvloop.run(_drive(address, method, seconds, connections))
    return Load(
        rps, len(latencies), len(latencies), 0, statistics.fmean(latencies), percentile(latencies, 50), "grpc.aio"
    )


def check_failures_are_seen(address: str, port: int, body: Path, bad_body: Path) -> str:
    """What h2load makes of failed gRPC calls, against what the server answered; printed and returned.

    Not on the raw-ABI method: there a malformed request fails in the guest, a plugin failure, and 50 of
    them open the plugin's circuit breaker, which would refuse the subject's load that follows.
    """
    lines = []
    for what, method, payload in (
        ("unknown method", "/greeter.v1.Greeter/NoSuchMethod", body),
        ("malformed HelloRequest", PLUGIN_METHOD, bad_body),
    ):
        before = server_codes(address)
        _, succeeded, failed, _ = run_h2load(port, method, payload, connections=1, n=50)
        after = server_codes(address)
        key = "<unknown>" if what == "unknown method" else method
        ok, cancelled, bad = _delta(after, before, key)
        bad += cancelled
        lines.append(
            f"{what}: h2load counted {succeeded} succeeded, {failed} failed; the server answered {ok} OK, {bad} non-OK"
        )
    text = "; ".join(lines)
    print("failure check: " + text, flush=True)
    return text


@dataclass
class Results:
    rate: dict[tuple[str, int], list[float]]
    mean_ms: dict[str, list[float]]
    p50_ms: dict[str, list[float]]
    errors: int
    tool: str
    check: str
    handler_us: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    pool_us: dict[tuple[str, int], list[float]] = field(default_factory=dict)


def measure(
    ports: dict[str, int], subjects: tuple[Subject, ...], seconds: float, rounds: int, workdir: Path
) -> Results:
    port = ports["main"]
    address = f"127.0.0.1:{port}"
    body, bad_body = workdir / "hello.bin", workdir / "bad.bin"
    body.write_bytes(frame(REQUEST))
    bad_body.write_bytes(frame(b"\x0a\xff"))  # a length running past the end: not a HelloRequest
    for subject in subjects:  # the same answer from every subject
        assert unary_call(f"127.0.0.1:{ports[subject.server]}", subject.method, REQUEST) == REPLY, subject
    h2load = shutil.which("h2load") is not None
    check = ""
    if h2load:
        check = check_failures_are_seen(address, port, body, bad_body)
    else:
        print("note: no h2load on the PATH (apt-get install -y nghttp2-client): loading with grpc.aio instead")

    def one(subject: Subject, connections: int, secs: float) -> Load:
        at = ports[subject.server]
        if h2load:
            return h2load_load(f"127.0.0.1:{at}", at, subject, body, connections, secs)
        return python_load(f"127.0.0.1:{at}", subject.method, connections, secs)

    for subject in subjects:  # warm-up: pools filled, code paths hot
        one(subject, CONNECTIONS[0], 1.0)
    res = Results({}, {}, {}, 0, "h2load" if h2load else "grpc.aio", check)
    for n in range(rounds):
        order = subjects[n % len(subjects) :] + subjects[: n % len(subjects)]
        for connections in (*CONNECTIONS, 1):
            for subject in order:
                name = subject.name
                got = one(subject, connections, seconds if connections > 1 else min(seconds, 3.0))
                res.errors += got.errors
                res.handler_us.setdefault((name, connections), []).append(got.handler_us)
                res.pool_us.setdefault((name, connections), []).append(got.pool_us)
                if connections == 1:
                    res.mean_ms.setdefault(name, []).append(got.mean_ms)
                    res.p50_ms.setdefault(name, []).append(got.p50_ms)
                else:
                    res.rate.setdefault((name, connections), []).append(got.rps)
                pool = (
                    f", pool.call {got.pool_us:.0f} us ({got.inline:.0%} inline)" if got.pool_us == got.pool_us else ""
                )
                print(
                    f"round {n + 1}: {name:24} -c{connections:<2} {got.rps:>8,.0f} calls/s  mean {got.mean_ms:.3f} ms"
                    f"  p50 {got.p50_ms:.3f} ms  handler {got.handler_us:.0f} us{pool}"
                    f"  ({got.calls} counted, {got.ok} OK, {got.errors} errors)",
                    flush=True,
                )
    return res


def _pool_note(res: Results, name: str, connections: int) -> str:
    """ ", pool.call N us" for a plugin subject (the median over rounds), "" for the others."""
    pool = [us for us in res.pool_us.get((name, connections), []) if us == us]  # NaN: not a plugin subject
    return f", pool.call {median(pool):.0f} us" if pool else ""


def rows(res: Results, subjects: tuple[Subject, ...], seconds: float, rounds: int) -> list[Row]:
    out: list[Row] = []
    how = f"{res.tool} -t1 -m1, {rounds} rounds x {seconds:g} s, alternating; errors {res.errors}"
    for connections in CONNECTIONS:
        for subject in subjects:
            name, base = subject.name, subject.baseline
            rates = res.rate[(name, connections)]
            ratios = [a / b for a, b in zip(rates, res.rate[(base, connections)], strict=True)] if base else []
            is_plugin = name == "plugin"
            out.append(
                Row(
                    "grpc",
                    f"{name} -c{connections}",
                    median(rates),
                    "calls/s",
                    baseline=f"{base} -c{connections}" if base else "",
                    ratio=median(ratios) if ratios else None,
                    target=f">= {TARGET}x" if is_plugin and connections == 32 else "",
                    ok=median(ratios) >= TARGET if is_plugin and connections == 32 else None,
                    note=f"in handler {median(res.handler_us[(name, connections)]):.0f} us"
                    + _pool_note(res, name, connections)
                    + "; "
                    + ("per-round ratios " + ", ".join(f"{r:.2f}" for r in ratios) if ratios else how),
                    rounds=ratios,
                )
            )
    for subject in subjects:
        name, base = subject.name, subject.baseline
        p50 = median(res.p50_ms[name])
        out.append(
            Row(
                "grpc",
                f"{name} -c1 p50 (mean {median(res.mean_ms[name]):.3f})",
                p50,
                "ms",
                baseline=f"{base} -c1 p50" if base else "",
                ratio=p50 / median(res.p50_ms[base]) if base else None,
                ratio_label="x latency" if base else "",
                note=f"in handler {median(res.handler_us[(name, 1)]):.0f} us"
                + _pool_note(res, name, 1)
                + " (server side)",
                target="< 1 ms" if name == "plugin" else "",
                ok=p50 < 1.0 if name == "plugin" else None,
            )
        )
    return out


def _server(variant: str, workdir: Path, rawgreeter: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    plugins = workdir / f"plugins-{variant}"
    plugins.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", plugins / "hello.wasm")
    shutil.copyfile(rawgreeter, plugins / "rawgreeter.wasm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    argv = [PYTHON, __file__, "--serve", str(port), "--plugins", str(plugins), "--variant", variant]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", f"the {variant} server did not start"
    return proc, port


def run(
    quick: bool = False, logdir: Path | None = None, rounds: int = 3, seconds: float = 5.0, what_if: bool = False
) -> list[Row]:
    if quick:
        rounds, seconds = 1, 2.0
    workdir = Path(tempfile.mkdtemp(prefix="arcana-bench-grpc-", dir=logdir))
    subjects = SUBJECTS + (WHAT_IF if what_if else ())
    rawgreeter = rawgreeter_wasm()
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    try:
        for variant in dict.fromkeys(s.server for s in subjects):
            proc, ports[variant] = _server(variant, workdir, rawgreeter)
            procs.append(proc)
        res = measure(ports, subjects, seconds, rounds, workdir)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    got = rows(res, subjects, seconds, rounds)
    if res.check:
        next(
            row for row in got if row.subject.startswith("native ")
        ).note += "; h2load counts HTTP 200s, errors come from the server's grpc-status counter"
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--what-if", action="store_true", help="also measure the plugin with its guest run inline")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plugins", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="main", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        if args.variant == "inline":
            patch_inline()
        uvloop.run(serve(args.serve, args.plugins))
        return
    print_rows(run(rounds=args.rounds, seconds=args.seconds, what_if=args.what_if))


if __name__ == "__main__":
    main()
