"""Benchmark 5: ASGI server choice, uvicorn vs hypercorn, on the same Quart app.

Two server processes (bench/serve_bench_app.py --app native) serve the same
bare Quart app holding only the native hello route, one under uvicorn
(uvloop + httptools, as runtime/server.py runs it) and one under hypercorn
(given uvloop too, so only the HTTP layer differs; h11 for HTTP/1.1). Both are
started before measuring and loaded alternately with wrk -t2 -c32 (or
bench/pyload.py), several rounds, median req/s and the ratio.

hypercorn is not a dependency of Arcana: install it into the venv for the
bench only (``.venv/bin/pip install hypercorn``; Quart usually pulls it in).
Without it this benchmark is skipped with a message.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from common import HttpClient, Row, Skip, bench_server, free_port, load, median

PATH = "/bench/native/hello/x"


def run(quick: bool, logdir: Path | None = None) -> list[Row]:
    if importlib.util.find_spec("hypercorn") is None:
        raise Skip("hypercorn is not installed in this venv: `.venv/bin/pip install hypercorn` to run it")
    rounds, seconds = (1, 3) if quick else (3, 5)
    logdir = logdir or Path(tempfile.mkdtemp(prefix="arcana-bench-asgi-"))
    ports = {"uvicorn": free_port(), "hypercorn": free_port()}
    got: dict[str, list] = {"uvicorn": [], "hypercorn": []}
    with (
        bench_server(ports["uvicorn"], logdir / "asgi-uvicorn.log", app="native", asgi="uvicorn"),
        bench_server(ports["hypercorn"], logdir / "asgi-hypercorn.log", app="native", asgi="hypercorn"),
    ):
        for name, port in ports.items():
            with HttpClient(port) as c:
                status, body = c.get(PATH)
                if status != 200 or b"Hello, x!" not in body:
                    raise RuntimeError(f"{name} answered {status} {body[:200]!r}")
            load(port, PATH, connections=32, seconds=1)  # warm-up
        for r in range(rounds):
            order = ("uvicorn", "hypercorn") if r % 2 == 0 else ("hypercorn", "uvicorn")
            for name in order:
                got[name].append(load(ports[name], PATH, connections=32, seconds=seconds))
    rps = {k: [x.rps for x in v] for k, v in got.items()}
    ratio = median(a / b for a, b in zip(rps["uvicorn"], rps["hypercorn"], strict=True))
    tool = got["uvicorn"][0].tool
    return [
        Row(
            "ASGI server",
            "hypercorn (uvloop, h11), native route",
            median(rps["hypercorn"]),
            "req/s",
            "(baseline)",
            note=f"{tool} 32 conns; p50 {median(x.p50_ms for x in got['hypercorn']):.2f} ms",
            rounds=rps["hypercorn"],
        ),
        Row(
            "ASGI server",
            "uvicorn (uvloop, httptools), native route",
            median(rps["uvicorn"]),
            "req/s",
            "hypercorn",
            ratio,
            "x hypercorn",
            target="~2x (runtime/server.py)",
            note=f"{tool} 32 conns; p50 {median(x.p50_ms for x in got['uvicorn']):.2f} ms",
            rounds=rps["uvicorn"],
        ),
    ]
