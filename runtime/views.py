"""What the admin APIs show, as typed values; each edge renders them in its own shape."""

from __future__ import annotations

from dataclasses import dataclass

from arcana.executor import EffectiveLimits
from arcana.registry import LoadedPlugin, LoadFailure, Snapshot


@dataclass(frozen=True)
class RouteView:
    method: str
    path: str
    handler: str
    public: bool


@dataclass(frozen=True)
class PluginView:
    name: str
    version: str
    source: str
    sha256: str
    loaded_at: float
    routes: tuple[RouteView, ...]
    grpc: tuple[str, ...]
    limits: EffectiveLimits
    in_flight: int
    # The problems of the newest refused file for this plugin, while its older version serves.
    last_error: tuple[str, ...] | None
    state: str = "serving"
    # The plugin's circuit breaker: closed, open or half_open (arcana.resilience).
    breaker: str = "closed"
    # Handlers that have proven short and run inline on the event loop now (arcana.inline).
    inline: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailureView:
    name: str | None
    source: str
    failed_at: float
    errors: tuple[str, ...]
    # The version that keeps serving in its place, if any (same plugin name, or the same file).
    still_serving: str | None
    state: str = "failed"


@dataclass(frozen=True)
class PluginsView:
    plugins: tuple[PluginView, ...]
    failures: tuple[FailureView, ...]


def plugin_view(plugin: LoadedPlugin, last_error: tuple[str, ...] | None) -> PluginView:
    m = plugin.manifest
    routes = tuple(RouteView(r.method, r.path.raw, r.handler, r.public) for r in m.routes)
    return PluginView(
        name=m.name,
        version=m.version,
        source=str(plugin.source),
        sha256=plugin.sha256,
        loaded_at=plugin.loaded_at,
        routes=routes,
        grpc=tuple(g.method for g in m.grpc),
        limits=plugin.limits,
        in_flight=plugin.in_flight,
        last_error=last_error,
        breaker=plugin.pool.breaker.state.value if plugin.pool.breaker is not None else "closed",
        inline=tuple(plugin.pool.inline_handlers()),
    )


def failure_view(failure: LoadFailure, snapshot: Snapshot) -> FailureView:
    serving = snapshot.plugins.get(failure.plugin) if failure.plugin else None
    if serving is None:
        serving = next((p for p in snapshot.plugins.values() if p.source == failure.source), None)
    return FailureView(
        name=failure.plugin,
        source=str(failure.source),
        failed_at=failure.at,
        errors=tuple(str(p) for p in failure.problems),
        still_serving=serving.manifest.version if serving is not None else None,
    )


def plugins_view(snapshot: Snapshot, failures: list[LoadFailure]) -> PluginsView:
    errors = {f.plugin: tuple(str(p) for p in f.problems) for f in failures if f.plugin}
    plugins = sorted((plugin_view(p, errors.get(p.name)) for p in snapshot.plugins.values()), key=lambda v: v.name)
    failed = sorted((failure_view(f, snapshot) for f in failures), key=lambda v: v.source)
    return PluginsView(tuple(plugins), tuple(failed))
