"""What a route's request schema costs per request: the same plugin route with and without one, same server, same run.

    .venv/bin/python bench/validation.py [--rounds 5] [--seconds 5] [--connections 16]

One `arcana serve` process serves plugins/echo (Zig) with a sidecar manifest of two routes to the same
handler of the same plugin (one pool, one inline lane): ``POST /api/v1/echo`` without a schema and
``POST /api/v1/echo-checked`` with ``request`` = a note-like JSON Schema (the body notes' create takes).
Both get the same valid JSON body, so both reach the plugin and answer 200; the only difference is
the edge's check. An asyncio load generator (raw keep-alive sockets, POST) loads each route in turn,
the order rotated each round; the median requests/s of each and the overhead
``1 - checked/plain`` are reported. On a shared machine that figure swings by more than the cost it
measures, so two steadier ones follow, in process: ``RequestCore.call_http`` (auth, envelope,
the guest call, its answer: the whole plugin call but HTTP) on each route in alternating batches,
and the check alone (``RouteContract.check_request`` on the same body).
Nothing asserts on time: the machines are shared and noisy; compare figures from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"title": "Buy milk", "body": "2 litres, semi-skimmed", "tags": ["home", "shop"]}).encode()
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "body": {"type": "string", "maxLength": 20000},
        "tags": {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 40}},
    },
}
MANIFEST = """
[plugin]
name = "echo"
version = "1.0.0"

[capabilities]
log = true

[limits]
memory_mb = 16
timeout_ms = 1000
max_concurrency = 8

[[route]]
method = "POST"
path = "/api/v1/echo"
handler = "echo"
public = true

