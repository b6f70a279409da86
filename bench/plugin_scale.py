"""Cost as plugins grow: start time, memory and latency with 1, 10 and 100 plugins; routing with 1,000 routes.

    .venv/bin/python bench/plugin_scale.py            # 1, 10, 100 plugins, about 2 minutes
    .venv/bin/python bench/plugin_scale.py --quick    # shorter loads
    .venv/bin/python bench/plugin_scale.py --counts 1,10 --markdown

Every plugin is ``plugins/hello/hello.wasm`` copied as ``p{i}.wasm`` with a
sidecar manifest ``p{i}.toml`` naming it ``p{i}`` on ``/api/v1/p{i}/hello/{name}``.
For each count a real server (bench/serve_bench_app.py: the kernel and the
REST edge on uvicorn) serves a fresh folder, with its own wasmtime cache, and
the bench reads:

- **start**: from the process's launch to ``/ready`` 200 (the server listens once every plugin is
  loaded), median of launches that alternate the counts;
- **RSS** (``VmRSS`` of /proc/PID/status): after start (one warm instance a plugin), after a
  burst (``wrk -c32`` rotating over every plugin's route), and after the idle trim
  (``executor.idle_instance_ttl_s`` set to ``TTL_S`` here so the bench need not wait a minute);
- **the idle trim** on ``plugins/echo`` after a burst of ~0.5 MB bodies, against a control
  server that never trims: what dropping idle instances gives back;
- **p50** at one connection on ``p0``'s route, the servers (all up at once) loaded in turn,
  median of rounds.

Ratios are against the 1-plugin server of the same run. Routing is timed in
process: ``RouteTrie.match`` (what the registry's snapshot matches with) for
one path in a table of 1 route and of 1,000.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH,
    PYTHON,
    ROOT,
    HttpClient,
    Row,
    Server,
    Skip,
    calibrate,
    free_port,
    isolated_env,
    load,
    median,
    print_rows,
    table,
    time_per_call,
    wrk_path,
)

HELLO = ROOT / "plugins" / "hello" / "hello.wasm"
ECHO = ROOT / "plugins" / "echo" / "echo.wasm"
# The echo burst's request body: each instance that handled one keeps its grown linear memory while idle.
ECHO_BODY_BYTES = 512_000
COUNTS = (1, 10, 100)
# The bench's idle ttl: short, so the trim is seen within seconds (the default is 60 s).
TTL_S = 2.0
ROUTES = 1000
# After a burst, before reading RSS: the calls wrk left queued finish (shorter than any ttl here).
SETTLE_S = 0.5
# The idle-trim figure's ttl: longer than its burst, so only the trim after it is measured.
TRIM_TTL_S = 6.0


def manifest(i: int) -> str:
    """The sidecar manifest of generated plugin ``i``: its own name and route, hello's limits."""
    return f"""[plugin]
name = "p{i}"
version = "1.0.0"
[limits]
memory_mb = 16
timeout_ms = 1000
max_concurrency = 8
[[route]]
method = "GET"
path = "/api/v1/p{i}/hello/{{name}}"
handler = "hello"
public = true
"""


def route_of(i: int) -> str:
    return f"/api/v1/p{i}/hello/x"


def generate(folder: Path, count: int, wasm: Path = HELLO) -> list[Path]:
    """``count`` plugins from one module into ``folder``: p0.wasm + p0.toml, p1.wasm + p1.toml, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        target = folder / f"p{i}.wasm"
        shutil.copyfile(wasm, target)
        (folder / f"p{i}.toml").write_text(manifest(i))
        made.append(target)
    return made


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle_instances(port: int) -> float:
    """Instances idle in every pool, from /metrics (``arcana_plugin_instances_idle``, summed)."""
    with HttpClient(port) as client:
        status, body = client.get("/metrics")
    if status != 200:
        return float("nan")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith("arcana_plugin_instances_idle{")
    )


def rotating_script(folder: Path, count: int) -> Path:
    """A wrk script that walks every plugin's route in turn, so a burst reaches all of them."""
    script = folder / "rotate.lua"
    script.write_text(
        f"local i = 0\nrequest = function()\n  i = (i + 1) % {count}\n"
        '  return wrk.format("GET", "/api/v1/p" .. i .. "/hello/x")\nend\n'
    )
    return script


