"""The cost of the resilience and observability edge: `hello` req/s with it on vs off, same run.

    .venv/bin/python bench/edge_cost.py                    # 5 rounds x 5 s per side, about a minute
    .venv/bin/python bench/edge_cost.py --rounds 1 --seconds 2      # a quick look
    .venv/bin/python bench/edge_cost.py --tracing-exporter none     # tracing's switch left out

Two server processes (bench/serve_bench_app.py: the real kernel and REST edge,
uvicorn + uvloop + httptools) serve plugins/hello/hello.wasm side by side:

- **on**: the route under a manifest ``rate_limit`` and ``server.per_address_limit``,
  both far too high to refuse anything (so every request pays for two limiter
  checks and carries the RateLimit-* fields), and tracing on
  (``tracing.exporter``, "console" by default, its output thrown away with the
  server's stdout);
- **off**: the defaults: no rate limit anywhere, no tracing.

Both are loaded alternately (wrk -t2 -c32, or bench/pyload.py), the order
flipped every round, and the median of the per-round ratios on/off is the
edge's cost. Metrics cannot be switched off (the plugin-call counters and
histogram are always recorded), so both sides pay for them: what is measured
is rate limiting plus tracing on top of metrics. A kernel without a
``tracing`` config section (before tracing lands) is measured without it, and
the run says so.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import tempfile
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


def alternate(ports: dict[str, int], rounds: int, seconds: float) -> dict[str, list[Load]]:
    got: dict[str, list[Load]] = {"on": [], "off": []}
    for r in range(rounds):
        for side in ("on", "off") if r % 2 == 0 else ("off", "on"):
            got[side].append(load(ports[side], PATH, connections=CONNECTIONS, seconds=seconds, threads=THREADS))
    return got


def rows(got: dict[str, list[Load]], on_note: str) -> list[Row]:
    rps = {side: [x.rps for x in loads] for side, loads in got.items()}
    ratio = median(a / b for a, b in zip(rps["on"], rps["off"], strict=True))
    errors = {side: sum(x.errors for x in loads) for side, loads in got.items()}

    def note(side: str) -> str:
        loads = got[side]
        p50, p99 = median(x.p50_ms for x in loads), median(x.p99_ms for x in loads)
        text = f"{loads[0].tool}; p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        return text + (f"; {errors[side]} errors" if errors[side] else "")

    return [
        Row("edge cost", f"hello, edge off, {CONNECTIONS} conns", median(rps["off"]), "req/s", "(baseline)",
            note=note("off") + "; metrics on (cannot be switched off)", rounds=rps["off"]),
        Row("edge cost", f"hello, edge on, {CONNECTIONS} conns", median(rps["on"]), "req/s", "edge off", ratio,
            "x off", target=">= 0.95 x off", ok=ratio >= 0.95, note=note("on") + "; " + on_note, rounds=rps["on"]),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side, alternating (default 5)")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per round and side (default 5)")
    parser.add_argument(
        "--tracing-exporter",
        default="console",
        help='tracing.exporter on the "on" side (default console, output discarded); "none" leaves tracing out',
    )
    args = parser.parse_args()

    sets_on = [f"server.per_address_limit={NEVER}"]
    on_note = "rate limits: route + per address"
    if args.tracing_exporter != "none":
        why = tracing_known(args.tracing_exporter)
        if why is None:
            sets_on.append(f"tracing.exporter={args.tracing_exporter}")
            on_note += f"; tracing: {args.tracing_exporter} exporter"
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
            alternate(ports, 1, 1)  # warm-up: instances, caches, lazy paths
            got = alternate(ports, args.rounds, args.seconds)
        result = rows(got, on_note)
        print_rows(result)
        ratio = result[1].ratio
        assert ratio is not None
        paired = ", ".join(f"{a.rps / b.rps:.3f}" for a, b in zip(got["on"], got["off"], strict=True))
        print(f"\nper-round on/off: {paired}")
        print(f"edge on/off = {ratio:.3f} (cost {1 - ratio:.1%}; median of {args.rounds} paired rounds; target < 5%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
