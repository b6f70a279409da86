"""Benchmark 4: hot reload, from the file landing to the new version serving.

The real server (`python -m arcana.cli serve`, watcher on, default config)
serves a temp folder holding the `versioned` fixture
(tests/fixtures/plugins/versioned, Zig). Two builds differ only in the marker
``const VERSION = "v1";`` / ``"v2"`` (built once with
``arcana_sdk.build.build_plugin`` and cached in bench/.cache/ by source hash).

- latency: each reload writes the other version to a hidden temp name in the
  folder and ``os.replace``s it over ``versioned.wasm`` (atomic rename, the
  way the README tells operators to deploy). Every landing is a new build as
  far as caches go (a unique ``bench.nonce`` custom section is appended), so
  Extism's wasmtime compilation cache - pointed at the temp folder through
  EXTISM_CACHE_CONFIG - always misses, as for a real deploy. The clock starts
  right after the rename returns and stops when a client polling GET /api/v1/test/version
  back-to-back on one keep-alive connection first sees the new version.
- under load: the same, while 3 client threads hammer the route; every
  non-200 answer or connection error is a failed request.
- baseline: the kernel's own load of such a fresh file in this process
  (``PluginLoader.load``: read, validate, compile, instantiate), so the ratio
  shows how much of the reload time is the watcher/debounce rather than work.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import CACHE, PYTHON, ROOT, HttpClient, Row, Server, free_port, isolated_env, median, percentile

FIXTURE = ROOT / "tests" / "fixtures" / "plugins" / "versioned"
MARKER = 'const VERSION = "v1";'
ROUTE = "/api/v1/test/version"
SOURCE_SUFFIXES = {".zig", ".c", ".h", ".ts", ".toml", ".json"}
GIVE_UP_S = 5.0


def _source_hash(*dirs: Path) -> str:
    digest = hashlib.sha256()
    for d in dirs:
        for path in sorted(d.rglob("*")):
            if (
                path.is_file()
                and path.suffix in SOURCE_SUFFIXES
                and not {"node_modules", ".zig-cache"} & set(path.parts)
            ):
                digest.update(str(path.relative_to(d)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_versions() -> dict[str, Path]:
    """versioned.wasm built as v1 and v2 (cached by a hash of the sources and the Zig SDK)."""
    from arcana_sdk.build import build_plugin

    key = _source_hash(FIXTURE, ROOT / "sdk" / "zig")
    for stale in CACHE.glob("versioned-v*-*.wasm"):
        if not stale.name.endswith(f"-{key}.wasm"):
            stale.unlink(missing_ok=True)
    out = {}
    for version in ("v1", "v2"):
        target = CACHE / f"versioned-{version}-{key}.wasm"
        if not target.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="arcana-bench-build-") as tmp:
                src = Path(tmp) / "versioned"
                shutil.copytree(FIXTURE, src)
                main = src / "src" / "main.zig"
                text = main.read_text()
                if MARKER not in text:
                    raise RuntimeError(f"{main}: marker {MARKER!r} not found")
                main.write_text(text.replace(MARKER, f'const VERSION = "{version}";'))
                build_plugin(src, target.with_suffix(".tmp"))
                target.with_suffix(".tmp").replace(target)
        out[version] = target
    return out


_nonce = itertools.count()


def fresh_build(wasm: Path) -> bytes:
    """The module with a unique custom section appended: a new build as far as any cache can tell."""
    from arcana_sdk.wasm_sections import append_custom_section

    return append_custom_section(wasm.read_bytes(), "bench.nonce", f"{os.getpid()}-{next(_nonce)}".encode())


def land(wasm: Path, folder: Path) -> float:
    """Atomically put a fresh build of ``wasm`` in place as versioned.wasm; returns when the rename returned."""
    tmp = folder / ".versioned.wasm.part"
    tmp.write_bytes(fresh_build(wasm))
    os.replace(tmp, folder / "versioned.wasm")
    return time.perf_counter()


def cache_env(workdir: Path) -> dict[str, str]:
    """Point Extism's wasmtime compilation cache into ``workdir`` (it defaults to ~/.cache/wasmtime)."""
    config = workdir / "wasmtime-cache.toml"
    config.write_text(f'[cache]\ndirectory = "{workdir / "wasmtime-cache"}"\n')
    return {"EXTISM_CACHE_CONFIG": str(config)}


def _version(client: HttpClient) -> tuple[int, str | None]:
    status, body = client.get(ROUTE)
    return status, (json.loads(body).get("version") if status == 200 else None)


def wait_version(client: HttpClient, expected: str, since: float) -> float:
    """Poll back-to-back until ``expected`` answers; seconds from ``since`` (NaN if it never did)."""
    while True:
        _, version = _version(client)
        now = time.perf_counter()
        if version == expected:
            return now - since
        if now - since > GIVE_UP_S:
            return float("nan")


