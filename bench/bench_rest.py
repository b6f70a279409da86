"""Benchmark 3: REST throughput and latency, plugin route vs a native Quart route.

One server process (bench/serve_bench_app.py: the real kernel serving a temp
folder holding plugins/hello/hello.wasm, uvicorn + uvloop + httptools) serves
both
  - plugin: GET /api/v1/hello/x          -> the hello plugin through the REST edge
  - native: GET /bench/native/hello/x    -> an async Quart view on the same app
both answering {"message": "Hello, x!"}. Load: wrk -t2 -c32 (or bench/pyload.py
when wrk is missing), plugin and native alternating, several rounds, median
reported; then one connection, sequential requests, for p50 latency.

`--what-if` adds one server per variant of bench/whatif.py, each measured
against its own native route in the same process, to show what would move
the ratio.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from common import ROOT, Load, Row, bench_server, free_port, load, median, wrk_path
from whatif import VARIANTS

PLUGIN_PATH = "/api/v1/hello/x"
NATIVE_PATH = "/bench/native/hello/x"
RAW_PATH = "/bench/raw/hello/x"
PATHS = {"plugin": PLUGIN_PATH, "native": NATIVE_PATH, "raw": RAW_PATH}
EXPECTED = {"message": "Hello, x!"}
CONNECTIONS, THREADS = 32, 2


def _check(port: int) -> None:
    from common import HttpClient

    with HttpClient(port) as c:
        for path in PATHS.values():
            status, body = c.get(path)
            if status != 200 or json.loads(body) != EXPECTED:
                raise RuntimeError(f"{path} answered {status} {body[:200]!r}, expected {EXPECTED}")


def _alternate(
    port: int, rounds: int, seconds: float, connections: int, who: tuple[str, ...] = ("plugin", "native", "raw")
) -> dict[str, list[Load]]:
    got: dict[str, list[Load]] = {name: [] for name in who}
    for r in range(rounds):
        for name in who[r % len(who) :] + who[: r % len(who)]:  # each round starts with the next one
            got[name].append(load(port, PATHS[name], connections=connections, seconds=seconds, threads=THREADS))
    return got


def _rows(bench: str, got: dict[str, list[Load]], one: dict[str, list[Load]] | None, targets: bool) -> list[Row]:
    rows = []
    rps = {k: [x.rps for x in v] for k, v in got.items()}
    ratio = median(a / b for a, b in zip(rps["plugin"], rps["native"], strict=True))
    errors = {k: sum(x.errors for x in v) for k, v in got.items()}
    tool = got["plugin"][0].tool
    rows.append(
        Row(
            bench,
            f"native Quart route, {CONNECTIONS} conns",
            median(rps["native"]),
            "req/s",
            "(baseline)",
            note=f"{tool}; p50 {median(x.p50_ms for x in got['native']):.2f} ms, "
            f"p99 {median(x.p99_ms for x in got['native']):.2f} ms"
            + (f"; {errors['native']} errors" if errors["native"] else ""),
            rounds=rps["native"],
        )
    )
    rows.append(
        Row(
            bench,
            f"plugin route (hello.wasm), {CONNECTIONS} conns",
            median(rps["plugin"]),
            "req/s",
            "native",
            ratio,
            "x native",
            target=">= 0.95 x native" if targets else "",
            ok=(ratio >= 0.95) if targets else None,
            note=f"{tool}; p50 {median(x.p50_ms for x in got['plugin']):.2f} ms, "
            f"p99 {median(x.p99_ms for x in got['plugin']):.2f} ms"
            + (f"; {errors['plugin']} errors" if errors["plugin"] else ""),
            rounds=rps["plugin"],
        )
    )
    if "raw" in got:
        raw_ratio = median(a / b for a, b in zip(rps["plugin"], rps["raw"], strict=True))
        rows.append(
            Row(
                bench,
                f"raw ASGI route (the limit), {CONNECTIONS} conns",
                median(rps["raw"]),
                "req/s",
                "plugin",
                raw_ratio,
                "plugin/raw",
                note=f"{tool}; p50 {median(x.p50_ms for x in got['raw']):.2f} ms",
                rounds=rps["raw"],
            )
        )
    if one is not None:
        p50 = {k: [x.p50_ms for x in v] for k, v in one.items()}
        p99 = {k: median(x.p99_ms for x in v) for k, v in one.items()}
        rows.append(
            Row(
                bench,
                "native, 1 connection: p50",
                median(p50["native"]),
                "ms",
                "(baseline)",
                note=f"p99 {p99['native']:.2f} ms, {median(x.rps for x in one['native']):,.0f} req/s",
                rounds=p50["native"],
            )
        )
        rows.append(
            Row(
                bench,
                "plugin, 1 connection: p50",
                median(p50["plugin"]),
                "ms",
                "native",
                median(a / b for a, b in zip(p50["plugin"], p50["native"], strict=True)),
                "x native",
                target="< 1 ms" if targets else "",
                ok=(median(p50["plugin"]) < 1.0) if targets else None,
                note=f"p99 {p99['plugin']:.2f} ms, {median(x.rps for x in one['plugin']):,.0f} req/s",
                rounds=p50["plugin"],
            )
        )
    return rows


def run(quick: bool, what_if: bool = False, logdir: Path | None = None) -> list[Row]:
    rounds, seconds, one_seconds = (1, 3, 2) if quick else (3, 7, 3)
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="arcana-bench-rest-"))
    logdir = logdir or work
    try:
        plugins = work / "plugins"
        plugins.mkdir()
        shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", plugins / "hello.wasm")
        port = free_port()
        with bench_server(port, logdir / "rest-server.log", plugins=plugins):
            _check(port)
            _alternate(port, 1, 1, CONNECTIONS)  # warm-up: instances, caches, JIT-free but lazy paths
            got = _alternate(port, rounds, seconds, CONNECTIONS)
            one = _alternate(port, rounds, one_seconds, 1)
        rows += _rows("REST hello", got, one, targets=True)
        port = free_port()
        with bench_server(port, logdir / "rest-no-inline.log", plugins=plugins, sets=["executor.inline_max_ms=0"]):
            _check(port)
            _alternate(port, 1, 1, CONNECTIONS, ("plugin", "native"))
            got = _alternate(port, rounds, seconds, CONNECTIONS, ("plugin", "native"))
        for row in _rows("REST inline off", got, None, targets=False):
            if row.subject.startswith("plugin"):
                rows.append(
                    dataclasses.replace(row, subject=f"plugin route, every call on its threads, {CONNECTIONS} conns")
                )
        if what_if:
            for variant in VARIANTS:
                port = free_port()
                server = bench_server(
                    port,
                    logdir / f"rest-{variant}.log",
                    plugins=plugins,
                    variant="none" if variant == "threads1" else variant,
                    sets=["executor.threads=1"] if variant == "threads1" else [],
                )
                with server:
                    _check(port)
                    _alternate(port, 1, 1, CONNECTIONS)
                    got = _alternate(port, 1 if quick else 2, seconds * 0.6, CONNECTIONS)
                    one = _alternate(port, 1, one_seconds * 0.7, 1)
                for row in _rows(f"what-if {variant}", got, one, targets=False):
                    if row.subject.startswith("plugin"):
                        rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def describe() -> str:
    return f"load generator: {'wrk ' if wrk_path() else 'bench/pyload.py (wrk not found)'}"
