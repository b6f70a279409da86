"""The cost of the resilience and observability edge: `hello` req/s with it on vs off, same run.

    .venv/bin/python bench/edge_cost.py                    # 5 rounds x 5 s per side, about a minute
    .venv/bin/python bench/edge_cost.py --rounds 1 --seconds 2      # a quick look
    .venv/bin/python bench/edge_cost.py --tracing-exporter none     # tracing's switch left out
    .venv/bin/python bench/edge_cost.py --sample-ratio 0.01         # tracing as a busy deployment would sample

Two server processes (bench/serve_bench_app.py: the real kernel and REST edge,
uvicorn + uvloop + httptools) serve plugins/hello/hello.wasm side by side:

- **on**: the route under a manifest ``rate_limit`` and ``server.per_address_limit``,
  both far too high to refuse anything (so every request pays for two limiter
  checks and carries the RateLimit-* fields), and tracing on
  (``tracing.exporter: otlp`` to a local OTLP/HTTP sink run here, a collector
  stand-in that answers 200 and keeps nothing, at ``--sample-ratio``);
- **off**: the defaults: no rate limit anywhere, no tracing.

Both are loaded alternately (wrk -t2 -c32, or bench/pyload.py), the order
flipped every round, and the median of the per-round ratios on/off is the
edge's cost, in req/s and in the server's own CPU time per request (read
from /proc before and after each round): on a machine shared with other
jobs req/s swings by tens of percent from round to round, CPU per request
much less, so the latter is the figure to trust there. Metrics cannot be switched off (the plugin-call counters and
histogram are always recorded), so both sides pay for them: what is measured
is rate limiting plus tracing on top of metrics. A kernel without a
``tracing`` config section (before tracing lands) is measured without it, and
the run says so.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import BENCH, PYTHON, ROOT, Load, Row, Server, free_port, load, median, print_rows

PATH = "/api/v1/hello/x"
CONNECTIONS, THREADS = 32, 2
# Far above any load this bench can make, so nothing is ever refused: the check's cost, not a 429's.
NEVER = "1000000000/second"
LIMITED_HELLO = f"""[plugin]
name = "hello"
version = "1.0.0"
[limits]
memory_mb = 16
timeout_ms = 1000
max_concurrency = 8
[[route]]
method = "GET"
path = "/api/v1/hello/{{name}}"
handler = "hello"
public = true
rate_limit = "{NEVER}"
"""


def tracing_known(exporter: str) -> str | None:
    """None when the kernel accepts ``tracing.exporter``; else why not (the config's own message)."""
    from arcana.config import load_config
    from arcana.errors import ConfigError

    try:
        load_config(None, environ={"ARCANA_TRACING__EXPORTER": exporter})
    except ConfigError as exc:
        return str(exc)
    return None


def server(port: int, plugins: Path, workdir: Path, sets: list[str], log: Path) -> Server:
    argv = [PYTHON, str(BENCH / "serve_bench_app.py"), "--port", str(port), "--plugins", str(plugins)]
    argv += ["--workdir", str(workdir)]
    for item in sets:
        argv += ["--set", item]
    return Server(argv, port, "/bench/native/hello/ready", log)


def ratelimit_fields(port: int) -> dict[str, str]:
    """The RateLimit-* fields of one answer: proof that the limits are (or are not) on."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", PATH)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{PATH} answered {response.status} on port {port}")
        return {k.lower(): v for k, v in response.getheaders() if k.lower().startswith("ratelimit")}
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(servers: dict[str, Server], rounds: int, seconds: float) -> dict[str, list[Round]]:
    got: dict[str, list[Round]] = {"on": [], "off": []}
    for r in range(rounds):
        for side in ("on", "off") if r % 2 == 0 else ("off", "on"):
            pid = servers[side].proc.pid  # type: ignore[union-attr]
            before = cpu_seconds(pid)
            loaded = load(servers[side].port, PATH, connections=CONNECTIONS, seconds=seconds, threads=THREADS)
            used = cpu_seconds(pid) - before
            got[side].append(Round(loaded, used * 1e6 / max(1, loaded.requests)))
    return got


class OtlpSink:
    """A collector stand-in: accepts OTLP/HTTP trace exports (answers 200, keeps nothing), on a thread here.

    The server pays for what a real deployment pays for (building spans, encoding batches,
    posting them); the collector's own work is not the server's and is not measured.
    """

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.bytes += len(self.rfile.read(int(self.headers.get("content-length", 0))))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()


@dataclass(frozen=True)
class Round:
    load: Load
    # The server's own CPU time per request answered: other jobs on the machine slow a
    # round's req/s down far more than they change this.
    cpu_us: float


def rows(got: dict[str, list[Round]], on_note: str) -> list[Row]:
    rps = {side: [x.load.rps for x in rounds] for side, rounds in got.items()}
    cpu = {side: [x.cpu_us for x in rounds] for side, rounds in got.items()}
    ratio = median(a / b for a, b in zip(rps["on"], rps["off"], strict=True))
    cpu_ratio = median(a / b for a, b in zip(cpu["on"], cpu["off"], strict=True))
    errors = {side: sum(x.load.errors for x in rounds) for side, rounds in got.items()}

    def note(side: str) -> str:
        loads = [x.load for x in got[side]]
        p50, p99 = median(x.p50_ms for x in loads), median(x.p99_ms for x in loads)
        text = f"{loads[0].tool}; p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        return text + (f"; {errors[side]} errors" if errors[side] else "")

    return [
        Row("edge cost", f"hello, edge off, {CONNECTIONS} conns", median(rps["off"]), "req/s", "(baseline)",
            note=note("off") + "; metrics on (cannot be switched off)", rounds=rps["off"]),
        Row("edge cost", f"hello, edge on, {CONNECTIONS} conns", median(rps["on"]), "req/s", "edge off", ratio,
            "x off", target=">= 0.95 x off", ok=ratio >= 0.95, note=note("on") + "; " + on_note, rounds=rps["on"]),
        Row("edge cost", "server CPU per request, edge off", median(cpu["off"]), "us", "(baseline)",
            note="user + system, all threads", rounds=cpu["off"]),
        Row("edge cost", "server CPU per request, edge on", median(cpu["on"]), "us", "edge off", cpu_ratio, "x off",
            target="<= 1.05 x off", ok=cpu_ratio <= 1.05, note="1 / this = the req/s ratio a free machine would see",
            rounds=cpu["on"]),
    ]  # fmt: skip


# ---------------------------------------------------------------- in process: the edge without HTTP or network


def child(plugins: Path, workdir: Path, sets: list[str]) -> None:
    """One kernel's REST app, called in process: reads "N" lines, answers each with CPU us per call of N calls."""
    import uvloop

    from arcana.config import load_config
    from arcana.edge.rest import create_rest_app
    from arcana.kernel import Kernel

    env = {"ARCANA_PLUGINS__DIR": str(plugins), "ARCANA_PLUGINS__WATCH": "false", "ARCANA_LOGGING__LEVEL": "warning"}
    env["ARCANA_DATABASE__URL"] = f"sqlite:///{workdir / 'arcana.db'}"
    for item in sets:
        key, _, value = item.partition("=")
        env["ARCANA_" + key.upper().replace(".", "__")] = value
    scope = {"type": "http", "method": "GET", "path": PATH, "raw_path": PATH.encode(), "query_string": b""}
    scope |= {"headers": [(b"host", b"bench")], "client": ("127.0.0.1", 40000), "http_version": "1.1"}
    answers = sys.stdout
    sys.stdout = open(os.devnull, "w")

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main() -> None:
        kernel = Kernel(load_config(None, environ=env))
        kernel.start()
        await kernel.load_all()
        app = create_rest_app(kernel)
        status: list[int] = []

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))  # type: ignore[call-overload]

        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            count = int(line)
            status.clear()
            started = time.process_time()
            for _ in range(count):
                await app(dict(scope), receive, send)  # type: ignore[arg-type]
            used = time.process_time() - started
            if status != [200] * count:
                raise RuntimeError(f"in-process calls answered {sorted(set(status))}, expected 200")
            print(f"{used * 1e6 / count:.3f}", file=answers, flush=True)
        kernel.close()

    uvloop.run(main())


