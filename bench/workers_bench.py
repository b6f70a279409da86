"""`arcana serve --workers 2` against `--workers 1`: `hello` req/s, same run, loaded alternately.

    .venv/bin/python bench/workers_bench.py                  # 5 rounds x 5 s per side, about a minute
    .venv/bin/python bench/workers_bench.py --rounds 1 --seconds 2
    .venv/bin/python bench/run.py --only workers             # the same, in the runner's table

Two real `arcana serve` processes (the command operators run, REST and gRPC
edges, a job worker each) serve plugins/hello/hello.wasm from one temp folder
on ports of their own: one with ``--workers 1``, one with ``--workers 2``
(three processes: the supervisor and two workers). Both are up for the whole
run; the one not under load is idle. Each round loads one, then the other,
with ``wrk -t2 -c32`` (or bench/pyload.py) on ``GET /api/v1/hello/x``, the
order flipped every round; the figure is the median of the per-round ratios
2/1. The load generator runs on the same machine: on a 2-core box it takes
part of the cores the two workers would use, so the ratio here is a floor of
what two workers give when the clients are elsewhere.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import PYTHON, ROOT, Load, Row, Server, free_port, load, median, print_rows

PATH = "/api/v1/hello/x"
CONNECTIONS, THREADS = 32, 2
TARGET = 1.7


def _serve(folder: Path, workdir: Path, workers: int) -> Server:
    port = free_port()
    argv = [PYTHON, "-m", "arcana.cli", "serve", "--plugins", str(folder), "--http-port", str(port)]
    argv += ["--grpc-port", str(free_port()), "--workers", str(workers)]
    state = workdir / f"w{workers}"
    state.mkdir()
    env = {
        "ARCANA_DATABASE__URL": f"sqlite:///{state / 'arcana.db'}",
        "ARCANA_LOGGING__LEVEL": "warning",
        "ARCANA_JWT_SECRET": "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
    }
    return Server(argv, port, "/ready", workdir / f"server-w{workers}.log", env)


def _wait_for_workers(port: int, workers: int, timeout_s: float = 60.0) -> None:
    """Until fresh connections have met ``workers`` distinct processes (/ready answers once one is up)."""
    if workers == 1:
        return
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} workers answered after {timeout_s} s")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", PATH)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status == 200 and response.getheader("x-arcana-worker"):
            seen.add(response.getheader("x-arcana-worker") or "")


def run(quick: bool = False, logdir: Path | None = None, rounds: int = 5, seconds: float = 5.0) -> list[Row]:
    if quick:
        rounds, seconds = 2, 3.0
    workdir = Path(tempfile.mkdtemp(prefix="arcana-workers-bench-", dir=logdir))
    folder = workdir / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    one, two = _serve(folder, workdir, 1), _serve(folder, workdir, 2)
    results: dict[int, list[Load]] = {1: [], 2: []}
    with one, two:
        _wait_for_workers(two.port, 2)
        for server in (one, two):  # warm-up: compiled modules, pools filled
            load(server.port, PATH, connections=CONNECTIONS, seconds=1, threads=THREADS)
        for n in range(rounds):
            order = [(1, one), (2, two)] if n % 2 == 0 else [(2, two), (1, one)]
            for workers, server in order:
                got = load(server.port, PATH, connections=CONNECTIONS, seconds=seconds, threads=THREADS)
                results[workers].append(got)
                print(f"round {n + 1}: --workers {workers}: {got.rps:,.0f} req/s, {got.errors} errors", flush=True)
    ratios = [b.rps / a.rps for a, b in zip(results[1], results[2], strict=True)]
    ratio = median(ratios)
    tool = results[1][0].tool
    note = f"{tool} -t{THREADS} -c{CONNECTIONS} on the same {os.cpu_count()}-core machine; errors " + str(
        sum(r.errors for r in results[1] + results[2])
    )
    return [
        Row("workers", "--workers 1", median(r.rps for r in results[1]), "req/s", note=note),
        Row(
            "workers",
            "--workers 2",
            median(r.rps for r in results[2]),
            "req/s",
            baseline="--workers 1",
            ratio=ratio,
            target=f">= {TARGET}x",
            ok=ratio >= TARGET,
            note="median of per-round ratios " + ", ".join(f"{r:.2f}" for r in ratios),
            rounds=ratios,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print_rows(run(rounds=args.rounds, seconds=args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