[[route]]
method = "POST"
path = "/api/v1/echo-checked"
handler = "echo"
public = true
request = "schemas/note-input.json"
"""
ROUTES = {"plain": "/api/v1/echo", "checked": "/api/v1/echo-checked"}
_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


def plugins_folder(work: Path) -> Path:
    folder = work / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    (folder / "echo.toml").write_text(MANIFEST)
    (folder / "echo.schemas.json").write_text(json.dumps({"schemas/note-input.json": SCHEMA}))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(path: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(BODY)}\r\n\r\n"
    return head.encode() + BODY


async def connection(port: int, path: str, end: float, counts: list[int], seen: set[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = request(path)
    try:
        while time.perf_counter() < end:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            m = _CL.search(head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            ok = head[9:12] == b"200"
            counts[0 if ok else 1] += 1
            if not ok:
                seen.add(head[9:12])
    finally:
        writer.close()


async def load(port: int, path: str, connections: int, seconds: float, seen: set[bytes]) -> tuple[float, int]:
    """Requests/s answered 200 over ``seconds``, and how many were not 200 (their statuses go in ``seen``)."""
    counts = [0, 0]
    start = time.perf_counter()
    await asyncio.gather(*(connection(port, path, start + seconds, counts, seen) for _ in range(connections)))
    return counts[0] / (time.perf_counter() - start), counts[1]


def serve(folder: Path, work: Path, port: int) -> subprocess.Popen[bytes]:
    config = work / "arcana.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{work / 'arcana.db'}'}}\nlogging: {{level: warning}}\nplugins: {{watch: false}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    env["ARCANA_JWT_SECRET"] = "bench-validation-secret-0123456789-abcdef"
    argv = [sys.executable, "-m", "arcana.cli", "serve", "--config", str(config), "--plugins", str(folder)]
    argv += ["--http-port", str(port), "--grpc-port", str(free_port())]
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(work / 'server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if s.recv(64)[9:12] == b"200":
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready after 60 s")


def check_alone(iterations: int = 20_000) -> tuple[float, float]:
    """Microseconds per ``check_request`` on the bench body: (the check, a body that fails it)."""
    from arcana.contract import build_contract
    from arcana.manifest import parse_manifest

    manifest = parse_manifest(MANIFEST)
    contract = build_contract(manifest, {"schemas/note-input.json": SCHEMA}, None).route(manifest.routes[1])
    assert contract is not None

    def no_query(_name: str) -> list[str]:
        return []

    bad = json.dumps({"title": "", "tags": "x"}).encode()
    out = []
    for body in (BODY, bad):
        start = time.perf_counter()
        for _ in range(iterations):
            contract.check_request({}, no_query, body, "application/json")
        out.append((time.perf_counter() - start) / iterations * 1e6)
    return out[0], out[1]


async def core_calls(folder: Path, work: Path, batches: int, calls: int) -> dict[str, list[float]]:
    """Microseconds per ``call_http`` of each route, per batch, the two routes alternating batch by batch."""
    from arcana.config import load_config
    from arcana.envelopes import HttpRequest
    from arcana.kernel import Kernel

    env = {
        "ARCANA_PLUGINS__DIR": str(folder),
        "ARCANA_PLUGINS__WATCH": "false",
        "ARCANA_LOGGING__LEVEL": "warning",
        "ARCANA_DATABASE__URL": f"sqlite:///{work / 'core.db'}",
    }
    kernel = Kernel(load_config(None, environ=env))
    kernel.start()
    try:
        await kernel.load_all()
        got: dict[str, list[float]] = {name: [] for name in ROUTES}
        headers = {"content-type": "application/json"}
        for batch in range(batches + 1):  # batch 0 warms up (the handler earns its inline lane)
            for name in ROUTES if batch % 2 else reversed(ROUTES):
                match = kernel.core.route_http("POST", ROUTES[name])
                assert match is not None
                start = time.perf_counter()
                for _ in range(calls):
                    req = HttpRequest("POST", ROUTES[name], {}, headers, BODY, "bench", "", "", "127.0.0.1")
                    answer = await kernel.core.call_http(match, req)
                assert answer.status == 200, answer
                if batch:
                    got[name].append((time.perf_counter() - start) / calls * 1e6)
        return got
    finally:
        kernel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Many short rounds, each pair back to back: on a shared machine the load of others drifts within
    # seconds, and the median of the paired ratios follows it better than two long runs would.
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arcana-bench-validation-") as tmp:
        work = Path(tmp)
        port = free_port()
        proc = serve(plugins_folder(work), work, port)
        try:
            got: dict[str, list[float]] = {name: [] for name in ROUTES}
            errors, seen = 0, set[bytes]()
            asyncio.run(load(port, ROUTES["checked"], 4, 1.0, seen))  # warm both: instances, caches
            asyncio.run(load(port, ROUTES["plain"], 4, 1.0, seen))
            for r in range(args.rounds):
                order = list(ROUTES) if r % 2 == 0 else list(reversed(ROUTES))
                for name in order:
                    rps, bad = asyncio.run(load(port, ROUTES[name], args.connections, args.seconds, seen))
                    got[name].append(rps)
                    errors += bad
                print(f"round {r + 1}: " + ", ".join(f"{n} {got[n][-1]:.0f} req/s" for n in ROUTES), flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)
            # What the server said about any answer that was not 200 (the folder goes with the run).
            server_errors = [
                line for line in (work / "server.log").read_text(errors="replace").splitlines() if "rror" in line
            ][-5:]
    plain, checked = statistics.median(got["plain"]), statistics.median(got["checked"])
    per_round = [1 - c / p for p, c in zip(got["plain"], got["checked"], strict=True)]
    ok_us, bad_us = check_alone()
    with tempfile.TemporaryDirectory(prefix="arcana-bench-validation-core-") as tmp:
        work = Path(tmp)
        import uvloop

        core = uvloop.run(core_calls(plugins_folder(work), work, batches=30, calls=500))
    core_plain, core_checked = statistics.median(core["plain"]), statistics.median(core["checked"])
    paired = [c - p for p, c in zip(core["plain"], core["checked"], strict=True)]
    print()
    print(f"POST, {args.connections} connections, {args.rounds} rounds x {args.seconds:g} s, median:")
    print(f"  without a schema  {plain:8.0f} req/s")
    print(f"  with a schema     {checked:8.0f} req/s")
    quartiles = statistics.quantiles(per_round, n=4)
    print(f"  overhead          {(1 - checked / plain) * 100:8.1f} %   (of the medians; target < 5 %)")
    print(
        f"  paired overhead   {statistics.median(per_round) * 100:8.1f} %   (median of each round's own ratio; "
        f"quartiles {quartiles[0] * 100:.1f} to {quartiles[2] * 100:.1f})"
    )
    print("in process, RequestCore.call_http (30 alternating batches of 500 calls, median):")
    print(f"  without a schema  {core_plain:8.1f} us per call")
    print(f"  with a schema     {core_checked:8.1f} us per call")
    print(
        f"  overhead          {statistics.median(paired):8.1f} us = "
        f"{statistics.median(paired) / core_plain * 100:.1f} % (median of the paired batch differences)"
    )
    print(f"  the check alone   {ok_us:8.1f} us per request (a refused body: {bad_us:.1f} us, listing every field)")
    print(f"  per request       {1e6 / plain:8.1f} us at the plain route's rate")
    if errors:
        print(f"  {errors} answers were not 200: {', '.join(sorted(x.decode() for x in seen))}")
        print("\n".join(f"    server: {line[:400]}" for line in server_errors))


if __name__ == "__main__":
    main()
