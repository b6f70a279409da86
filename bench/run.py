"""Run every benchmark and print one table of figures and same-run ratios.

    .venv/bin/python bench/run.py             # full run, about 3 minutes
    .venv/bin/python bench/run.py --quick     # fewer rounds, shorter loads, about 40 s
    .venv/bin/python bench/run.py --only rest,asgi --what-if --markdown --json out.json

Benchmarks: calls (in-process call + instance start), rest (plugin route vs
native Quart route, and the per-call breakdown of the kernel's REST path;
bench/bench_rest.py, bench/rest_breakdown.py), reload (hot reload latency
and failures), asgi (uvicorn vs hypercorn), workers (--workers 2 vs 1), scale (1/10/100 plugins, the
idle trim, routing with 1,000 routes; bench/plugin_scale.py), grpc (plugin
method vs a plain grpc.aio handler under h2load, and the per-call breakdown
of the kernel's gRPC path; bench/grpc_bench.py, bench/grpc_breakdown.py). Every figure is
compared with a baseline measured in the same run, interleaved; medians over rounds. Nothing here asserts on time: the
"met" column says whether this run met the target (the table in
bench/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, Skip, table, wrk_path

BENCHES = ("calls", "rest", "reload", "asgi", "workers", "scale", "grpc")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}", f"{os.cpu_count()} cpus"]
    for pkg in ("extism", "extism-sys", "quart", "uvicorn", "hypercorn"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"no {pkg}")
    wrk = wrk_path()
    if wrk:
        # `wrk --version` prints its banner with the usage text and may exit non-zero: only the text matters.
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        words = (out.stdout or out.stderr).split()
        parts.append(" ".join(words[:2]) if words else "wrk")
    else:
        parts.append("no wrk: bench/pyload.py")
    h2load = shutil.which("h2load")
    if h2load:
        out = subprocess.run([h2load, "--version"], capture_output=True, text=True, check=False)
        parts.append(out.stdout.strip().splitlines()[0] if out.stdout.strip() else "h2load")
    else:
        parts.append("no h2load: gRPC load from grpc.aio")
    return ", ".join(parts)


def _run_one(name: str, quick: bool, what_if: bool, logdir: Path) -> list[Row]:
    if name == "calls":
        import bench_calls

        return bench_calls.run(quick)
    if name == "rest":
        import bench_rest
        import rest_breakdown

        return bench_rest.run(quick, what_if=what_if, logdir=logdir) + rest_breakdown.run(quick)
    if name == "reload":
        import bench_reload

        return bench_reload.run(quick, logdir=logdir)
    if name == "workers":
        import workers_bench

        return workers_bench.run(quick, logdir=logdir)
    if name == "scale":
        import plugin_scale

        return plugin_scale.run(quick, logdir=logdir)
    if name == "grpc":
        import grpc_bench
        import grpc_breakdown

        return grpc_bench.run(quick, logdir=logdir, what_if=what_if) + grpc_breakdown.run(quick)
    import asgi_servers

    return asgi_servers.run(quick, logdir=logdir)


def main() -> int:
    parser = argparse.ArgumentParser(description="Arcana benchmarks (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter loads (~40 s)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also measure the what-if variants: REST (bench/whatif.py, ~2 min) and gRPC inline (~1 min)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the final table as Markdown too")
    parser.add_argument("--json", type=Path, help="write every row (with per-round values) to this file")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHES)}")

    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Arcana bench {stamp} ({'quick' if args.quick else 'full'}): {_versions()}", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="arcana-bench-logs-"))
    rows: list[Row] = []
    problems = []
    for name in chosen:
        t0 = time.perf_counter()
        print(f"\n== {name}", flush=True)
        try:
            got = _run_one(name, args.quick, args.what_if, logdir)
        except Skip as exc:
            print(f"skipped: {exc}", flush=True)
            continue
        except Exception:  # noqa: BLE001  one failing benchmark must not stop the others; its trace is printed
            problems.append(name)
            print(f"FAILED ({name}); server logs in {logdir}", flush=True)
            traceback.print_exc()
            continue
        rows += got
        print(table(got), flush=True)
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)

    print(f"\n== all results ({stamp}, {time.perf_counter() - started:.0f} s)")
    print(table(rows))
    if args.markdown:
        print()
        print(table(rows, markdown=True))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": stamp,
                    "quick": args.quick,
                    "environment": _versions(),
                    "rows": [dataclasses.asdict(r) for r in rows],
                },
                indent=1,
            )
        )
    if not problems:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
