"""`hello` in Python (a WebAssembly component) against `hello` in AssemblyScript (an Extism module), same run.

    .venv/bin/python bench/python_vs_as.py            # about 3 minutes on a quiet 2-core machine
    .venv/bin/python bench/python_vs_as.py --quick    # fewer rounds, shorter loads

The two plugins do the same work: GET /api/v1/hello/{name} -> {"message": "Hello, <name>!"}.
The Python one is bench/plugins/pyhello (`arcana plugin new hello --lang python` with plugins/hello's
route and without the scaffold's log line), built by `arcana plugin build` once per source hash into
bench/.cache/; the AssemblyScript one is the committed plugins/hello/hello.wasm.

What is measured (median over rounds, the subjects alternating within each round):

- module size: the .wasm file.
- cold load: the engine's ``compile`` of bytes no cache has seen: a component on a fresh component
  engine without artifact cache; a module with a unique custom section appended each round, so that
  Extism's own wasmtime compilation cache misses.
- cached load: the same with the cache warm: the component engine's artifact cache
  (``Component.deserialize``), Extism's wasmtime compilation cache (pointed into a temp folder
  through EXTISM_CACHE_CONFIG for the whole run, servers included, not ~/.cache/wasmtime).
- instance start: ``compiled.instantiate()``, instances dropped as made.
- per call: ``kernel.core.call_http`` of the route in an in-process kernel (routing, envelope, executor
  pool, engine, answer), one call at a time; median and p99.
- REST: a real `arcana serve` per plugin, loaded in turn with wrk (`-t2 -c32`), or bench/pyload.py
  without wrk; requests/s and p50.

Nothing here asserts on time: it prints a table (bench/README.md keeps one, with the command and date).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arcana_sdk.wasm_sections import append_custom_section
from common import BENCH, CACHE, PYTHON, ROOT, Server, free_port, load, median, percentile

AS_WASM = ROOT / "plugins" / "hello" / "hello.wasm"
PY_SRC = BENCH / "plugins" / "pyhello"
PATH = "/api/v1/hello/bench"
EXPECTED = {"message": "Hello, bench!"}
MEMORY_MB, TIMEOUT_MS = 16, 1000
MIB = 1024 * 1024
SUBJECTS = ("AssemblyScript", "Python")


def python_hello() -> Path:
    """bench/plugins/pyhello built into a component, once per hash of its sources, the guest SDK and the WIT."""
    digest = hashlib.sha256()
    sdk = ROOT / "sdk"
    for path in sorted([*PY_SRC.glob("*"), *(sdk / "python").rglob("*.py"), sdk / "wit" / "arcana.wit"]):
        if path.is_file() and path.suffix in (".py", ".toml", ".wit"):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    out = CACHE / f"pyhello-{digest.hexdigest()[:16]}.wasm"
    if not out.exists():
        from arcana_sdk.build import build_plugin

        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"building {PY_SRC.relative_to(ROOT)} (componentize-py, about 20 s) ...", flush=True)
        build_plugin(PY_SRC, out)
    return out


def _no_op_functions(engine: Any, wasm: bytes) -> list[Any]:
    from arcana.types import LinkedFunction

    names = sorted({name for _, name in engine.inspect(wasm).imports})
    return [LinkedFunction(name, lambda context, request: b"{}") for name in names]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def loads(wasm: dict[str, bytes], rounds: int, instances: int, folder: Path) -> dict[str, dict[str, float]]:
    """Cold load, cached load and instance start of each subject, in milliseconds."""
    from arcana.engine.artifact_cache import ArtifactCache
    from arcana.engine.component_engine import ComponentEngine
    from arcana.engine.extism_engine import ExtismEngine

    def artifact_cache() -> ArtifactCache:
        return ArtifactCache(folder, 4096 * MIB, ComponentEngine.fingerprint())

    fns = {
        "AssemblyScript": _no_op_functions(ExtismEngine(), wasm["AssemblyScript"]),
        "Python": _no_op_functions(ComponentEngine(), wasm["Python"]),
    }

    nonce = itertools.count()

    def compile_with(subject: str, cache: ArtifactCache | None, *, fresh: bool = False) -> Any:
        """``fresh``: a new build as far as any cache goes (an AssemblyScript module gets a unique custom section)."""
        if subject == "AssemblyScript":
            body = wasm[subject]
            if fresh:
                body = append_custom_section(body, "bench.nonce", f"{os.getpid()}-{next(nonce)}".encode())
            return ExtismEngine().compile(body, fns[subject], memory_mb=MEMORY_MB, timeout_ms=TIMEOUT_MS)
        engine = ComponentEngine(cache)
        compiled = engine.compile(wasm[subject], fns[subject], memory_mb=MEMORY_MB, timeout_ms=TIMEOUT_MS)
        assert engine.deserialized == (0 if cache is None else 1), "the artifact cache was not used as meant"
        return compiled

    # Untimed: fill both caches (and warm the process: imports, first engines).
    ComponentEngine(artifact_cache()).compile(wasm["Python"], fns["Python"], memory_mb=MEMORY_MB, timeout_ms=TIMEOUT_MS)
    compile_with("AssemblyScript", None)
    cold: dict[str, list[float]] = {s: [] for s in SUBJECTS}
    cached: dict[str, list[float]] = {s: [] for s in SUBJECTS}
    start: dict[str, list[float]] = {s: [] for s in SUBJECTS}
    for r in range(rounds):
        order = SUBJECTS if r % 2 == 0 else SUBJECTS[::-1]
        for subject in order:
            gc.collect()
            cold[subject].append(_timed(lambda s=subject: compile_with(s, None, fresh=True)))  # type: ignore[misc]
            cache = artifact_cache() if subject == "Python" else None
            cached[subject].append(_timed(lambda s=subject, c=cache: compile_with(s, c)))  # type: ignore[misc]
            compiled = compile_with(subject, cache)
            compiled.instantiate()  # the first instance pays one-time costs: not an instance start
            for _ in range(instances):
                start[subject].append(_timed(compiled.instantiate))
            print(f"  round {r + 1}/{rounds} {subject}: cold {cold[subject][-1] * 1e3:.0f} ms", flush=True)
    return {
        s: {
            "cold_ms": median(cold[s]) * 1e3,
            "cached_ms": median(cached[s]) * 1e3,
            "start_ms": median(start[s]) * 1e3,
        }
        for s in SUBJECTS
    }


def _plugins_folder(workdir: Path, subject: str, wasm_path: Path) -> Path:
    plugins = workdir / "plugins"
    plugins.mkdir(parents=True)
    shutil.copyfile(wasm_path, plugins / "hello.wasm")
    return plugins


def _kernel_env(workdir: Path, plugins: Path, artifacts: Path) -> dict[str, str]:
    return {
        "ARCANA_PLUGINS__DIR": str(plugins),
        "ARCANA_PLUGINS__WATCH": "false",
        "ARCANA_LOGGING__LEVEL": "warning",
        "ARCANA_DATABASE__URL": f"sqlite:///{workdir / 'arcana.db'}",
        "ARCANA_EXECUTOR__ARTIFACT_CACHE_DIR": str(artifacts),
    }


def per_call(paths: dict[str, Path], rounds: int, calls: int, tmp: Path, artifacts: Path) -> dict[str, list[float]]:
    """Seconds per ``kernel.core.call_http``, one call at a time, in an in-process kernel per subject and round."""
    from arcana.config import load_config
    from arcana.envelopes import HttpRequest
    from arcana.kernel import Kernel

    os.environ.setdefault("ARCANA_JWT_SECRET", "bench-secret-" + "x" * 32)
    samples: dict[str, list[float]] = {s: [] for s in SUBJECTS}

    async def measure(kernel: Kernel, subject: str) -> None:
        await kernel.load_all()
        match = kernel.core.route_http("GET", PATH)
        assert match is not None, kernel.plugins_view().failures
        req = HttpRequest("GET", PATH, {}, {}, b"", "bench", "", "")
        first = await kernel.core.call_http(match, req)
        assert first.status == 200 and json.loads(first.body) == EXPECTED, first.body
        for _ in range(calls // 5):  # warm: instances made, inline decisions taken
            await kernel.core.call_http(match, req)
        for _ in range(calls):
            t0 = time.perf_counter()
            await kernel.core.call_http(match, req)
            samples[subject].append(time.perf_counter() - t0)

    for r in range(rounds):
        order = SUBJECTS if r % 2 == 0 else SUBJECTS[::-1]
        for subject in order:
            workdir = Path(tempfile.mkdtemp(dir=tmp, prefix=f"call-{subject}-"))
            plugins = _plugins_folder(workdir, subject, paths[subject])
            kernel = Kernel(load_config(None, environ=_kernel_env(workdir, plugins, artifacts)))
            kernel.start()
            try:
                asyncio.run(measure(kernel, subject))
            finally:
                kernel.close()
    return samples


def rest(
    paths: dict[str, Path], rounds: int, seconds: float, tmp: Path, artifacts: Path
) -> dict[str, dict[str, float]]:
    """Requests/s and p50 of each plugin's route on its own `arcana serve`, loaded in turn."""
    servers: dict[str, Server] = {}
    results: dict[str, list[Any]] = {s: [] for s in SUBJECTS}
    try:
        for subject in SUBJECTS:
            workdir = Path(tempfile.mkdtemp(dir=tmp, prefix=f"serve-{subject}-"))
            plugins = _plugins_folder(workdir, subject, paths[subject])
            port = free_port()
            argv = [PYTHON, "-m", "arcana.cli", "serve", "--plugins", str(plugins)]
            argv += ["--http-port", str(port), "--grpc-port", str(free_port())]
            env = {**_kernel_env(workdir, plugins, artifacts), "ARCANA_JWT_SECRET": "bench-secret-" + "x" * 32}
            servers[subject] = Server(argv, port, "/ready", workdir / "server.log", env).__enter__()
        for subject, server in servers.items():  # same answer from both before any load
            import httpx

            answer = httpx.get(f"http://127.0.0.1:{server.port}{PATH}", timeout=10)
            assert answer.status_code == 200 and answer.json() == EXPECTED, (subject, answer.text)
            load(server.port, PATH, connections=8, seconds=1)  # warm-up: instances up to max_concurrency
        for r in range(rounds):
            order = SUBJECTS if r % 2 == 0 else SUBJECTS[::-1]
            for subject in order:
                done = load(servers[subject].port, PATH, connections=32, seconds=seconds)
                results[subject].append(done)
                print(f"  round {r + 1}/{rounds} {subject}: {done.rps:,.0f} req/s ({done.tool})", flush=True)
    finally:
        for server in servers.values():
            server.__exit__()
    return {
        s: {
            "rps": median(x.rps for x in results[s]),
            "p50_ms": median(x.p50_ms for x in results[s]),
            "errors": sum(x.errors for x in results[s]),
            "tool": results[s][0].tool,
        }
        for s in SUBJECTS
    }


