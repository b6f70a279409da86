"""`arcana plugin check` and `arcana plugin build`: what an author sees."""

from __future__ import annotations

import dataclasses
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from arcana.config import ArcanaConfig
from arcana.engine.factory import tool_engine
from arcana.errors import FileChanging, PluginLoadError
from arcana.loader import PluginLoader
from arcana.manifest import Route
from arcana_host.catalog import KNOWN_GRANTS
from arcana_host.registry import Capabilities

# Said of each requested capability when no operator config was given.
AS_REQUESTED = "granted (as requested: no operator config given)"


def check_plugin(path: Path, config: ArcanaConfig, own_grants: bool = False) -> int:
    """Print the manifest, routes and grants, or every problem; non-zero on problems.

    ``own_grants``: no operator config was given (an author checking their own plugin), so the plugin
    is judged against what its manifest requests: every requested capability counts as granted.
    An import it does not request is still refused, as the server would.
    """
    operator = config
    if own_grants:
        # Granting every capability grants exactly the requested ones: the loader grants requested & operator's.
        config = dataclasses.replace(config, grants={**config.grants, "*": sorted(KNOWN_GRANTS)})
    with ThreadPoolExecutor(1) as threads:
        loader = PluginLoader(config, tool_engine(), Capabilities.from_config(config), threads)
        try:
            plugin = loader.load(path)
        except PluginLoadError as exc:
            print(f"FAILED {refusal(exc)}", file=sys.stderr)
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
    requested = sorted(m.requested_capabilities())
    for cap in requested:
        print(f"  capability {cap}: {AS_REQUESTED if own_grants else 'granted' if cap in granted else 'refused'}")
    missing = [cap for cap in requested if cap not in operator.granted(m.name)]
    if own_grants and missing:
        print(f"  to serve it, the server's config must grant: grants: {{{m.name}: [{', '.join(missing)}]}}")
    for r in m.routes:
        access = "public" if r.public else ("roles " + ",".join(r.roles) if r.roles else "authenticated")
        print(f"  route {r.method} {r.path.raw} -> {r.handler} ({access}, abi {r.abi})")
        if r.has_contract:
            print(f"    schema: {contract_line(r)}")
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


def contract_line(r: Route) -> str:
    """A route's contract in one line: what `arcana plugin check` found resolved and valid."""
    parts = [f"request {r.request}"] if r.request else []
    parts += [f"path {name}: {kind}" for name, kind in r.params.items()]
    parts += [f"query {name}: {q.type}{' (required)' if q.required else ''}" for name, q in r.query.items()]
    answers = [f"{status} {ref or '(no body)'}" for status, ref in sorted(r.responses.items())]
    if answers:
        parts.append("responses " + ", ".join(answers))
    return "; ".join(parts)


def refusal(exc: PluginLoadError) -> str:
    """The refusal with every problem and each distinct fix once, under the problems it fixes.

    Five imports of one capability the operator has not granted share one fix:
    it was printed five times, which read as five things to do.
    """
    who = f"plugin '{exc.plugin}' ({exc.source})" if exc.plugin else exc.source
    groups: dict[str, list[str]] = {}  # fix -> its problems, in the order the fixes first appear
    for p in exc.problems:
        groups.setdefault(p.fix, []).append(f"{p.field}: {p.message}" if p.field else p.message)
    lines = [f"{who} refused:"]
    for fix, problems in groups.items():
        lines += [f"  - {text}" for text in problems]
        if fix:
            lines.append(f"    fix: {fix}")
    return "\n".join(lines)


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