def burst(port: int, count: int, folder: Path, seconds: float) -> None:
    if wrk_path():
        argv = ["wrk", "-t2", "-c32", f"-d{max(1, round(seconds))}s", "-s", str(rotating_script(folder, count))]
        subprocess.run([*argv, f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
    else:  # pyload takes one path: the burst reaches p0 only
        load(port, route_of(0), connections=32, seconds=seconds)


def server(folder: Path, port: int, ttl_s: float = TTL_S) -> Server:
    """bench/serve_bench_app.py on ``folder``/plugins, its own state and wasmtime cache, an idle ttl (0: none)."""
    cache = folder / "wasmtime-cache.toml"
    cache.write_text(f'[cache]\ndirectory = "{folder / "wasmtime-cache"}"\n')
    env = {**isolated_env(folder), "EXTISM_CACHE_CONFIG": str(cache)}
    argv = [PYTHON, str(BENCH / "serve_bench_app.py"), "--port", str(port), "--workdir", str(folder)]
    argv += ["--plugins", str(folder / "plugins"), "--set", f"executor.idle_instance_ttl_s={ttl_s}"]
    argv += ["--set", "server.metrics_public=true"]  # the idle-instance gauges, read by the bench
    return Server(argv, port, "/ready", folder / "server.log", env)


def wait_trim(ttl_s: float = TTL_S) -> None:
    """Past the ttl and a sweep (every ttl/2, at least 1 s), with margin."""
    time.sleep(ttl_s + max(1.0, ttl_s / 2) + 1.0)


def start_time(folder: Path) -> float:
    """Seconds from launching a server on ``folder`` to /ready 200; the server is stopped again."""
    started = time.perf_counter()
    with server(folder, free_port()):
        return time.perf_counter() - started


def by_count(counts: tuple[int, ...], work: Path, quick: bool) -> dict[int, dict[str, float]]:
    """Every figure per plugin count; start times and p50s in rounds that alternate the counts."""
    rounds = 2 if quick else 3
    folders = {}
    for count in counts:
        folders[count] = work / f"n{count}"
        generate(folders[count] / "plugins", count)
    out: dict[int, dict[str, float]] = {count: {} for count in counts}
    starts: dict[int, list[float]] = {count: [] for count in counts}
    start_time(folders[counts[0]])  # warm-up: the first launch pays for cold file caches
    for _ in range(rounds):
        for count in counts:
            starts[count].append(start_time(folders[count]))
    with ExitStack() as stack:
        ports = {count: free_port() for count in counts}
        pids = {}
        for count in counts:
            running = stack.enter_context(server(folders[count], ports[count]))
            assert running.proc is not None
            pids[count] = running.proc.pid
        for count in counts:
            out[count]["start_s"] = median(starts[count])
            out[count]["rss_start"] = rss_mb(pids[count])
            load(ports[count], route_of(0), connections=1, seconds=1, threads=1)  # warm-up
        p50s: dict[int, list[float]] = {count: [] for count in counts}
        for _ in range(rounds):
            for count in counts:
                p50s[count].append(load(ports[count], route_of(0), connections=1, seconds=2, threads=1).p50_ms)
        for count in counts:
            out[count]["p50_ms"] = median(p50s[count])
            burst(ports[count], count, folders[count], 2 if quick else 3)
            time.sleep(SETTLE_S)
            out[count]["rss_burst"], out[count]["idle_burst"] = rss_mb(pids[count]), idle_instances(ports[count])
        wait_trim()
        for count in counts:
            out[count]["rss_trimmed"], out[count]["idle_trimmed"] = rss_mb(pids[count]), idle_instances(ports[count])
    return out


def echo_burst_script(folder: Path) -> Path:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
        f'wrk.body = \'{{"a":"\' .. string.rep("x", {ECHO_BODY_BYTES}) .. \'"}}\'\n'
    )
    return script


def idle_trim(work: Path, quick: bool, ttl_s: float) -> dict[str, float]:
    """What the idle trim gives back: echo after a burst of 32 connections with ~0.5 MB bodies.

    Each echo instance that handled one grew its linear memory, which never shrinks while the
    instance lives: what idle instances of a plugin that handled big requests hold. Run with
    ``ttl_s`` TRIM_TTL_S (long enough that nothing is trimmed during the burst) and 0 (the
    control: no trim), the same waits, so what the process frees on its own is told apart.
    """
    if wrk_path() is None:
        raise Skip("the idle-trim figure needs wrk (a POST body)")
    folder = work / f"trim-{ttl_s:g}"
    (folder / "plugins").mkdir(parents=True)
    shutil.copyfile(ECHO, folder / "plugins" / "echo.wasm")
    port = free_port()
    with server(folder, port, ttl_s) as running:
        assert running.proc is not None
        pid = running.proc.pid
        out = {"rss_start": rss_mb(pid), "idle_start": idle_instances(port)}
        wrk = ["wrk", "-t2", "-c32", f"-d{2 if quick else 3}s", "-s", str(echo_burst_script(folder))]
        subprocess.run([*wrk, f"http://127.0.0.1:{port}/api/v1/echo"], capture_output=True, check=True)
        time.sleep(SETTLE_S)  # wrk is gone, the calls it left queued are not yet
        out["rss_burst"], out["idle_burst"] = rss_mb(pid), idle_instances(port)
        wait_trim(TRIM_TTL_S)
        out["rss_trimmed"], out["idle_trimmed"] = rss_mb(pid), idle_instances(port)
    return out


def routing() -> tuple[float, float]:
    """Seconds per ``RouteTrie.match`` of one path in a table of 1 route and of ``ROUTES`` routes."""
    from arcana.paths import PathTemplate, RouteTrie

    def table_of(n: int) -> RouteTrie[int]:
        trie: RouteTrie[int] = RouteTrie()
        for i in range(n):
            trie.add("GET", PathTemplate.parse(f"/api/v1/p{i}/hello/{{name}}"), i)
        return trie

    small, big = table_of(1), table_of(ROUTES)
    path = route_of(0)
    far = route_of(ROUTES - 1)
    assert big.match("GET", far) is not None and small.match("GET", path) is not None
    n = calibrate(lambda: small.match("GET", path), 0.2)
    per: dict[str, list[float]] = {"1": [], "1000": []}
    for _ in range(7):  # interleaved rounds, median
        per["1"].append(time_per_call(lambda: small.match("GET", path), n))
        per["1000"].append(time_per_call(lambda: big.match("GET", far), n))
    return median(per["1"]), median(per["1000"])


def run(
    quick: bool = False, counts: tuple[int, ...] = COUNTS, logdir: Path | None = None, trim: bool = True
) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="arcana-scale-", dir=logdir))
    results = by_count(counts, work, quick)
    base = results[counts[0]]
    rows: list[Row] = []
    what = [
        ("start to /ready", "start_s", "s"),
        ("RSS after start", "rss_start", "MB"),
        ("RSS after a burst", "rss_burst", "MB"),
        (f"RSS after the idle trim ({TTL_S:g} s ttl)", "rss_trimmed", "MB"),
        ("p50, 1 connection, p0's route", "p50_ms", "ms"),
    ]
    for label, key, unit in what:
        for count in counts:
            value = results[count][key]
            rows.append(
                Row(
                    "plugin scale",
                    f"{label}, {count} plugin{'s' if count > 1 else ''}",
                    value,
                    unit,
                    baseline=f"{counts[0]} plugin" if count != counts[0] else "",
                    ratio=value / base[key] if count != counts[0] else None,
                )
            )
    for count in counts:
        r = results[count]
        idle = f"idle instances {r['idle_burst']:.0f} -> {r['idle_trimmed']:.0f}"
        freed = r["rss_burst"] - r["rss_trimmed"]
        rows.append(Row("plugin scale", f"RSS freed by the idle trim, {count} plugins", freed, "MB", note=idle))
    if trim:
        for ttl_s, label in ((TRIM_TTL_S, f"trim after {TRIM_TTL_S:g} s"), (0.0, "no trim (control)")):
            t = idle_trim(work, quick, ttl_s)
            idle = f"idle instances {t['idle_start']:.0f} / {t['idle_burst']:.0f} / {t['idle_trimmed']:.0f}"
            rows.append(Row("idle trim", f"echo, {label}: RSS after start", t["rss_start"], "MB"))
            rows.append(Row("idle trim", f"echo, {label}: RSS after the burst", t["rss_burst"], "MB"))
            rows.append(Row("idle trim", f"echo, {label}: RSS after the wait", t["rss_trimmed"], "MB", note=idle))
            freed = t["rss_burst"] - t["rss_trimmed"]
            rows.append(
                Row(
                    "idle trim",
                    f"echo, {label}: RSS freed during the wait",
                    freed,
                    "MB",
                    baseline="the burst's growth",
                    ratio=freed / (t["rss_burst"] - t["rss_start"]),
                    ratio_label="of it",
                )
            )
    one, many = routing()
    rows.append(Row("routing", "RouteTrie.match, 1 route", one * 1e6, "us"))
    rows.append(
        Row("routing", f"RouteTrie.match, {ROUTES:,} routes", many * 1e6, "us", baseline="1 route", ratio=many / one)
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)), help="plugin counts, the first is the base")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = run(args.quick, tuple(int(c) for c in args.counts.split(",")))
    if args.markdown:
        print(table(rows, markdown=True))
    else:
        print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
