"""Fallback load generator when `wrk` is not installed: asyncio, raw keep-alive sockets.

    python bench/pyload.py PORT PATH CONNECTIONS SECONDS   -> one JSON line on stdout

Each connection sends one GET, reads exactly one response (Content-Length),
and repeats; latency is timed per request. Being Python, it needs a good
share of one core itself, so its requests/s are lower than wrk's: compare
only ratios measured with the same tool.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


async def connection(port: int, path: str, end: float, lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode()
    try:
        while (t0 := time.perf_counter()) < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            m = _CL.search(head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            lat.append(time.perf_counter() - t0)
            if head[9:12] != b"200":
                errors[0] += 1
    except (OSError, asyncio.IncompleteReadError):
        errors[0] += 1
    finally:
        writer.close()


async def main(port: int, path: str, connections: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors = [0]
    start = time.perf_counter()
    await asyncio.gather(*(connection(port, path, start + seconds, lat, errors) for _ in range(connections)))
    took = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1e3 if lat else float("nan")

    return {"rps": len(lat) / took, "p50_ms": pct(50), "p99_ms": pct(99), "requests": len(lat), "errors": errors[0]}


if __name__ == "__main__":
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    port, path, conns, secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(run(main(port, path, conns, secs))))