class Hammer:
    """Client threads calling the route in a loop on keep-alive connections, counting failures."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.requests = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        client: HttpClient | None = None
        done = 0
        while not self.stop.is_set():
            try:
                client = client or HttpClient(self.port)
                status, body = client.get(ROUTE)
                done += 1
                if status != 200:
                    self.failures.append(f"{status} {body[:120]!r}")
            except OSError as exc:
                self.failures.append(repr(exc))
                if client is not None:
                    client.close()
                client = None
        if client is not None:
            client.close()
        with self._lock:
            self.requests += done

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def _reloads(port: int, folder: Path, versions: dict[str, Path], count: int, current: str) -> tuple[list[float], str]:
    took = []
    with HttpClient(port) as client:
        for _ in range(count):
            current = "v2" if current == "v1" else "v1"
            since = land(versions[current], folder)
            took.append(wait_version(client, current, since))
            time.sleep(0.02)  # let the watcher finish the batch before the next file lands
    return took, current


def _load_baseline(versions: dict[str, Path], rounds: int) -> list[float]:
    """Seconds per ``PluginLoader.load`` of a fresh build, in this process, no watcher.

    The loader is built from the kernel's own parts the way ``arcana plugin
    check`` builds it (the kernel keeps its loader private): the default
    config, the real engine and the real capabilities. ``versioned`` asks only
    for ``log``, so no database is needed.
    """
    from arcana.config import load_config
    from arcana.engine.extism_engine import ExtismEngine
    from arcana.loader import PluginLoader
    from arcana_host.registry import Capabilities

    with tempfile.TemporaryDirectory(prefix="arcana-bench-load-") as tmp, ThreadPoolExecutor(1) as threads:
        folder = Path(tmp)
        saved = os.environ.get("EXTISM_CACHE_CONFIG")
        os.environ.update(cache_env(folder))
        config = load_config(None, environ={"ARCANA_PLUGINS__DIR": tmp, "ARCANA_PLUGINS__WATCH": "false"})
        capabilities = Capabilities.from_config(config)
        loader = PluginLoader(config, ExtismEngine(), capabilities, threads)
        try:
            land(versions["v1"], folder)
            loader.load(folder / "versioned.wasm").pool.retire()  # warm-up: first-use costs are not reload costs
            out = []
            for i in range(rounds):
                land(versions["v1" if i % 2 else "v2"], folder)
                t0 = time.perf_counter()
                plugin = loader.load(folder / "versioned.wasm")
                out.append(time.perf_counter() - t0)
                plugin.pool.retire()
            return out
        finally:
            capabilities.close()
            if saved is None:
                os.environ.pop("EXTISM_CACHE_CONFIG", None)
            else:
                os.environ["EXTISM_CACHE_CONFIG"] = saved


def _server_load_ms(log: str) -> list[float]:
    out = []
    for line in log.splitlines():
        if '"plugin loaded"' in line:
            try:
                out.append(float(json.loads(line)["ms"]))
            except (ValueError, KeyError, TypeError):
                pass
    return out


def run(quick: bool, logdir: Path | None = None) -> list[Row]:
    n_latency, n_load = (10, 20) if quick else (30, 100)
    versions = build_versions()
    work = Path(tempfile.mkdtemp(prefix="arcana-bench-reload-"))
    logdir = logdir or work
    rows: list[Row] = []
    try:
        folder = work / "plugins"
        folder.mkdir()
        land(versions["v1"], folder)
        port = free_port()
        argv = [
            PYTHON,
            "-m",
            "arcana.cli",
            "serve",
            "--plugins",
            str(folder),
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
        ]
        base_ms = [x * 1e3 for x in _load_baseline(versions, 5 if quick else 11)]
        with Server(
            argv, port, "/ready", logdir / "reload-server.log", env={**isolated_env(work), **cache_env(work)}
        ) as server:
            with HttpClient(port) as c:
                wait_version(c, "v1", time.perf_counter())
            took, current = _reloads(port, folder, versions, n_latency, "v1")
            with Hammer(port, clients=3) as hammer:
                took_load, current = _reloads(port, folder, versions, n_load, current)
        base = median(base_ms)
        rows.append(
            Row(
                "hot reload",
                "in-process load of the file (read+check+compile+instantiate)",
                base,
                "ms",
                "(baseline)",
                note="PluginLoader.load, no watcher",
                rounds=base_ms,
            )
        )
        server_ms = _server_load_ms(server.logs())[1:]  # the first is the initial load
        if server_ms:
            rows.append(
                Row(
                    "hot reload",
                    "server-side sync of each reload (kernel's 'plugin loaded' ms)",
                    median(server_ms),
                    "ms",
                    "in-process load",
                    median(server_ms) / base,
                    "x load",
                    note=f"p95 {percentile(server_ms, 95):.0f} ms, max {max(server_ms):.0f} ms; "
                    "the rest of a reload is the watcher",
                    rounds=server_ms,
                )
            )
        for label, values in (("reload to serving, idle", took), ("reload to serving, 3 clients hammering", took_load)):
            ms = [x * 1e3 for x in values]
            missed = sum(1 for x in ms if x != x)
            ok_ms = [x for x in ms if x == x]
            p95, worst = percentile(ok_ms, 95), max(ok_ms) if ok_ms else float("nan")
            med = median(ok_ms) if ok_ms else float("nan")
            rows.append(
                Row(
                    "hot reload",
                    f"{label} ({len(ms)} reloads)",
                    med,
                    "ms",
                    "in-process load",
                    med / base,
                    "x load",
                    target="<= 250 ms (aim 100)",
                    ok=(worst <= 250 and not missed),
                    note=f"p95 {p95:.0f} ms, max {worst:.0f} ms" + (f", {missed} never served" if missed else ""),
                    rounds=ms,
                )
            )
        rows.append(
            Row(
                "hot reload",
                f"failed requests across {n_load} reloads under load",
                len(hammer.failures),
                "requests",
                target="0",
                ok=not hammer.failures,
                note=f"of {hammer.requests:,} requests" + (f"; first: {hammer.failures[0]}" if hammer.failures else ""),
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows
