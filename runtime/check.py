"""`arcana plugin check` and `arcana plugin build`: what an author sees."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from arcana.config import ArcanaConfig
from arcana.engine.extism_engine import ExtismEngine
from arcana.errors import FileChanging, PluginLoadError
from arcana.loader import PluginLoader
from arcana_host.registry import Capabilities


def check_plugin(path: Path, config: ArcanaConfig) -> int:
    """Print the manifest, routes and grants, or every problem; non-zero on problems."""
    with ThreadPoolExecutor(1) as threads:
        loader = PluginLoader(config, ExtismEngine(), Capabilities.from_config(config), threads)
        try:
            plugin = loader.load(path)
        except PluginLoadError as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            return 1
        except (OSError, FileChanging) as exc:
            print(f"FAILED cannot read {path}: {exc}", file=sys.stderr)
            return 1
    m = plugin.manifest
    granted = config.granted(m.name)
    print(f"OK {m.name} {m.version}  ({path}, sha256 {plugin.sha256[:12]})")
    print(
        f"  limits: memory {plugin.limits.memory_mb} MB, timeout {plugin.limits.timeout_ms} ms, "
        f"concurrency {plugin.limits.max_concurrency}"
    )
    for cap in sorted(m.requested_capabilities()):
        print(f"  capability {cap}: {'granted' if cap in granted else 'refused'}")
    for r in m.routes:
        access = "public" if r.public else ("roles " + ",".join(r.roles) if r.roles else "authenticated")
        print(f"  route {r.method} {r.path.raw} -> {r.handler} ({access}, abi {r.abi})")
    for g in m.grpc:
        print(f"  grpc {g.method} -> {g.handler}")
    for j in m.jobs:
        print(f"  job {j.type} -> {j.handler}")
    for s in m.subscriptions:
        print(f"  subscribe {s.topic} -> {s.handler}")
    now = time.time()
    for sc in m.schedules:
        upcoming = datetime.fromtimestamp(sc.timing.next_after(now), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"  schedule {sc.expression} -> job {sc.job} ({sc.priority}; next {upcoming})")
    return 0


def build_plugin(src: Path, output: Path | None) -> int:
    from arcana_sdk.build import BuildError
    from arcana_sdk.build import build_plugin as build

    try:
        out = build(src, output)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {out}")
    return 0
