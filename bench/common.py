"""Shared bench machinery: results, statistics, server processes, HTTP clients, wrk.

Nothing here asserts on time: benchmarks measure, the runner prints.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
CACHE = BENCH / ".cache"  # built plugin variants (git-ignored via .cache/)


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the results table.

    ``value`` is the subject's median; ``baseline``/``ratio`` compare it with
    the baseline measured in the same run; ``target`` is the project's goal (bench/README.md)
    in words and ``ok`` whether this run met it (None: no target).
    """

    bench: str
    subject: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""
    rounds: list[float] = field(default_factory=list)


class Skip(Exception):
    """A benchmark cannot run here (tool missing); the runner prints why."""


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of an unsorted list."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def time_per_call(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls (loop overhead included, ~30 ns)."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def calibrate(fn: Callable[[], object], seconds: float) -> int:
    """How many calls of ``fn`` take about ``seconds``."""
    n, took = 1, 0.0
    while took < 0.05:
        n *= 4
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - t0
    return max(1, int(n * seconds / took))


# --------------------------------------------------------------------------- envelopes

HELLO_ENVELOPE = {
    "kind": "http",
    "method": "GET",
    "path": "/api/v1/hello/x",
    "route": "/api/v1/hello/{name}",
    "params": {"name": "x"},
    "query": {},
    "headers": {},
    "principal": None,
    "request_id": "r",
    "traceparent": "",
}
ECHO_ENVELOPE = {
    "kind": "http",
    "method": "POST",
    "path": "/api/v1/echo",
    "route": "/api/v1/echo",
    "params": {},
    "query": {},
    "headers": {"content-type": "application/json"},
    "principal": None,
    "request_id": "r",
    "traceparent": "",
    "body": {"a": [1, 2], "b": "text"},
}


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- processes


def isolated_env(workdir: Path) -> dict[str, str]:
    """ARCANA_* overrides that keep a bench kernel's state (its SQLite file) inside ``workdir``."""
    import dataclasses

    from arcana.config import ArcanaConfig

    fields = {f.name for f in dataclasses.fields(ArcanaConfig)}
    env = {}
    if "database" in fields:
        env["ARCANA_DATABASE__URL"] = f"sqlite:///{workdir / 'arcana.db'}"
    return env


def hello_kernel_env(workdir: Path, **settings: str) -> dict[str, str]:
    """Environment for an in-process bench kernel serving plugins/hello alone, its state inside ``workdir``.

    ``settings``: more config overrides as env keys, e.g. ``SERVER__GRPC_PORT="9091"``.
    """
    plugins = workdir / "plugins"
    plugins.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", plugins / "hello.wasm")
    return {
        "ARCANA_PLUGINS__DIR": str(plugins),
        "ARCANA_PLUGINS__WATCH": "false",
        "ARCANA_LOGGING__LEVEL": "warning",
        **{f"ARCANA_{key}": value for key, value in settings.items()},
        **isolated_env(workdir),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess (bench/serve_bench_app.py or `arcana serve`), stopped on exit."""

    def __init__(
        self, argv: list[str], port: int, ready_path: str, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv, self.port, self.ready_path, self.log_path = argv, port, ready_path, log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
        env.update(self.env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.logs()[-3000:]}")
            try:
                with HttpClient(self.port) as c:
                    if c.get(self.ready_path)[0] == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after 60 s: {self.logs()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def bench_server(
    port: int,
    log: Path,
    *,
    plugins: Path | None = None,
    asgi: str = "uvicorn",
    app: str = "full",
    variant: str = "none",
    sets: list[str] | None = None,
) -> Server:
    argv = [
        PYTHON,
        str(BENCH / "serve_bench_app.py"),
        "--port",
        str(port),
        "--asgi",
        asgi,
        "--app",
        app,
        "--variant",
        variant,
        "--workdir",
        str(log.parent),
    ]
    if plugins is not None:
        argv += ["--plugins", str(plugins)]
    for item in sets or []:
        argv += ["--set", item]
    return Server(argv, port, "/bench/native/hello/ready", log)


# --------------------------------------------------------------------------- a minimal HTTP/1.1 client

_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class HttpClient:
    """One keep-alive connection, GET only, blocking, reading exactly one response per request.

    A request/response to the native route takes ~130 us with this client and
    ~370 us with httpx.Client on the dev machine: httpx's own cost would hide
    what the server does in sub-millisecond latencies and polling loops.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        m = _CL.search(head)
        if m is None:
            raise OSError(f"response without content-length: {head[:200]!r}")
        length = int(m.group(1))
        while len(rest) < length:
            self.buf = head + b"\r\n\r\n" + rest
            self._recv()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return int(head[9:12]), rest[:length]

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk


# --------------------------------------------------------------------------- load generation


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


def wrk_path() -> str | None:
    return shutil.which("wrk")


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_latency(text: str, pct: str) -> float:
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * _WRK_UNITS[m.group(2)] if m else float("nan")


def run_wrk(port: int, path: str, *, threads: int, connections: int, seconds: float) -> Load:
    argv = [
        wrk_path() or "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]  # wrk takes whole seconds
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return Load(rps, _wrk_latency(out, "50"), _wrk_latency(out, "99"), total, errors, "wrk")


def run_pyload(port: int, path: str, *, connections: int, seconds: float) -> Load:
    """The fallback: bench/pyload.py in its own process (asyncio, raw keep-alive sockets)."""
    out = subprocess.run(
        [PYTHON, str(BENCH / "pyload.py"), str(port), path, str(connections), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    d = json.loads(out)
    return Load(d["rps"], d["p50_ms"], d["p99_ms"], d["requests"], d["errors"], "pyload")


def load(port: int, path: str, *, connections: int, seconds: float, threads: int = 2) -> Load:
    if wrk_path():
        return run_wrk(port, path, threads=min(threads, connections), connections=connections, seconds=seconds)
    return run_pyload(port, path, connections=connections, seconds=seconds)


# --------------------------------------------------------------------------- the table


def _fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit in ("req/s",):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(rows: list[Row], markdown: bool = False) -> str:
    head = ["benchmark", "subject", "median", "unit", "vs (same run)", "ratio", "target", "met", "note"]
    body = []
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}{(' ' + r.ratio_label) if r.ratio_label else ''}"
        met = "" if r.ok is None else ("yes" if r.ok else "NO")
        body.append([r.bench, r.subject, _fmt(r.value, r.unit), r.unit, r.baseline, ratio, r.target, met, r.note])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
    right = {2, 5}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(row) for row in body])


def print_rows(rows: list[Row]) -> None:
    print(table(rows), flush=True)