def _fmt(value: float, unit: str) -> str:
    if value != value:
        return "n/a"
    if unit == "B":
        return f"{value / MIB:.2f} MB" if value >= MIB else f"{value / 1024:.1f} KB"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:,.1f} ms"
    return f"{value:,.1f} us"


def table(rows: list[tuple[str, float, float, str]]) -> str:
    lines = ["| measure | AssemblyScript (Extism) | Python (component) | Python / AS |", "|---|---:|---:|---:|"]
    for name, a, p, unit in rows:
        ratio = p / a if a == a and p == p and a else float("nan")
        shown = "n/a" if ratio != ratio else f"{ratio:,.2f}x"
        lines.append(f"| {name} | {_fmt(a, unit)} | {_fmt(p, unit)} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter loads")
    args = parser.parse_args()
    rounds, instances, calls, seconds = (2, 10, 300, 3.0) if args.quick else (3, 30, 1000, 5.0)
    paths = {"AssemblyScript": AS_WASM, "Python": python_hello()}
    wasm = {s: p.read_bytes() for s, p in paths.items()}
    with tempfile.TemporaryDirectory(prefix="arcana-py-vs-as-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "wasmtime-cache.toml").write_text(f'[cache]\ndirectory = "{tmp / "wasmtime-cache"}"\n')
        os.environ["EXTISM_CACHE_CONFIG"] = str(tmp / "wasmtime-cache.toml")  # inherited by the servers
        artifacts = tmp / "artifacts"
        print("loads (cold compile, cached load, instance start) ...", flush=True)
        loaded = loads(wasm, rounds, instances, artifacts)
        print("per call (in-process kernel) ...", flush=True)
        calls_s = per_call(paths, rounds, calls, tmp, artifacts)
        print("REST (arcana serve) ...", flush=True)
        served = rest(paths, rounds, seconds, tmp, artifacts)
    a, p = "AssemblyScript", "Python"
    rows = [
        ("module size", len(wasm[a]), len(wasm[p]), "B"),
        ("cold load (compile, no cache)", loaded[a]["cold_ms"], loaded[p]["cold_ms"], "ms"),
        ("cached load (warm compiled-code cache)", loaded[a]["cached_ms"], loaded[p]["cached_ms"], "ms"),
        ("instance start", loaded[a]["start_ms"], loaded[p]["start_ms"], "ms"),
        ("per call, median (kernel core)", median(calls_s[a]) * 1e6, median(calls_s[p]) * 1e6, "us"),
        ("per call, p99 (kernel core)", percentile(calls_s[a], 99) * 1e6, percentile(calls_s[p], 99) * 1e6, "us"),
        (f"REST -c32 ({served[a]['tool']})", served[a]["rps"], served[p]["rps"], "req/s"),
        ("REST -c32 p50", served[a]["p50_ms"], served[p]["p50_ms"], "ms"),
    ]
    print()
    print(table(rows))
    errors = f"AssemblyScript {served[a]['errors']}, Python {served[p]['errors']}"
    print(f"\n{rounds} rounds; {calls} calls per subject per round; REST {seconds:.0f} s per round; errors: {errors}")


if __name__ == "__main__":
    main()