def in_process(
    folders: dict[str, Path], sets: dict[str, list[str]], batches: int, calls: int
) -> dict[str, list[float]]:
    """CPU us per in-process call of each side, in short batches alternating between two child processes."""
    children = {}
    for side in ("on", "off"):
        argv = [PYTHON, __file__, "--child", side, "--plugins", str(folders[side] / "plugins")]
        argv += ["--workdir", str(folders[side])] + [x for item in sets[side] for x in ("--set", item)]
        children[side] = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    got: dict[str, list[float]] = {"on": [], "off": []}
    try:

        def batch(side: str, count: int) -> float:
            proc = children[side]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{count}\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"the in-process {side} child died (exit {proc.wait()})")
            return float(answer)

        for side in ("on", "off"):
            batch(side, calls)  # warm-up
        for b in range(batches):
            for side in ("on", "off") if b % 2 == 0 else ("off", "on"):
                got[side].append(batch(side, calls))
    finally:
        for proc in children.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return got


def limit_checks_us(calls: int = 20_000, repeats: int = 5) -> float:
    """What the rate limiting of one "on" request costs alone (both checks, the RateLimit fields), best of ``repeats``.

    A tight loop of a few microseconds' work is barely touched by other jobs on
    the machine, unlike a whole request's req/s: the steady figure beside the noisy ones.
    """
    from arcana.core import RequestCore
    from arcana.ratelimit import MemoryLimiter, Rate
    from arcana.registry import Registry

    core = RequestCore(Registry(), lambda _authorization: None, MemoryLimiter(100_000), Rate.parse(NEVER))
    where, headers = "hello GET /api/v1/hello/{name}", {"content-type": "application/json"}

    async def once() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await core.limit_address("127.0.0.1")
            decision = await core._limit_call(NEVER, where, None, "127.0.0.1", "route")
            assert decision is not None
            headers.update(decision.headers())
        return (time.perf_counter() - started) * 1e6 / calls

    return min(asyncio.run(once()) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side, alternating (default 5)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per round and side (default 5)")
    parser.add_argument(
        "--tracing-exporter",
        default="otlp",
        help='tracing.exporter on the "on" side: otlp (default; to a local OTLP/HTTP sink this bench runs), '
        'console (output discarded), or "none" (tracing left out)',
    )
    parser.add_argument(
        "--sample-ratio",
        type=float,
        default=1.0,
        help='tracing.sample_ratio on the "on" side (default 1.0: every request)',
    )
    parser.add_argument("--batches", type=int, default=40, help="in-process batches per side (default 40, 0: none)")
    parser.add_argument("--calls", type=int, default=500, help="in-process calls per batch (default 500)")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--plugins", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.plugins, args.workdir, args.set)

    sets_on = [f"server.per_address_limit={NEVER}"]
    on_note = "rate limits: route + per address"
    sink: OtlpSink | None = None
    if args.tracing_exporter != "none":
        why = tracing_known(args.tracing_exporter)
        if why is None:
            sets_on.append(f"tracing.exporter={args.tracing_exporter}")
            sets_on.append(f"tracing.sample_ratio={args.sample_ratio}")
            on_note += f"; tracing: {args.tracing_exporter} exporter, sample_ratio {args.sample_ratio:g}"
            if args.tracing_exporter == "otlp":
                sink = OtlpSink()
                sets_on.append(f"tracing.otlp_endpoint={sink.url}")
        else:
            print(f"note: tracing not measured, this kernel has no tracing.exporter ({why})", file=sys.stderr)
            on_note += "; tracing: not available in this kernel"

    work = Path(tempfile.mkdtemp(prefix="arcana-bench-edge-"))
    try:
        folders = {}
        for side in ("on", "off"):
            folders[side] = work / side
            (folders[side] / "plugins").mkdir(parents=True)
            shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folders[side] / "plugins" / "hello.wasm")
        (folders["on"] / "plugins" / "hello.toml").write_text(LIMITED_HELLO)
        ports = {"on": free_port(), "off": free_port()}
        # The "on" side's stdout carries the console exporter's spans: thrown away, like a sink would.
        logs = {"on": Path("/dev/null") if "tracing.exporter=console" in " ".join(sets_on) else work / "on.log"}
        logs["off"] = work / "off.log"
        on = server(ports["on"], folders["on"] / "plugins", folders["on"], sets_on, logs["on"])
        off = server(ports["off"], folders["off"] / "plugins", folders["off"], [], logs["off"])
        with on, off:
            fields = {side: ratelimit_fields(port) for side, port in ports.items()}
            if not fields["on"] or fields["off"]:
                raise RuntimeError(f"RateLimit fields should be on one side only, got {fields}")
            servers = {"on": on, "off": off}
            alternate(servers, 1, 1)  # warm-up: instances, caches, lazy paths
            got = alternate(servers, args.rounds, args.seconds)
        result = rows(got, on_note)
        print_rows(result)
        ratio = result[1].ratio
        assert ratio is not None
        pairs = list(zip(got["on"], got["off"], strict=True))
        print("\nper-round req/s on/off: " + ", ".join(f"{a.load.rps / b.load.rps:.3f}" for a, b in pairs))
        if sink is not None:  # proof that spans left the server, as they would for a real collector
            print(f"OTLP sink received {sink.bytes:,} bytes of spans")
        print("per-round CPU/request on/off: " + ", ".join(f"{a.cpu_us / b.cpu_us:.3f}" for a, b in pairs))
        cpu_ratio = result[3].ratio
        assert cpu_ratio is not None
        print(
            f"edge on/off: req/s {ratio:.3f} (cost {1 - ratio:.1%}), CPU per request {cpu_ratio:.3f} "
            f"(cost {1 - 1 / cpu_ratio:.1%} of throughput); medians of {args.rounds} paired rounds; target < 5%"
        )
        checks = limit_checks_us()
        print(
            f"\nrate limiting alone (both checks and the RateLimit fields, in a tight loop): {checks:.1f} us per "
            f"request = {checks / median(x.cpu_us for x in got['off']):.1%} of the off server's CPU per request"
        )
        if args.batches:
            calls = in_process(folders, {"on": sets_on, "off": []}, args.batches, args.calls)
            paired = median(a / b for a, b in zip(calls["on"], calls["off"], strict=True))
            print(
                f"\nin process (the REST app called directly: no HTTP parsing, no network), CPU per call: "
                f"off {median(calls['off']):.1f} us, on {median(calls['on']):.1f} us, on/off {paired:.3f} "
                f"(median of {args.batches} paired batches of {args.calls} calls; an upper bound of the "
                "relative cost, since a real request also pays for HTTP and the socket)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
